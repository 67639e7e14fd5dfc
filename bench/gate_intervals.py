"""How much the test split's grouping widens the gate's intervals: the same predictions (the
evaluate stage's, on the sample's test split), bootstrapped by rows and by the split's groups,
side by side. Each model's macro-F1, and the gate's margin (fused minus the best single
modality, per resample).

    .venv/bin/python bench/gate_intervals.py          # after `make run`
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from mmops.config import Layout, load_params
from mmops.data.manifest import ID, LABEL
from mmops.evaluation.bootstrap import UNKNOWN, Resampler, interval, macro_f1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--artifacts", default="artifacts")
    args = parser.parse_args()
    params, layout = load_params(Path(args.params)), Layout(Path(args.artifacts))
    predictions = pd.read_csv(layout.predictions, dtype=str, keep_default_na=False)
    split = pd.read_csv(layout.split_manifest, dtype=str, keep_default_na=False).set_index(ID)
    classes = list(params.data.labels)
    index = {c: i for i, c in enumerate(classes)}
    target = predictions[LABEL].map(index).to_numpy()
    models = [c.removeprefix("pred_") for c in predictions.columns if c.startswith("pred_")]
    answers = {m: predictions[f"pred_{m}"].map(index).fillna(UNKNOWN).astype(int).to_numpy() for m in models}
    present = {m: predictions[f"pred_{m}"].ne("").to_numpy() for m in models}
    groups = predictions[ID].map(split["group"]).to_numpy()
    gate = params.promote
    print(f"{len(target)} test rows in {len(set(groups))} groups; {gate.bootstrap_resamples} resamples, 95% intervals")
    print(f"{'quantity':<28} {'observed':>9} {'by rows':>18} {'by groups':>18} {'width x':>8}")
    resamplers = {how: Resampler.of(g, len(target), resamples=gate.bootstrap_resamples, seed=gate.seed)
                  for how, g in (("rows", None), ("groups", groups))}
    per = {how: {m: r.macro_f1(target, answers[m], len(classes), present[m]) for m in models}
           for how, r in resamplers.items()}
    singles = [m for m in models if m != "fused"]
    quantities = {f"{m} macro-F1": (macro_f1(target[present[m]], answers[m][present[m]], len(classes)),
                                    {how: per[how][m] for how in per}) for m in models}
    best = max(singles, key=lambda m: quantities[f"{m} macro-F1"][0])
    quantities["margin: fused - best single"] = (
        quantities["fused macro-F1"][0] - quantities[f"{best} macro-F1"][0],
        {how: per[how]["fused"] - np.max([per[how][m] for m in singles], axis=0) for how in per})
    for name, (observed, values) in quantities.items():
        (rl, rh), (gl, gh) = interval(values["rows"]), interval(values["groups"])
        print(f"{name:<28} {observed:>9.3f} [{rl:+.3f}, {rh:+.3f}] [{gl:+.3f}, {gh:+.3f}] "
              f"{(gh - gl) / (rh - rl):>7.2f}x")


if __name__ == "__main__":
    main()
