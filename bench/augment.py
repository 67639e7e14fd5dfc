"""The augment stage's effect, with and without, in-domain and under a change of art style: for
each setting, the train split's views are made and encoded exactly as the stages make them,
the default model is trained on the real training rows plus those views (model selection on
val, as always), and scored on the sample's test split and on the Twitter renderings of the
same test ids (`shift/twitter`: the same emoji, another vendor's drawings), fused and each
modality alone (the masked path), with 95% intervals over the test split's groups.

    .venv/bin/python bench/augment.py                       # after `make run` (about 8 minutes)
    .venv/bin/python bench/augment.py --settings 0 2:0.5 --seeds 0 1

A setting is `views:strength` (both modalities) or `views:image_strength:text_strength`; `0` is
no augmentation. Views are made in a temporary folder; artifacts/ is only read.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mmops import artifacts
from mmops.config import ID, LABEL, Layout, load_params
from mmops.data.augment import make_views
from mmops.data.split_features import features_by_split
from mmops.evaluation.bootstrap import Resampler
from mmops.evaluation.metrics import score_models
from mmops.features.cache import FeatureCache
from mmops.features.shards import encode_manifest, encode_shard
from mmops.modalities import build_modalities
from mmops.models.fusion import FUSED
from mmops.models.predict import predict
from mmops.training.train import fit

CPU = torch.device("cpu")


def setting(text: str) -> tuple[int, float, float]:
    parts = [float(p) for p in text.split(":")]
    if parts == [0]:
        return 0, 0.0, 0.0
    views, image, text_strength = (parts + parts[-1:])[:3] if len(parts) == 2 else parts
    return int(views), image, text_strength


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--shift", default="shift/twitter", help="a labelled manifest folder with the same ids")
    parser.add_argument("--settings", nargs="+", default=["0", "2:0.5", "2:1.0", "4:0.5"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    params, layout = load_params(Path(args.params)), Layout(Path(args.artifacts))
    modalities = build_modalities(params.modalities)
    _, data, frame = features_by_split(params, layout)
    classes = list(params.data.labels)
    tr, va, te = data["train"], data["val"], data["test"]
    test_rows = frame[frame["split"] == "test"]
    resampler = Resampler.of(test_rows["group"].to_numpy(), len(test_rows), resamples=args.resamples, seed=0)

    # the shift set: its rows whose ids are in the test split, in the test split's order
    shift_root = Path(args.shift)
    shift = artifacts.read_csv(shift_root / "metadata.csv").set_index(ID)
    ids = [s for s in test_rows[ID] if s in shift.index]
    shift_rows = shift.loc[ids].reset_index()
    shift_cache = encode_manifest(params, shift_rows, shift_root, "cpu")
    shift_features, shift_present = shift_cache.align(ids, str(shift_root))
    y_shift = np.array([classes.index(label) for label in shift_rows[LABEL]])
    shift_groups = test_rows.set_index(ID).loc[ids, "group"].to_numpy()
    shift_resampler = Resampler.of(shift_groups, len(ids), resamples=args.resamples, seed=0)
    print(f"test split: {len(test_rows)} rows; {args.shift}: {len(ids)} of them", flush=True)

    results = []
    for text in args.settings:
        views_n, image_strength, text_strength = setting(text)
        start = time.perf_counter()
        x, p, y = tr["features"], tr["present"], tr["target"]
        if views_n:
            augment = dataclasses.replace(params.augment, enabled=True, views=views_n,
                                          strength={"image": image_strength, "text": text_strength})
            with tempfile.TemporaryDirectory() as folder:
                views = make_views(frame, modalities, augment, params.data.root, Path(folder))
                cache: FeatureCache = encode_shard(params, views, "cpu", root=Path(folder))
            vx, vp = cache.align(list(views[ID]), "views")
            x = {m: torch.cat([x[m], vx[m]]) for m in x}
            p = {m: torch.cat([p[m], vp[m]]) for m in p}
            y = torch.cat([y, torch.tensor([classes.index(label) for label in views[LABEL]])])
        made = time.perf_counter() - start
        for seed in args.seeds:
            result = fit(x, y, va["features"], va["target"], len(classes), dataclasses.replace(params.train, seed=seed),
                         CPU, p, va["present"])
            scores = {}
            for name, feats, present, target, resample in (
                    ("sample", te["features"], te["present"], te["target"].numpy(), resampler),
                    ("twitter", shift_features, shift_present, y_shift, shift_resampler)):
                out = predict(result.model, feats, CPU, present)
                scores[name] = score_models({k: v.numpy() for k, v in out.log_probs.items()}, target,
                                            {k: v.numpy() for k, v in present.items()}, len(classes), resample)
            results.append({"setting": text, "seed": seed, "train_rows": len(y), "views_s": made, **scores})
            print(f"  {text} seed {seed}: {len(y)} training rows, views made and encoded in {made:.0f} s", flush=True)

    print("\n| augmentation (views:strength) | seed | train rows | sample fused acc / F1 | sample image | "
          "sample text | Twitter fused acc / F1 | Twitter image | Twitter text | Twitter fused ECE |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        def cell(where: str, model: str) -> str:
            s = r[where][model]
            return f"{s['accuracy']:.3f} [{s['accuracy_low']:.3f}, {s['accuracy_high']:.3f}] / {s['macro_f1']:.3f}"
        print(f"| {r['setting']} | {r['seed']} | {r['train_rows']} | {cell('sample', FUSED)} | {cell('sample', 'image')} | "
              f"{cell('sample', 'text')} | {cell('twitter', FUSED)} | {cell('twitter', 'image')} | "
              f"{cell('twitter', 'text')} | {r['twitter'][FUSED]['ece']:.3f} |")
    if len(args.seeds) > 1:
        table = pd.DataFrame([{"setting": r["setting"], **{f"{w}_{m}": r[w][m]["accuracy"] for w in ("sample", "twitter")
                                                             for m in (FUSED, "image", "text")}} for r in results])
        print("\nMean accuracy over seeds:")
        print(table.groupby("setting", sort=False).mean().round(3).to_markdown())


if __name__ == "__main__":
    main()
