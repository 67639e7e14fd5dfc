"""The audio encoders on the three-modality sample, side by side in one run, scored by grouped,
stratified 5-fold cross-validation on the French spoken descriptions:

- (a) the seeds' way: a small CNN over log-mel frames, trained here on each training fold
  (SpecAugment masks, statistics pooling over the clip's own frames);
- (b) the frozen baseline `mfcc-stats`: each clip's 20 MFCCs' mean and standard deviation, then
  a logistic regression;
- (c) `whisper-base`: Whisper base's encoder (the whisper extra), the mean and standard
  deviation of its last layer over the clip's frames, then the same logistic regression.

Groups join the stamps that share a clip (byte-identical or re-encoded) or the same English
caption (`frog` / `frog-1`), so no clip is scored on a fold that trained on its twin. Prints each
fold, then accuracy and macro-F1 (mean ± sd over folds) per encoder beside the majority class,
and what featurising cost per clip.

    .venv/bin/mmops sample --dataset tuxpaint     # once: builds datasets/tuxpaint
    .venv/bin/python bench/audio.py               # about 13 minutes on 2 CPU cores (the CNN)
    .venv/bin/python bench/audio.py --no-cnn      # (b) and (c) only: about 2 minutes
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.nn import functional as F

from mmops.config import ModalityParams
from mmops.data.split import group_keys, near_duplicate_links
from mmops.modalities.audio import AudioModality, AudioOptions
from mmops.modalities.audio_features import AudioSpec, fingerprint, log_mel, mfcc_statistics, read_clip


def groups_of(frame: pd.DataFrame, root: Path, waves: list[np.ndarray], spec: AudioSpec) -> np.ndarray:
    """A group per row, joined by the split's own union-find (`group_keys`) from what ties clips
    together: the same clip bytes, a re-encoded clip (fingerprints within the audio modality's
    near-duplicate distance) or the same caption (the pipeline's split also links pictures and
    families; this bench is about the clips). An empty caption links nothing."""
    keys = pd.DataFrame({
        "sample_id": frame["sample_id"],
        "clip": [f"clip:{hashlib.sha256((root / a).read_bytes()).hexdigest()}" for a in frame["audio"]],
        "caption": [f"caption:{t.lower()}" if t else "" for t in frame["text"]],
    })
    links = near_duplicate_links([fingerprint(w, spec) for w in waves], AudioOptions().near_duplicate_distance)
    return np.array(group_keys(keys, ["clip", "caption"], "sample_id", links))


class LogMelCNN(nn.Module):
    """Four 3x3 convolution blocks (batch norm, ReLU, 2x2 max-pool) over a (1, mels, frames)
    log-mel image; the mean over what is left of frequency; each channel's mean and standard
    deviation over the clip's own frames (the padding after it left out: statistics pooling, the
    MFCC baseline's summary learned); dropout and a linear layer."""

    def __init__(self, classes: int, width: int = 16, dropout: float = 0.3) -> None:
        super().__init__()
        chans, layers = [1, width, 2 * width, 4 * width, 4 * width], []
        for i in range(4):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False), nn.BatchNorm2d(chans[i + 1]),
                       nn.ReLU(), nn.MaxPool2d(2) if i < 3 else nn.Identity()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * chans[-1], classes))

    def forward(self, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        maps = self.body(x.unsqueeze(1)).mean(dim=2)  # (N, C, T / 8)
        kept = (torch.arange(maps.shape[2])[None, :] < (frames[:, None] + 7) // 8).to(maps.dtype)  # (N, T / 8)
        count = kept.sum(1, keepdim=True).clamp_min(1)
        mean = (maps * kept[:, None]).sum(2) / count
        std = (((maps - mean[..., None]) ** 2 * kept[:, None]).sum(2) / count).clamp_min(1e-6).sqrt()
        return self.head(torch.cat([mean, std], dim=1))


def frames_of(waves: list[np.ndarray], spec: AudioSpec, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, mels, length): each clip's log-mel, cut or padded (with the log floor) to `length`
    frames; and (N,) how many of them are the clip's."""
    out = torch.full((len(waves), spec.n_mels, length), float(np.log(1e-10)))
    frames = torch.zeros(len(waves), dtype=torch.long)
    for i, w in enumerate(waves):
        m = log_mel(w, spec)[:, :length]
        out[i, :, : m.shape[1]] = m
        frames[i] = m.shape[1]
    return out, frames


def spec_augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One frequency mask (up to 8 bands) and one time mask (up to 30 frames) per clip:
    SpecAugment's masks, filled with the batch mean."""
    x = x.clone()
    n, mels, frames = x.shape
    fill = x.mean()
    for i in range(n):
        f0, fw = int(torch.randint(0, mels, (1,), generator=generator)), int(torch.randint(0, 9, (1,), generator=generator))
        t0, tw = int(torch.randint(0, frames, (1,), generator=generator)), int(torch.randint(0, 31, (1,), generator=generator))
        x[i, f0:f0 + fw] = fill
        x[i, :, t0:t0 + tw] = fill
    return x


def train_cnn(x: torch.Tensor, frames: torch.Tensor, y: torch.Tensor, classes: int, *, epochs: int,
              seed: int) -> LogMelCNN:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = LogMelCNN(classes)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-3)
    steps = epochs * ((len(x) + 31) // 32)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 32):
            idx = order[start:start + 32]
            loss = F.cross_entropy(model(spec_augment(x[idx], generator), frames[idx]), y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    return model.eval()


def logistic(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
    return model.fit(x[train], y[train]).predict(x[test])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="datasets/tuxpaint")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30, help="the CNN's, per fold")
    parser.add_argument("--frames", type=int, default=300, help="the CNN's input: 3 s at a 10 ms hop (p95 of the clips)")
    parser.add_argument("--no-cnn", action="store_true", help="leave out (a), the slow one")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = Path(args.data)
    frame = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    frame = frame[frame["audio"] != ""].reset_index(drop=True)
    spec = AudioSpec()
    waves = [read_clip(root / a, spec) for a in frame["audio"]]
    seconds = np.array([len(w) / spec.sample_rate for w in waves])
    features, per_clip = {}, {}
    start = time.perf_counter()
    features["mfcc"] = np.stack([mfcc_statistics(w, spec).numpy() for w in waves])
    per_clip["mfcc"] = (time.perf_counter() - start) / len(waves)
    start = time.perf_counter()
    whisper = AudioModality(ModalityParams(name="audio", column="audio", encoder="whisper-base"))
    features["whisper"] = whisper.encoder(torch.device("cpu"), torch.float32)(waves, batch_size=16).numpy()
    per_clip["whisper"] = (time.perf_counter() - start) / len(waves)
    mels, lengths = frames_of(waves, spec, args.frames)
    labels, y = np.unique(frame["label"].to_numpy(), return_inverse=True)
    groups = groups_of(frame, root, waves, spec)
    print(f"{len(frame)} clips in {len(labels)} categories, {len(set(groups))} groups; median "
          f"{np.median(seconds):.2f} s, p95 {np.percentile(seconds, 95):.2f} s; per clip: MFCC statistics "
          f"{1000 * per_clip['mfcc']:.1f} ms, Whisper base {1000 * per_clip['whisper']:.1f} ms (model load included)")
    folds = StratifiedGroupKFold(n_splits=args.folds, shuffle=True, random_state=args.seed)
    rows = []
    for k, (train, test) in enumerate(folds.split(features["mfcc"], y, groups)):
        predicted = {name: logistic(x, y, train, test) for name, x in features.items()}
        if not args.no_cnn:
            mean, std = mels[train].mean(), mels[train].std()  # one scale for every band: the train fold's
            cnn = train_cnn((mels[train] - mean) / std, lengths[train], torch.from_numpy(y[train]).long(), len(labels),
                            epochs=args.epochs, seed=args.seed + k)
            with torch.no_grad():
                predicted["cnn"] = cnn((mels[test] - mean) / std, lengths[test]).argmax(1).numpy()
        row = {"fold": k, "clips": len(test), "majority": float(np.mean(y[test] == np.bincount(y[train]).argmax()))}
        for name, p in predicted.items():
            row |= {f"{name} acc": accuracy_score(y[test], p), f"{name} F1": f1_score(y[test], p, average="macro")}
        rows.append(row)
        print(" | ".join(f"{n}: {v:.3f}" if isinstance(v, float) else f"{n}: {v}" for n, v in row.items()), flush=True)
    table = pd.DataFrame(rows)
    print("\n| encoder | accuracy | macro-F1 |\n|---|---|---|")
    for name, key in (("(a) log-mel CNN, trained here", "cnn"), ("(b) mfcc-stats + logistic regression", "mfcc"),
                      ("(c) whisper-base + logistic regression", "whisper")):
        if f"{key} acc" in table:
            print(f"| {name} | {table[key + ' acc'].mean():.3f} ± {table[key + ' acc'].std():.3f} | "
                  f"{table[key + ' F1'].mean():.3f} ± {table[key + ' F1'].std():.3f} |")
    print(f"| majority class | {table['majority'].mean():.3f} | |")


if __name__ == "__main__":
    main()
