"""Every fusion method under a change of art style, in one run: each trained on the cached
features as `train` does (calibrated on validation), then scored as the shift stage scores, on
the sample's test split and on each shift set's rows whose ids are in it (Twitter's drawings by
default): fused / image / text accuracy, macro-F1 and ECE, and the fusion regret (the best single
modality minus fused; <= 0 is the goal). With and without modality dropout, which teaches the
fused path to answer from one modality alone.

    .venv/bin/python bench/shift.py --seeds 0 1 2                # after `make run` (about 5 minutes)
    .venv/bin/python bench/shift.py --methods late gated --dropouts 0 0.3 --seeds 0 1
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from mmops.config import ID, LABEL, Layout, load_params
from mmops.data.drift import encode_manifest, read_rows
from mmops.evaluation.shift import score_set
from mmops.models.fusion import FUSIONS
from mmops.models.predict import predict
from mmops.stages.model import features_by_split
from mmops.training.train import fit

CPU = torch.device("cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--methods", nargs="+", default=sorted(FUSIONS))
    parser.add_argument("--dropouts", nargs="+", type=float, default=[0.0, 0.3])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args()
    params, layout = load_params(Path(args.params)), Layout(Path(args.artifacts))
    classes = list(params.data.labels)
    _, data, frame = features_by_split(params, layout, views=True)
    tr, va, te = data["train"], data["val"], data["test"]
    test_ids = list(frame.loc[frame["split"] == "test", ID])
    sets = {"sample": (te["features"], te["present"], te["target"].numpy())}
    for name, manifest in params.shift.sets.items():
        if not Path(manifest).exists():
            print(f"{name}: {manifest} is absent, skipped")
            continue
        rows, _ = read_rows(params, Path(manifest), labels=classes)
        rows = rows[rows[ID].isin(set(test_ids))].reset_index(drop=True)
        cache = encode_manifest(params, rows, Path(manifest).parent)
        features, present = cache.align(list(rows[ID]), manifest)
        sets[name] = (features, present, np.array([classes.index(label) for label in rows[LABEL]]))
        print(f"{name}: {len(rows)} rows whose ids are in the test split", flush=True)

    def cells(numbers: list[float]) -> str:
        """One set's 10 numbers after another: three models' "accuracy / macro-F1 / ECE", the regret."""
        out = []
        for start in range(0, len(numbers), 10):
            n = numbers[start:start + 10]
            out += [" / ".join(f"{x:.3f}" for x in n[i:i + 3]) for i in (0, 3, 6)] + [f"{n[9]:+.3f}"]
        return " | ".join(out)

    header = " | ".join(f"{n} fused | {n} image | {n} text | {n} regret" for n in sets)
    print(f"\n| method | modality dropout | seed | {header} |")
    print("|---|---|---|" + "---|---|---|---|" * len(sets))
    runs: dict[tuple[str, float], list[list[float]]] = {}
    for method in args.methods:
        for dropout in args.dropouts:
            for seed in args.seeds:
                train = dataclasses.replace(params.train, fusion=method, modality_dropout=dropout, seed=seed)
                model = fit(tr["features"], tr["target"], va["features"], va["target"], len(classes), train, CPU,
                            tr["present"], va["present"]).model
                numbers = []  # per set: accuracy, macro-F1, ECE of fused, image, text; then the regret
                for features, present, y in sets.values():
                    out = predict(model, features, CPU, present).log_probs
                    scores = score_set({k: v.numpy() for k, v in out.items()}, y,
                                       {k: v.numpy() for k, v in present.items()}, len(classes))
                    numbers += [scores["models"][m][k] for m in ("fused", "image", "text")
                                for k in ("accuracy", "macro_f1", "ece")] + [scores["regret"]]
                runs.setdefault((method, dropout), []).append(numbers)
                print(f"| {method} | {dropout} | {seed} | {cells(numbers)} |", flush=True)
    if len(args.seeds) > 1:
        print(f"\nMean over seeds {', '.join(map(str, args.seeds))}:\n")
        print(f"| method | modality dropout | {header} |")
        print("|---|---|" + "---|---|---|---|" * len(sets))
        for (method, dropout), numbers in runs.items():
            print(f"| {method} | {dropout} | {cells(list(np.mean(numbers, axis=0)))} |")
    print("\n(accuracy / macro-F1 / ECE; the shift sets on their rows whose ids are in the test split)")


if __name__ == "__main__":
    main()
