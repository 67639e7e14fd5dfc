from pathlib import Path

import pytest
import yaml

from mmops.config import load_params, params_from_dict
from tests.conftest import REPO, repo_params


def test_repo_params_load_into_typed_config():
    params = load_params(REPO / "params.yaml")
    assert len(params.data.labels) == 9
    assert params.data.manifest == REPO / "data" / "metadata.csv"
    assert params.split.val_fraction == 0.15


def test_unknown_key_is_named():
    raw = repo_params(train={"epochz": 3})
    with pytest.raises(ValueError, match="epochz"):
        params_from_dict(raw)


def test_unknown_section_is_named():
    raw = repo_params()
    raw["trian"] = {}
    with pytest.raises(ValueError, match="trian"):
        params_from_dict(raw)


def test_params_digest_changes_with_any_value():
    a = params_from_dict(repo_params())
    b = params_from_dict(repo_params(train={"seed": 1}))
    assert a.digest() == params_from_dict(repo_params()).digest()
    assert a.digest() != b.digest()


def test_data_paths_are_relative_to_the_params_file(tmp_path: Path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    assert load_params(tmp_path / "params.yaml").data.root == tmp_path / "data"


@pytest.mark.parametrize(("section", "values", "message"), [
    ("train", {"epochs": "ten"}, "'train.epochs' must be int"),
    ("train", {"epochs": 0}, "epochs >= 1"),
    ("train", {"modality_dropout": True}, "'train.modality_dropout' must be float"),
    ("data", {"labels": "Flags"}, "'data.labels' must be a list"),
    ("data", {"labels": ["Flags", "Flags"]}, "distinct"),
    ("scale", {"shards": 0}, "shards >= 1"),
    ("scale", {"dask_address": 8786}, "'scale.dask_address' must be str"),
])
def test_wrong_values_are_refused_with_their_name(section, values, message):
    with pytest.raises(ValueError, match=message):
        params_from_dict(repo_params(**{section: values}))


def test_integers_are_accepted_where_floats_are_expected():
    assert params_from_dict(repo_params(train={"lr": 1})).train.lr == 1.0


def test_cli_reports_broken_yaml_without_a_traceback(tmp_path: Path, capsys):
    from mmops.cli import main

    (tmp_path / "params.yaml").write_text("train: [unclosed\n")
    assert main(["stage", "split", "--params", str(tmp_path / "params.yaml")]) == 1
    assert "mmops: error:" in capsys.readouterr().err


def test_a_modality_is_required_per_row_unless_declared_optional():
    raw = repo_params()
    raw["modalities"][1]["required"] = False
    image, text = params_from_dict(raw).modalities
    assert image.required and not text.required
    assert "required" not in text.options


def test_modality_entries_are_checked_and_named_by_position():
    raw = repo_params()
    raw["modalities"][1]["required"] = "no"
    with pytest.raises(ValueError, match=r"'modalities\[1\]\.required' must be true or false"):
        params_from_dict(raw)
    raw = repo_params()
    raw["modalities"][1]["column"] = "image"
    with pytest.raises(ValueError, match="its own name and column"):
        params_from_dict(raw)


def test_the_manifest_must_be_inside_the_data_root():
    with pytest.raises(ValueError, match="'data.manifest' .* must be inside 'data.root'"):
        params_from_dict(repo_params(data={"root": "data", "manifest": "elsewhere/metadata.csv"}))


def test_unknown_modality_and_encoder_and_option_are_named():
    from mmops.modalities import build_modalities

    raw = repo_params()
    raw["modalities"][0]["name"] = "smell"
    with pytest.raises(ValueError, match="unknown modality 'smell'.*known: audio, image, text"):
        build_modalities(params_from_dict(raw).modalities)
    raw = repo_params()
    raw["modalities"][0]["encoder"] = "resnet"
    with pytest.raises(ValueError, match="no encoder 'resnet'.*efficientnet-lite0"):
        build_modalities(params_from_dict(raw).modalities)
    raw = repo_params()
    raw["modalities"][0]["sise"] = 3
    with pytest.raises(ValueError, match=r"unknown key\(s\) in 'modalities.image': sise"):
        build_modalities(params_from_dict(raw).modalities)


def test_params_written_back_as_yaml_load_the_same(tmp_path: Path):
    import yaml

    params = params_from_dict(repo_params())
    again = params_from_dict(yaml.safe_load(yaml.safe_dump(params.to_dict())))
    assert again == params


def test_encoder_package_versions_ignore_the_local_build_tag(monkeypatch):
    # a model whose features were made on a CUDA build of torch is served by the CPU build
    from mmops.modalities import base

    monkeypatch.setattr(base, "version", lambda package: "2.14.1+cu128")
    assert base.installed_version("torch") == "2.14.1"


def test_the_dask_cluster_is_local_by_default_or_any_address_and_shapes_no_model():
    local = params_from_dict(repo_params(scale={"dask_address": None}))
    remote = params_from_dict(repo_params(scale={"dask_address": "tcp://10.0.0.5:8786", "shards": 16}))
    assert local.scale.dask_address is None and local.scale.local_workers >= 1
    assert remote.scale.dask_address == "tcp://10.0.0.5:8786" and remote.scale.shards == 16
    assert local.digest() == remote.digest()  # where features are made is not the model's lineage


def test_a_modality_that_does_not_say_what_its_features_look_like_is_refused_at_definition():
    from mmops.modalities.base import Modality

    with pytest.raises(TypeError, match="modality Audio must define feature_dim, feature_norm"):
        class Audio(Modality):  # noqa: F841 - defining it is the test
            name, media, Options, encoders = "audio", True, object, {}


def test_the_drift_thresholds_shape_no_model():
    base = params_from_dict(repo_params())
    changed = params_from_dict(repo_params(drift={"max_auc": 0.7, "fail_validate": False}))
    assert base.digest() == changed.digest() and changed.drift.max_auc == 0.7


def test_drawing_sets_are_relative_to_the_params_files_folder_like_the_data(tmp_path):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["augment"]["drawings"] = {"openmoji": "styles/openmoji/metadata.csv"}
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params(tmp_path / "sub" / "params.yaml")
    assert params.augment.drawings == {"openmoji": str(tmp_path / "sub" / "styles" / "openmoji" / "metadata.csv")}


def test_select_on_names_shift_sets_and_needs_fine_tuning():
    tuned = {"mode": "finetune", "select_on": ["twitter"]}
    assert params_from_dict(repo_params(train=tuned)).train.select_on == ("twitter",)
    with pytest.raises(ValueError, match="'train.select_on' names vendor, not in 'shift.sets'"):
        params_from_dict(repo_params(train={**tuned, "select_on": ["vendor"]}))
    with pytest.raises(ValueError, match="select_on chooses a fine-tuned epoch: it needs train.mode finetune"):
        params_from_dict(repo_params(train={"select_on": ["twitter"]}))
