"""Every fusion method on a sample of three modalities (the Tux Paint stamps: picture, English
caption, French speech), with and without modality dropout, in one run: trained on the cached
features of `make run DATASET=tuxpaint` (artifacts/tuxpaint), each scored through the fused path:
all three, each pair (the third masked) and each modality alone. The question it answers: does
adding speech make fusion better than its best pair and its best single modality?

Two ways to ask it:
- on the pipeline's split (default): trained on train with several seeds, scored on the test
  split (132 rows); prints the mean over the seeds: fused validation loss, then test accuracy
  (fused also macro-F1);
- `--folds K`: grouped cross-validation over the train and val rows (the test split stays
  untouched, for reporting), so each row is scored once by a model that never saw its group
  (folds stratified by label, the split's groups kept whole; in each, a grouped sixth of the
  rest is the validation set). Prints accuracy over those rows, and the paired difference of
  fused minus the best pair and minus the best single modality (each the most accurate on the
  rows that have it), on those rows,
  with a 95% interval from resampling the groups (the gate's cluster bootstrap). With nearly
  6 times as many scored rows as the test split, this is the comparison to choose by.

`--hide MODALITY:SHARE` asks it of records that lack one: that modality is masked on a seeded
share of the scored rows (training is unchanged), as a record without it is served. A pair is
then what a model of those two would answer, on every row that has either (where `--hide
text:0.5` drops the caption, `image-text` answers from the picture alone), so "fused − best
pair" is what the third modality adds where a caption is missing.

    make run DATASET=tuxpaint                               # once: the features
    .venv/bin/python bench/three_modalities.py              # about 3 minutes on 2 CPU cores
    .venv/bin/python bench/three_modalities.py --folds 5   # about 4 minutes
    .venv/bin/python bench/three_modalities.py --folds 5 --hide text:0.5 --methods late trust
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch.nn import functional as F

from mmops.config import Layout, load_params
from mmops.data.split_features import features_by_split
from mmops.evaluation.bootstrap import Resampler, interval
from mmops.evaluation.crossval import grouped_folds, pool, take
from mmops.models.fusion import FUSED, FUSIONS
from mmops.models.fusion.parts import subsets
from mmops.models.predict import predict
from mmops.training.train import fit

CPU = torch.device("cpu")
POOLED = ("train", "val")  # what cross-validation folds; the test split is never seen


def answers(model, split: dict, either: bool = False) -> dict[str, np.ndarray]:
    """The model's answer per row: fused, each pair and each modality alone, each through the
    fused path with every other modality masked, on the rows that have all of them (with
    `either`, any of them: what a model of only those would answer); -1 on the others."""
    features, present = split["features"], split["present"]
    got = {FUSED: predict(model, features, CPU, present).log_probs[FUSED].argmax(1).numpy()}
    for name, chosen in {**subsets(model.modalities), **{m: (m,) for m in model.modalities}}.items():
        stacked = torch.stack([present[m] for m in chosen])
        has = stacked.any(0) if either else stacked.all(0)
        answer = np.full(len(has), -1)
        if bool(has.any()):
            rows = {m: f[has] for m, f in features.items()}
            masks = {m: present[m][has] if m in chosen else torch.zeros(int(has.sum()), dtype=torch.bool)
                     for m in present}
            answer[has.numpy()] = predict(model, rows, CPU, masks).log_probs[FUSED].argmax(1).numpy()
        got[name] = answer
    return got


def hide(split: dict, hidden: tuple[str, float] | None, seed: int = 0) -> dict:
    """`split` with one modality hidden on a seeded share of its rows (`--hide text:0.5`: half
    the captions missing), as a record that lacks it is served; the features stay."""
    if hidden is None:
        return split
    modality, share = hidden
    others = torch.stack([p for m, p in split["present"].items() if m != modality]).any(0)
    # never a row's last modality: a record with none is no request
    lost = (torch.rand(len(split["target"]), generator=torch.Generator().manual_seed(seed)) < share) & others
    present = {**split["present"], modality: split["present"][modality] & ~lost}
    return {**split, "present": present}


def on_test_split(args, params, data, methods) -> None:
    tr, va, te = data["train"], data["val"], data["test"]
    modalities, classes, y = tuple(tr["features"]), len(params.data.labels), te["target"].numpy()
    pairs = subsets(modalities)
    columns = ["val loss", "fused", "fused F1", *pairs, *modalities]
    print(f"{len(y)} test samples; mean of seeds {args.seeds}\n")
    print("| method | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, train in methods:
        runs = []
        for seed in args.seeds:
            model = fit(tr["features"], tr["target"], va["features"], va["target"], classes,
                        dataclasses.replace(train, seed=seed), CPU, tr["present"], va["present"]).model
            val = predict(model, va["features"], CPU, va["present"]).log_probs[FUSED]
            got = answers(model, hide(te, args.hide), either=args.hide is not None)
            row = {"val loss": float(F.nll_loss(val, va["target"])), "fused F1": f1_score(y, got[FUSED], average="macro")}
            for column, answer in got.items():
                has = answer >= 0
                row[column] = float(np.mean(answer[has] == y[has]))
            runs.append(row)
        print(f"| {name} | " + " | ".join(f"{np.mean([r[c] for r in runs]):.3f}" for c in columns) + " |", flush=True)


def cross_validated(args, params, data, frame, methods) -> None:
    everything, pooled_rows = pool(data, frame, POOLED)
    y, classes = everything["target"].numpy(), len(params.data.labels)
    groups = pooled_rows["group"].to_numpy(dtype=str)
    modalities = tuple(everything["features"])
    pairs = subsets(modalities)
    folds = grouped_folds(y, groups, args.folds, seed=args.fold_seed)
    resampler = Resampler.of(groups, len(y), resamples=2000, seed=0)
    print(f"{len(y)} train and val rows in {len(np.unique(groups))} groups, {args.folds} grouped folds (seed {args.fold_seed}); "
          f"training seeds {args.seeds}, each scored on its own\n")
    columns = ["fused", "fused F1", *pairs, *modalities]
    print("| method | " + " | ".join(columns) + " | fused − best pair | fused − best single |")
    print("|---" * (len(columns) + 3) + "|")
    for name, train in methods:
        for seed in args.seeds:
            got = {c: np.full(len(y), -1) for c in (FUSED, *pairs, *modalities)}
            for fold in folds:
                tr, va = take(everything, fold.train), take(everything, fold.val)
                model = fit(tr["features"], tr["target"], va["features"], va["target"], classes,
                            dataclasses.replace(train, seed=seed), CPU, tr["present"], va["present"]).model
                scored = hide(take(everything, fold.test), args.hide)
                for column, answer in answers(model, scored, either=args.hide is not None).items():
                    got[column][fold.test] = answer
            scores = {c: float(np.mean(a[a >= 0] == y[a >= 0])) for c, a in got.items()}
            scores["fused F1"] = f1_score(y, got[FUSED], average="macro")
            gaps = []
            for rivals in (pairs, modalities):
                if not rivals:  # two modalities: no pairs short of both
                    gaps.append("")
                    continue
                best = max(rivals, key=lambda c: scores[c])
                has = got[best] >= 0  # paired: fused and its rival on the same rows, the same group draws
                on = resampler.subset(has)
                diff = on.accuracy(y[has], got[FUSED][has]) - on.accuracy(y[has], got[best][has])
                low, high = interval(diff)
                observed = np.mean(got[FUSED][has] == y[has]) - np.mean(got[best][has] == y[has])
                gaps.append(f"{observed:+.3f} [{low:+.3f}, {high:+.3f}] vs {best}")
            label = name + (f" (seed {seed})" if len(args.seeds) > 1 else "")
            print(f"| {label} | " + " | ".join(f"{scores[c]:.3f}" for c in columns) + " | " + " | ".join(gaps) + " |",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="datasets/tuxpaint.yaml")
    parser.add_argument("--artifacts", default="artifacts/tuxpaint")
    parser.add_argument("--methods", nargs="+", default=sorted(FUSIONS))
    parser.add_argument("--dropouts", nargs="+", type=float, default=[0.0, 0.3])
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="training seeds (default: 0 1 2 on the test split, 0 with --folds)")
    parser.add_argument("--folds", type=int, default=0, help="grouped cross-validation over the train and val rows (0: off)")
    parser.add_argument("--fold-seed", type=int, default=0)
    parser.add_argument("--hide", default=None, metavar="MODALITY:SHARE",
                        help="score with that modality missing on a seeded share of the scored rows (e.g. text:0.5)")
    args = parser.parse_args()
    if args.hide:
        modality, _, share = args.hide.partition(":")
        if not share:
            parser.error("--hide takes MODALITY:SHARE, e.g. text:0.5")
        args.hide = (modality, float(share))
    args.seeds = args.seeds or ([0] if args.folds else [0, 1, 2])
    params, layout = load_params(Path(args.params)), Layout(Path(args.artifacts))
    _, data, frame = features_by_split(params, layout)
    methods = [(method + (f" +drop {dropout:g}" if dropout else ""),
                dataclasses.replace(params.train, fusion=method, modality_dropout=dropout))
               for method in args.methods for dropout in args.dropouts]
    if args.folds:
        cross_validated(args, params, data, frame, methods)
    else:
        on_test_split(args, params, data, methods)


if __name__ == "__main__":
    main()
