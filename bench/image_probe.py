"""How well each image encoder's frozen features read the picture alone: a linear probe
(standardised features, logistic regression, its strength chosen on validation), side by side
in one run. Each encoder encodes the split manifest's images and Twitter's drawings of the
val and test ids (`shift/twitter`); the probe is scored on

- grouped 5-fold cross-validation over the train and val rows (`mmops.evaluation.crossval`,
  two fold draws; each fold's own val slice chooses the strength),
- the test split, and Twitter's drawings of the test ids (trained on train, chosen on val).

    .venv/bin/python bench/image_probe.py                         # after `make run`, ~1 minute an encoder
    .venv/bin/python bench/image_probe.py --encoders efficientnet-lite0@128 efficientnet-lite0@224

An encoder is `<name>@<input size>`, a name `ImageModality.encoders` knows.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mmops import artifacts
from mmops.config import ID, LABEL, Layout, ModalityParams
from mmops.evaluation.crossval import grouped_folds
from mmops.modalities.image import ImageModality

STRENGTHS = (0.01, 0.03, 0.1, 0.3)


def encoding(encoder: str):
    """`encode(values, root)` with one loaded `<name>@<size>` encoder."""
    name, size = encoder.split("@")
    modality = ImageModality(ModalityParams(name="image", column="image", encoder=name, options={"size": int(size)}))
    featurize = modality.encoder(torch.device("cpu"), torch.float32)
    return lambda values, root: featurize(values, batch_size=64, load=lambda v: modality.load(v, root)).numpy()


def probe(x: np.ndarray, y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray):
    """The probe of the strength that reads `val` best."""
    fits = [make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)).fit(x, y) for c in STRENGTHS]
    return max(fits, key=lambda f: f.score(val_x, val_y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--data", default="data", help="the sample's data.root")
    parser.add_argument("--shift", default="shift/twitter")
    parser.add_argument("--encoders", nargs="+", default=["efficientnet-lite0@128", "efficientnet-lite0-multilevel@128"])
    parser.add_argument("--fold-seeds", nargs="+", type=int, default=[0, 1])
    args = parser.parse_args()
    frame = artifacts.read_csv(Layout(Path(args.artifacts)).split_manifest)
    twitter = artifacts.read_csv(Path(args.shift) / "metadata.csv").set_index(ID)
    y, split = frame[LABEL].to_numpy(), frame["split"].to_numpy()
    train, val, test = (split == s for s in ("train", "val", "test"))
    pooled = np.flatnonzero(train | val)  # the cross-validated rows
    folds = [f for seed in args.fold_seeds for f in grouped_folds(y[pooled], frame["group"].to_numpy()[pooled], 5,
                                                                   seed=seed)]
    drawn = {s: [i for i in frame.loc[split == s, ID] if i in twitter.index] for s in ("val", "test")}
    print(f"{len(frame)} rows ({test.sum()} test); {args.shift}: {len(drawn['test'])} test ids; "
          f"{len(folds)} grouped folds over {len(pooled)} train and val rows", flush=True)
    rows = []
    for encoder in args.encoders:
        start = time.perf_counter()
        encode = encoding(encoder)  # the weights load once, for the sample and the drawings
        x = encode(list(frame["image"]), Path(args.data))
        tx = {s: encode(list(twitter.loc[ids, "image"]), Path(args.shift)) for s, ids in drawn.items()}
        seconds = time.perf_counter() - start
        xp, yp = x[pooled], y[pooled]
        cv = np.mean([probe(xp[f.train], yp[f.train], xp[f.val], yp[f.val]).score(xp[f.test], yp[f.test])
                      for f in folds])
        fit = probe(x[train], y[train], x[val], y[val])
        rows.append((encoder, x.shape[1], seconds, cv, fit.score(x[test], y[test]),
                     fit.score(tx["val"], twitter.loc[drawn["val"], LABEL]),
                     fit.score(tx["test"], twitter.loc[drawn["test"], LABEL])))
        print(f"  {encoder}: {x.shape[1]} features, encoded in {seconds:.0f} s", flush=True)
    print("\n| encoder | width | encode s | grouped CV (train+val) | test split | Twitter val ids | Twitter test ids |")
    print("|---|---|---|---|---|---|---|")
    for encoder, width, seconds, cv, tst, tval, ttest in rows:
        print(f"| {encoder} | {width} | {seconds:.0f} | {cv:.3f} | {tst:.3f} | {tval:.3f} | {ttest:.3f} |")


if __name__ == "__main__":
    main()
