"""What a deployment's caller may name: a registered version of the configured model, an
output folder under the project."""

from pathlib import Path

import pytest

from mmops.artifacts import inside
from mmops.registry.uris import registered_model_uri

NAME = "mmops-classifier"


@pytest.mark.parametrize("uri", [f"models:/{NAME}@champion", f"models:/{NAME}@challenger", f"models:/{NAME}/3"])
def test_a_registered_version_by_alias_or_number_is_accepted(uri):
    assert registered_model_uri(uri, NAME) == uri


@pytest.mark.parametrize("uri", [
    "runs:/0123abcd/model", "/tmp/evil-model", "file:///tmp/evil-model", "models:/other-model@champion",
    f"models:/{NAME}/0", f"models:/{NAME}/3/../../x", f"models:/{NAME}@champion/extra", "s3://bucket/model",
])
def test_runs_paths_and_other_models_are_refused(uri):
    with pytest.raises(ValueError, match="only a registered version of mmops-classifier"):
        registered_model_uri(uri, NAME)


def test_an_output_folder_must_stay_under_the_project(tmp_path):
    assert inside(tmp_path, "artifacts/batch") == (tmp_path / "artifacts" / "batch").resolve()
    assert inside(tmp_path, tmp_path / "out") == (tmp_path / "out").resolve()
    for escape in ("../elsewhere", "/etc", "artifacts/../../x"):
        with pytest.raises(ValueError, match="must be under the project"):
            inside(tmp_path, escape)


def test_a_link_out_of_the_project_is_refused(tmp_path):
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "out").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="must be under the project"):
        inside(tmp_path / "project", Path("out") / "batch")
