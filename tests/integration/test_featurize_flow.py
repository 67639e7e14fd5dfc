"""featurize in shards on a real Dask LocalCluster (Prefect's Dask task runner) writes the
features one process writes, in the same order, and dvc.lock records them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
import torch
import yaml

from mmops import stages
from mmops.config import Layout, load_params
from mmops.features.cache import FeatureCache
from tests.integration.conftest import dvc

pytestmark = pytest.mark.slow


def test_featurize_on_two_dask_workers_equals_one_process_and_is_committed_to_dvc(
        project, prefect_server, monkeypatch, tmp_path, tmp_path_factory):
    from flows.featurize import featurize

    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["scale"] = {"shards": 5, "dask_address": None, "local_workers": 2}  # 72 rows: 15, 15, 14, 14, 14
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params, layout = load_params(project / "params.yaml"), Layout(project / "artifacts")
    for stage in ("validate", "clean", "split", "augment"):  # what dvc repro runs before featurize
        getattr(stages, stage)(params, layout)
    single = Layout(tmp_path / "single")
    single.clean_manifest.parent.mkdir(parents=True)
    shutil.copy(layout.clean_manifest, single.clean_manifest)
    stages.featurize(params, single)

    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # a worker's own directory
    for name in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    result = featurize(project_dir=str(project))
    # Dask's worker settings stay out of this process, so a later `dvc repro train` does not inherit them
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ and "OMP_NUM_THREADS" not in os.environ

    assert result["shards"] == 5 and result["samples"] == 72 and result["dvc_committed"]
    one, many = FeatureCache.load(single.features), FeatureCache.load(layout.features)
    assert many.sample_ids == one.sample_ids and many.encoders == one.encoders
    assert set(many.features) == set(one.features) == {"image", "text"}
    for m in one.features:
        assert torch.equal(many.present[m], one.present[m])
        torch.testing.assert_close(many.features[m], one.features[m], atol=1e-5, rtol=0)

    # dvc.lock records the output the flow wrote, so `dvc repro` would not run featurize again
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["featurize"]
    out = {o["path"]: o for o in lock["outs"]}
    assert out["artifacts/featurize/features.pt"]["md5"] == hashlib.md5(layout.features.read_bytes()).hexdigest()
    # the feature cache's suite ran on the merged shards, as it does in `dvc repro`
    assert json.loads(layout.feature_expectations.read_text())["success"] is True
    assert out["artifacts/featurize/expectations.json"]["md5"] == \
        hashlib.md5(layout.feature_expectations.read_bytes()).hexdigest()
    assert "scale" not in lock["params"]["params.yaml"]
    assert "up to date" in dvc(project, "status", "featurize").stdout
