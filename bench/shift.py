"""Every fusion method under a change of art style, in one run: each trained on the cached
features as `train` does (calibrated on validation), then scored as the shift stage scores, on
the sample's test split and on each shift set's rows whose ids are in it (Twitter's drawings by
default): fused / image / text accuracy, macro-F1 and ECE, and the fusion regret (the best single
modality minus fused; <= 0 is the goal). With and without modality dropout, which teaches the
fused path to answer from one modality alone.

`--folds K` compares the methods on many more rows: grouped cross-validation over the train and
val rows (`mmops.evaluation.crossval`; the test split and its drawings are never seen), each row
and its drawing scored once by a model that never saw its group; the drawings of train and val
ids are what issue 23 allows tuning on. Each setting's fused accuracy is compared with params.yaml's own on
the same rows (a paired 95% interval from resampling groups); --fold-seeds and --seeds repeat and average.
The augment stage's views are left out of the folds (off by default).

    .venv/bin/python bench/shift.py --seeds 0 1 2                # after `make run` (about 5 minutes)
    .venv/bin/python bench/shift.py --methods late gated --dropouts 0 0.3 --seeds 0 1
    .venv/bin/python bench/shift.py --folds 5                    # about 5 minutes
    .venv/bin/python bench/shift.py --folds 5 --methods late trust --fold-seeds 0 1 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mmops.config import ID, LABEL, Layout, load_params
from mmops.data.clean import read_rows
from mmops.data.split_features import features_by_split
from mmops.evaluation.bootstrap import Resampler, interval
from mmops.evaluation.crossval import grouped_folds, pool, take
from mmops.evaluation.shift import score_set
from mmops.features.shards import encode_manifest
from mmops.models.fusion import FUSIONS
from mmops.models.predict import predict
from mmops.training.train import fit

CPU = torch.device("cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--methods", nargs="+", default=sorted(FUSIONS))
    parser.add_argument("--dropouts", nargs="+", type=float, default=[0.0, 0.3])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--folds", type=int, default=0, help="grouped cross-validation over train and val (0: off)")
    parser.add_argument("--fold-seeds", nargs="+", type=int, default=[0], help="with --folds: the fold draws")
    args = parser.parse_args()
    params, layout = load_params(Path(args.params)), Layout(Path(args.artifacts))
    if args.folds:
        cross_validated(args, params, layout)
        return
    classes = list(params.data.labels)
    _, data, frame = features_by_split(params, layout, views=True)
    tr, va, te = data["train"], data["val"], data["test"]
    sets = {"sample": (te["features"], te["present"], te["target"].numpy())}
    for name, (rows, part) in shift_sets(params, set(frame.loc[frame["split"] == "test", ID]), "the test split").items():
        sets[name] = (part["features"], part["present"], part["target"].numpy())

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


MODELS = ("fused", "image", "text")


def shift_sets(params, ids: set[str], where: str) -> dict[str, tuple[pd.DataFrame, dict]]:
    """Each listed shift set's rows whose ids are in `ids` (an absent set skipped, said so), and
    their features, presence and targets (a split as `features_by_split` gives it)."""
    classes, sets = list(params.data.labels), {}
    for name, manifest in params.shift.sets.items():
        if not Path(manifest).exists():
            print(f"{name}: {manifest} is absent, skipped")
            continue
        rows, _ = read_rows(params, Path(manifest), labels=classes)
        rows = rows[rows[ID].isin(ids)].reset_index(drop=True)
        features, present = encode_manifest(params, rows, Path(manifest).parent).align(list(rows[ID]), manifest)
        target = torch.tensor([classes.index(label) for label in rows[LABEL]])
        sets[name] = (rows, {"features": features, "present": present, "target": target})
        print(f"{name}: {len(rows)} rows whose ids are in {where}", flush=True)
    return sets


def cross_validated(args, params, layout: Layout) -> None:
    classes = list(params.data.labels)
    _, data, frame = features_by_split(params, layout)
    everything, pooled_rows = pool(data, frame, ("train", "val"))
    y, groups = everything["target"].numpy(), pooled_rows["group"].to_numpy(dtype=str)
    position = {sample_id: i for i, sample_id in enumerate(pooled_rows[ID])}
    sets = {"sample": (everything, np.arange(len(y)))}  # per set: its rows, and each row's pooled position
    for name, (rows, part) in shift_sets(params, set(position), "train or val").items():
        sets[name] = (part, np.array([position[i] for i in rows[ID]]))
    repeats = [(f, seed) for f in args.fold_seeds for seed in args.seeds]  # fold draw, training seed
    draws = {f: grouped_folds(y, groups, args.folds, seed=f) for f in args.fold_seeds}
    print(f"{len(y)} train and val rows in {len(np.unique(groups))} groups, {args.folds} grouped folds; "
          f"fold draws {args.fold_seeds} x training seeds {args.seeds}, averaged\n")
    # every setting is compared with the params' own, paired: the same rows, the same group draws
    default = (params.train.fusion, params.train.modality_dropout)
    settings = [default, *((m, d) for m in args.methods for d in args.dropouts if (m, d) != default)]
    resamplers = {name: Resampler.of(groups[where], len(where), resamples=2000, seed=0)
                  for name, (_, where) in sets.items()}
    header = " | ".join(f"{n} fused | {n} image | {n} text | {n} regret | {n} fused − default"
                        + ("" if n == "sample" else f" | {n} fused answers changed") for n in sets)
    print(f"| method | modality dropout | {header} |")
    print("|---|---|" + "---|---|---|---|---|" * len(sets) + "---|" * (len(sets) - 1))
    baseline: dict[tuple, np.ndarray] = {}
    for method, dropout in settings:
        numbers: dict[str, list[list[float]]] = {name: [] for name in sets}
        gains: dict[str, list[np.ndarray]] = {name: [] for name in sets}
        for fold_seed, seed in repeats:
            train = dataclasses.replace(params.train, fusion=method, modality_dropout=dropout, seed=seed)
            got = {name: {} for name in sets}
            for fold in draws[fold_seed]:
                tr, va = take(everything, fold.train), take(everything, fold.val)
                model = fit(tr["features"], tr["target"], va["features"], va["target"], len(classes), train, CPU,
                            tr["present"], va["present"]).model
                tested = np.isin(np.arange(len(y)), fold.test)
                for name, (part, where) in sets.items():
                    if not tested[where].any():  # a small set may have no row in this fold
                        continue
                    rows = take(part, np.flatnonzero(tested[where]))
                    out = predict(model, rows["features"], CPU, rows["present"]).log_probs
                    for k, v in out.items():
                        got[name].setdefault(k, np.zeros((len(where), len(classes))))[tested[where]] = v.numpy()
            for name, (part, where) in sets.items():
                target = part["target"].numpy()
                scores = score_set(got[name], target, {k: v.numpy() for k, v in part["present"].items()}, len(classes))
                fused = got[name]["fused"].argmax(1)
                reference = baseline.setdefault((name, fold_seed, seed), fused)
                on = resamplers[name]
                gains[name].append(on.accuracy(target, fused) - on.accuracy(target, reference))
                # how many fused answers another drawing of the same sample changes
                changed = float(np.mean(fused != got["sample"]["fused"].argmax(1)[where]))
                numbers[name].append([scores["models"][m][k] for m in MODELS for k in ("accuracy", "macro_f1", "ece")]
                                     + [scores["regret"], float(np.mean(fused == target) - np.mean(reference == target)),
                                        changed])
        cells = []
        for name in sets:
            n = np.mean(numbers[name], axis=0)
            low, high = interval(np.mean(gains[name], axis=0))
            cells += [" / ".join(f"{x:.3f}" for x in n[i:i + 3]) for i in (0, 3, 6)] + [
                f"{n[9]:+.3f}", f"{n[10]:+.3f} [{low:+.3f}, {high:+.3f}]"] + ([] if name == "sample" else [f"{n[11]:.1%}"])
        print(f"| {method} | {dropout} | " + " | ".join(cells) + " |", flush=True)
    print(f"\n(accuracy / macro-F1 / ECE, each row scored once per fold draw by the fold that held it out, averaged "
          f"over the repeats; fused − default: the fused accuracy minus params.yaml's own setting's ({default[0]}, "
          f"dropout {default[1]}) on the same rows, with the paired 95% interval from resampling groups; fused answers "
          f"changed: the share of a set's rows whose fused answer differs from the same model's on the sample's drawing)")

if __name__ == "__main__":
    main()
