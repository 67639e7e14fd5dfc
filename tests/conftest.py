"""Shared fixtures: tiny datasets written into tmp_path, and the real emoji sample."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from mmops.config import Params, params_from_dict
from mmops.data.manifest import read_manifest, source_names

REPO = Path(__file__).resolve().parents[1]
TINY_LABELS = ["Animals & Nature", "Flags", "Objects"]


@pytest.fixture(scope="session", autouse=True)
def _offline_and_quiet():
    """The same environment the Makefile sets: no telemetry, no hub, no progress bars."""
    patch = pytest.MonkeyPatch()
    for key, value in {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "GX_ANALYTICS_ENABLED": "false",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }.items():
        patch.setenv(key, value)
    yield
    patch.undo()


def write_png(path: Path, color: tuple[int, int, int, int], size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", (size, size), color).save(path)
    return path


def write_manifest(path: Path, rows: list[dict[str, str]], columns: list[str] | None = None) -> Path:
    columns = columns or list(rows[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def repo_params(**sections) -> dict:
    """The repo's params.yaml as a dict, with whole sections or keys overridden."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    return raw


def make_params(root: Path, labels: list[str] | None = None, **sections) -> Params:
    """Params for a dataset in `root`. Tiny datasets have two rows a class: the cleaned suite's
    per-class floor is 1 unless `clean` says otherwise."""
    sections["clean"] = {"min_per_class": 1, **sections.get("clean", {})}
    data = {"root": str(root), "manifest": str(root / "metadata.csv")}
    if labels is not None:
        data["labels"] = labels
    return params_from_dict(repo_params(data=data, **sections))


def raw_frame(params: Params):
    """The manifest as the stages read it (canonical column names)."""
    return read_manifest(params.data.manifest, source_names(params.data, params.modalities))


def modalities_of(params: Params):
    from mmops.modalities import build_modalities

    return build_modalities(params.modalities)


@pytest.fixture
def tiny_rows(tmp_path: Path) -> list[dict[str, str]]:
    """Six good rows over three labels, with real PNG files under tmp_path/data/images."""
    colors = [(255, 0, 0, 255), (0, 255, 0, 255), (0, 0, 255, 255)]
    rows = []
    for i in range(6):
        label = TINY_LABELS[i % 3]
        write_png(tmp_path / "data" / "images" / f"s{i}.png", colors[i % 3])
        rows.append({"sample_id": f"s{i}", "image": f"images/s{i}.png", "text": f"thing number {i}", "label": label})
    return rows


@pytest.fixture
def tiny_params(tmp_path: Path, tiny_rows) -> Params:
    """Params pointing at a tiny, valid dataset in tmp_path/data."""
    write_manifest(tmp_path / "data" / "metadata.csv", tiny_rows)
    return make_params(tmp_path / "data", labels=TINY_LABELS)


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """The real emoji sample, built once per session from the (cached) npm package."""
    from mmops.data.sample import build_sample, fetch_package

    out = tmp_path_factory.mktemp("sample") / "data"
    build_sample(fetch_package(REPO / ".cache" / "npm"), out)
    return out


@pytest.fixture(scope="session")
def twitter_dir(tmp_path_factory) -> Path:
    """Twitter's drawings of the same emoji (the shift set), built once per session."""
    from mmops.data.sample import build_sample, fetch_package

    out = tmp_path_factory.mktemp("shift") / "twitter"
    build_sample(fetch_package(REPO / ".cache" / "npm", "twitter"), out, "twitter")
    return out


def subset_of_sample(sample: Path, dest: Path, per_class: int, ids: set[str] | None = None) -> Path:
    """Copy the first `per_class` samples of each label (manifest + images) into `dest`; with
    `ids`, those samples instead (another vendor's drawings of a subset)."""
    with (sample / "metadata.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    taken: dict[str, int] = {}
    chosen = []
    for row in rows:
        if (row["sample_id"] in ids) if ids is not None else taken.get(row["label"], 0) < per_class:
            taken[row["label"]] = taken.get(row["label"], 0) + 1
            chosen.append(row)
            target = dest / row["image"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sample / row["image"], target)
    write_manifest(dest / "metadata.csv", chosen)
    return dest


def venv_env(**extra: str) -> dict[str, str]:
    """The environment for subprocesses: this interpreter's bin/ first on PATH (dvc, mmops)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(os.sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env
