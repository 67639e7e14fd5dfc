"""Three modalities end to end on real recordings: a small slice of the Tux Paint sample (picture,
English caption, French spoken description; a few rows without their clip) through every stage
from validate to evaluate, then served with image+text+audio, audio alone, and text+audio."""

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
LABELS = ["animals", "food", "symbols", "town"]
PER_CLASS = 14


@pytest.fixture(scope="module")
def tuxpaint_slice(tmp_path_factory) -> Path:
    """PER_CLASS stamps of each of LABELS with their clips, the first two of each class without."""
    from mmops.data.tuxpaint import build_tuxpaint, fetch_deb

    full = tmp_path_factory.mktemp("tuxpaint") / "full"
    build_tuxpaint(fetch_deb(REPO / ".cache" / "apt"), full)
    frame = pd.read_csv(full / "metadata.csv", dtype=str, keep_default_na=False)
    frame = frame[frame["label"].isin(LABELS) & (frame["audio"] != "")]
    frame = frame.groupby("label").head(PER_CLASS).reset_index(drop=True)
    frame.loc[frame.groupby("label").head(2).index, "audio"] = ""
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
    raw["modalities"].append({"name": "audio", "column": "audio", "encoder": "mfcc-stats", "required": False})
    raw["split"].update(family_separator=".", family_words=[])
    return params_from_dict(yaml.safe_load(yaml.safe_dump(raw)))


def test_three_modalities_go_from_raw_clips_to_a_served_answer_for_any_subset(tuxpaint_slice, tmp_path):
    from mmops import stages
    from mmops.serving.pyfunc import MultimodalClassifier

    params, layout = _params(tuxpaint_slice), Layout(tmp_path / "artifacts")
    for name in ("validate", "clean", "split", "augment"):
        getattr(stages, name)(params, layout)
    featurized = stages.featurize(params, layout, device="cpu")
    assert featurized["dims"]["audio"] == 40
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
