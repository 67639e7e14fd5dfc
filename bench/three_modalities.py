"""Every fusion method on a sample of three modalities (the Tux Paint stamps: picture, English
caption, French speech), with and without modality dropout, in one run: trained on the cached
features of `make run DATASET=tuxpaint` (artifacts/tuxpaint) with several seeds, each scored on
the test split through the fused path: all three, each pair (the third masked) and each modality
alone. Prints the mean over the seeds: fused validation loss, then test accuracy (fused also
macro-F1). The question it answers: does adding speech make fusion better than its best pair and
its best single modality?

    make run DATASET=tuxpaint                          # once: the features
    .venv/bin/python bench/three_modalities.py         # about 3 minutes on 2 CPU cores
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
from mmops.models.fusion import FUSED, FUSIONS
from mmops.models.fusion.parts import subsets, together
from mmops.models.predict import predict
from mmops.stages.model import features_by_split
from mmops.training.train import fit

CPU = torch.device("cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="datasets/tuxpaint.yaml")
    parser.add_argument("--artifacts", default="artifacts/tuxpaint")
    parser.add_argument("--methods", nargs="+", default=sorted(FUSIONS))
    parser.add_argument("--dropouts", nargs="+", type=float, default=[0.0, 0.3])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    params, layout = load_params(Path(args.params)), Layout(Path(args.artifacts))
    _, data, _ = features_by_split(params, layout)
    tr, va, te = data["train"], data["val"], data["test"]
    modalities, classes, y = tuple(tr["features"]), len(params.data.labels), te["target"].numpy()
    pairs = subsets(modalities)
    columns = ["val loss", "fused", "fused F1", *pairs, *modalities]
    print(f"{len(y)} test samples; mean of seeds {args.seeds}\n")
    print("| method | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for method in args.methods:
        for dropout in args.dropouts:
            runs = []
            for seed in args.seeds:
                train = dataclasses.replace(params.train, fusion=method, modality_dropout=dropout, seed=seed)
                model = fit(tr["features"], tr["target"], va["features"], va["target"], classes, train, CPU,
                            tr["present"], va["present"]).model
                val = predict(model, va["features"], CPU, va["present"]).log_probs[FUSED]
                out = predict(model, te["features"], CPU, te["present"]).log_probs
                fused = out[FUSED].argmax(1).numpy()
                row = {"val loss": float(F.nll_loss(val, va["target"])), "fused": float(np.mean(fused == y)),
                       "fused F1": f1_score(y, fused, average="macro")}
                for name, chosen in pairs.items():  # samples that have the pair, the third masked
                    has = torch.stack([te["present"][m] for m in chosen]).all(0).numpy()
                    answer = predict(model, te["features"], CPU, together(te["present"], chosen)).log_probs[FUSED]
                    row[name] = float(np.mean(answer.argmax(1).numpy()[has] == y[has]))
                for m in modalities:  # alone, on the samples that have it
                    has = te["present"][m].numpy()
                    row[m] = float(np.mean(out[m].argmax(1).numpy()[has] == y[has]))
                runs.append(row)
            name = method + (f" +drop {dropout:g}" if dropout else "")
            print(f"| {name} | " + " | ".join(f"{np.mean([r[c] for r in runs]):.3f}" for c in columns) + " |",
                  flush=True)


if __name__ == "__main__":
    main()
