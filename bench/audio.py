"""The frozen audio baseline on the three-modality sample: each French spoken description summarised
by its MFCCs' mean and standard deviation (`mmops.modalities.audio_features`), then a logistic
regression, scored by grouped, stratified 5-fold cross-validation. Groups join the stamps that
share a clip (byte-identical or re-encoded) or the same English caption (`frog` / `frog-1`), so
no clip is scored on a fold that trained on its twin. Prints accuracy and macro-F1 per fold and their mean,
beside the majority class, and how long reading and featurising took.

    .venv/bin/mmops sample --dataset tuxpaint     # once: builds datasets/tuxpaint
    .venv/bin/python bench/audio.py               # about a minute on 2 CPU cores
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mmops.data.split import near_duplicate_links
from mmops.modalities.audio import AudioOptions
from mmops.modalities.audio_features import AudioSpec, fingerprint, mfcc_statistics, read_clip


def groups_of(frame: pd.DataFrame, root: Path, waves: list[np.ndarray], spec: AudioSpec) -> np.ndarray:
    """A group number per row: rows linked by the same clip bytes, a re-encoded clip (fingerprints
    within the audio modality's near-duplicate distance, as the pipeline's split groups them) or
    the same caption share one."""
    parent = list(range(len(frame)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for key in (frame["audio"].map(lambda a: hashlib.sha256((root / a).read_bytes()).hexdigest()),
                frame["text"].str.lower()):
        first: dict[str, int] = {}
        for i, value in enumerate(key):
            parent[find(i)] = find(first.setdefault(value, i))
    prints = [fingerprint(w, spec) for w in waves]
    for i, j in near_duplicate_links(prints, AudioOptions().near_duplicate_distance):
        parent[find(j)] = find(i)
    return np.array([find(i) for i in range(len(frame))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="datasets/tuxpaint")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = Path(args.data)
    frame = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    frame = frame[frame["audio"] != ""].reset_index(drop=True)
    spec = AudioSpec()
    start = time.perf_counter()
    waves = [read_clip(root / a, spec) for a in frame["audio"]]
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    x = np.stack([mfcc_statistics(w, spec).numpy() for w in waves])
    feature_s = time.perf_counter() - start
    y, groups = frame["label"].to_numpy(), groups_of(frame, root, waves, spec)
    seconds = np.array([len(w) / spec.sample_rate for w in waves])
    print(f"{len(frame)} clips in {len(set(y))} categories, {len(set(groups))} groups; median "
          f"{np.median(seconds):.2f} s, p95 {np.percentile(seconds, 95):.2f} s; read in {read_s:.1f} s, "
          f"MFCC statistics in {feature_s:.1f} s")
    folds = StratifiedGroupKFold(n_splits=args.folds, shuffle=True, random_state=args.seed)
    rows = []
    for k, (train, test) in enumerate(folds.split(x, y, groups)):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        predicted = model.fit(x[train], y[train]).predict(x[test])
        majority = pd.Series(y[train]).mode()[0]
        rows.append({"fold": k, "test clips": len(test), "accuracy": accuracy_score(y[test], predicted),
                     "macro-F1": f1_score(y[test], predicted, average="macro"),
                     "majority class": float(np.mean(y[test] == majority))})
    table = pd.DataFrame(rows)
    print("\n| fold | test clips | accuracy | macro-F1 | majority class |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['fold']} | {row['test clips']} | {row['accuracy']:.3f} | {row['macro-F1']:.3f} | "
              f"{row['majority class']:.3f} |")
    mean, sd = table.mean(numeric_only=True), table.std(numeric_only=True)
    print(f"| mean ± sd | | {mean['accuracy']:.3f} ± {sd['accuracy']:.3f} | {mean['macro-F1']:.3f} ± "
          f"{sd['macro-F1']:.3f} | {mean['majority class']:.3f} |")


if __name__ == "__main__":
    main()
