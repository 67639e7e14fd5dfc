"""Three modalities end to end on real recordings: a small slice of the Tux Paint sample (picture,
English caption, French spoken description; a few rows without their clip) through every stage
from validate to evaluate, then served, in process and over HTTP by `mlflow models serve`, with
image+text+audio, audio alone, and text+audio."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from mmops.config import Layout, params_from_dict
from tests.conftest import REPO, repo_params

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get to fetch the package")]
LABELS = ["animals", "food", "plants", "symbols", "town"]
PER_CLASS = 14
# one recording saved twice, re-encoded (8 bits apart), under two stamps with other pictures and captions
REENCODED = ["food.vegetables.eggplant", "plants.eggplant"]


@pytest.fixture(scope="module")
def tuxpaint_slice(tmp_path_factory) -> Path:
    """PER_CLASS stamps of each of LABELS with their clips, the first two of each class without,
    and the REENCODED pair."""
    from mmops.data.tuxpaint import build_tuxpaint, fetch_deb

    full = tmp_path_factory.mktemp("tuxpaint") / "full"
    build_tuxpaint(fetch_deb(REPO / ".cache" / "apt"), full)
    frame = pd.read_csv(full / "metadata.csv", dtype=str, keep_default_na=False)
    pair = frame[frame["sample_id"].isin(REENCODED)]
    frame = frame[frame["label"].isin(LABELS) & (frame["audio"] != "") & ~frame["sample_id"].isin(REENCODED)]
    frame = frame.groupby("label").head(PER_CLASS).reset_index(drop=True)
    frame.loc[frame.groupby("label").head(2).index, "audio"] = ""
    frame = pd.concat([frame, pair], ignore_index=True)
    root = full.parent / "slice"
    for column in ("image", "audio"):
        for relative in frame.loc[frame[column] != "", column]:
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(full / relative, root / relative)
    frame.to_csv(root / "metadata.csv", index=False)
    return root


def _params(root: Path):
    raw = repo_params(data={"root": str(root), "manifest": str(root / "metadata.csv"), "labels": LABELS},
                      clean={"min_per_class": 3}, train={"epochs": 8}, shift={"sets": {}})
    raw["modalities"].append({"name": "audio", "column": "audio", "encoder": "whisper-base", "required": False})
    raw["split"].update(family_separator=".", family_words=[])
    return params_from_dict(yaml.safe_load(yaml.safe_dump(raw)))


def test_three_modalities_go_from_raw_clips_to_a_served_answer_for_any_subset(tuxpaint_slice, tmp_path):
    from mmops import stages
    from mmops.serving.pyfunc import MultimodalClassifier

    params, layout = _params(tuxpaint_slice), Layout(tmp_path / "artifacts")
    for name in ("validate", "clean", "split", "augment"):
        getattr(stages, name)(params, layout)
    split = pd.read_csv(layout.split_manifest, dtype=str, keep_default_na=False).set_index("sample_id")
    assert split.loc[REENCODED[0], "group"] == split.loc[REENCODED[1], "group"]  # the clips' fingerprints link them
    featurized = stages.featurize(params, layout, device="cpu")
    assert featurized["dims"]["audio"] == 1024  # Whisper base's encoder: mean and std of its 512 widths
    stages.train(params, layout, device="cpu")
    metrics = stages.evaluate(params, layout)["test"]
    assert set(metrics) == {"image", "text", "audio", "fused", "image-text", "image-audio", "text-audio"}
    assert metrics["audio"]["accuracy"] >= 0.0 and metrics["fused"]["accuracy"] > 0.5

    served = MultimodalClassifier()
    served.load_context(SimpleNamespace(artifacts={"checkpoint": str(layout.model)}, model_config={}))
    frame = pd.read_csv(tuxpaint_slice / "metadata.csv", dtype=str, keep_default_na=False)
    row = frame[frame["audio"] != ""].iloc[0]

    def b64(relative: str) -> str:
        return base64.b64encode((tuxpaint_slice / relative).read_bytes()).decode()

    out = served.predict(None, pd.DataFrame({"image": [b64(row["image"]), None, None],
                                             "text": [row["text"], None, row["text"]],
                                             "audio": [b64(row["audio"]), b64(row["audio"]), b64(row["audio"])]}))
    assert out["modalities"].tolist() == [["image", "text", "audio"], ["audio"], ["text", "audio"]]
    assert set(out["label"]) <= set(LABELS)
    assert set(out["explanation"][1]) == {"audio"}

    _served_over_http(layout, params, {"columns": ["image", "text", "audio"],
                                       "data": [[b64(row["image"]), row["text"], b64(row["audio"])],
                                                [None, None, b64(row["audio"])], [None, row["text"], b64(row["audio"])]]},
                      tmp_path)


def _served_over_http(layout: Layout, params, records: dict, tmp_path: Path) -> None:
    """The trained model saved as the register stage logs it (models-from-code, the checkpoint, its
    request limits), served by `mlflow models serve`: every record answered from what it carries,
    and a clip that is not audio refused with its reason."""
    import dataclasses

    import mlflow

    import mmops
    from mmops.registry.mlflow_registry import signature
    from mmops.serving import pyfunc
    from tests.conftest import venv_env
    from tests.integration.servers import invoke, served_model

    model_dir = tmp_path / "model"
    mlflow.pyfunc.save_model(str(model_dir), python_model=pyfunc.MODEL_CODE,
                             artifacts={"checkpoint": str(layout.model)}, model_config=dataclasses.asdict(params.serve),
                             code_paths=[str(Path(mmops.__file__).parent)],
                             signature=signature([m.name for m in params.modalities]))
    with served_model(str(model_dir), cwd=tmp_path, env=venv_env()) as url:
        status, answer = invoke(url, records, timeout=120)
        assert status == 200, answer
        assert [p["modalities"] for p in answer["predictions"]] == [["image", "text", "audio"], ["audio"],
                                                                     ["text", "audio"]]
        for record in answer["predictions"]:
            assert record["label"] in LABELS and list(record["explanation"]) == record["modalities"]
        status, answer = invoke(url, {"columns": ["audio"], "data": [[base64.b64encode(b"OggS not a clip").decode()]]},
                               timeout=120)
        assert status == 400 and "record 0: 'audio': unreadable audio" in answer["message"], answer
