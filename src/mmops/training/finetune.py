"""Fine-tuning (`train.mode: finetune`): each modality whose encoder can be trained (the image's)
learns end to end with the fusion head, from its pretrained weights, on inputs augmented on the
fly (`augment.strength`, a new view every epoch); the other modalities keep their cached
features. It starts from the frozen mode's head, trained first on the cached features (linear
probing, then fine-tuning: Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features"):
a random head would send large, random gradients into the pretrained encoder at the start.
The encoder computes as in inference (BatchNorm keeps its pretrained statistics: batches of
emoji are no ImageNet; no stochastic depth), only its weights learn; the encoder
learns at `train.encoder_lr` and the already trained head at a tenth of `train.lr`, so the
encoder adapts without forgetting. Model selection is the frozen path's: after each epoch the validation split is
encoded by the current encoder, the head completed as served, and the epoch with the lowest
fused validation loss kept, its encoder weights with it. `train.select_on` adds other
renderings of the val ids (say Twitter's drawings) to that choice, each set weighing as much as
the val split: the epoch kept is then the one that reads both styles best.

On CUDA: bf16 autocast, pinned memory, `train.workers` loader processes, cuDNN autotuning (the
inputs have one size); on the CPU, float32.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from mmops.config import AugmentParams, Params, TrainParams
from mmops.data.augment import DRAWING, view_seed
from mmops.data.clean import read_rows
from mmops.data.manifest import ID, LABEL
from mmops.features.shards import encode_manifest
from mmops.modalities.base import Modality, Weights, present
from mmops.models.fusion import FUSED, Features, FusionModel, Mask
from mmops.models.predict import predict
from mmops.progress import progress
from mmops.training import resume as checkpoints
from mmops.training.distributed import Dist, training_step
from mmops.training.train import OPTIMIZERS, drop_modalities, fit, seed_everything

log = logging.getLogger(__name__)
HEAD_LR_SCALE = 0.1  # the head is trained already: at the full rate it would undo that while the encoder moves


@dataclass
class Split:
    """One split for fine-tuning: its rows' ids and raw values of each tuned modality ("" where
    absent), and the cached features, presence masks and labels of every modality."""

    ids: list[str]
    values: dict[str, list[str]]
    features: Features
    present: Mask
    target: torch.Tensor
    roots: list[Path] = field(default_factory=list)  # each row's media folder; none: fit_finetune's `root`


@dataclass
class FineTuned:
    model: FusionModel
    encoders: dict[str, Weights]  # the kept epoch's weights of each tuned encoder
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    # what chose the epoch: [the probed head's, epoch 1's, ...]; the lowest is kept
    selection_losses: list[float] = field(default_factory=list)


def finetune_splits(frame: pd.DataFrame, views: pd.DataFrame, data: dict[str, dict[str, Any]],
                    tuned: list[Modality], root: Path, views_root: Path) -> dict[str, Split]:
    """The train and val splits to fine-tune on: each split's rows of `frame` (the split
    manifest; media under `root`), and for train, after them, the drawing sets' views of its
    samples among the augment stage's `views` (media under `views_root`); the other views are
    for the frozen mode, as fine-tuning augments on the fly. `data` holds each split's cached
    features, presence masks and labels, aligned with `frame`'s rows and then (train) `views`."""
    drawn = views[views[DRAWING] != ""] if DRAWING in views else views.iloc[:0]
    splits = {}
    for name in ("train", "val"):
        rows = frame[frame["split"] == name]
        d = data[name]
        keep = list(range(len(rows)))  # the split's own rows come first; the views after them
        roots = [root] * len(rows)
        if name == "train" and len(drawn):
            keep += list(len(rows) + views.index.get_indexer(drawn.index))  # views' positions after the rows
            roots += [views_root] * len(drawn)
            rows = pd.concat([rows, drawn], ignore_index=True)
        pick = torch.tensor(keep, dtype=torch.long)
        splits[name] = Split(ids=list(rows[ID]), values={m.name: list(rows[m.name]) for m in tuned},
                             features={m: t[pick] for m, t in d["features"].items()},
                             present={m: p[pick] for m, p in d["present"].items()}, target=d["target"][pick],
                             roots=roots)
    return splits


def selection_split(params: Params, manifest: Path, val_ids: set[str], tuned: list[Modality],
                    device: torch.device) -> Split:
    """The rows of a labelled set (`train.select_on`, a manifest of `shift.sets`) whose ids are
    in the val split, by cleaning's rules, with the features of every modality not tuned from
    featurize's code (a tuned modality's are made each epoch by the encoder being tuned)."""
    rows, _ = read_rows(params, manifest, labels=params.data.labels)
    rows = rows[rows[ID].isin(val_ids)].reset_index(drop=True)
    if rows.empty:
        raise ValueError(f"train.select_on: {manifest} has no usable row with an id of the val split")
    # the tuned modalities' features come from the encoder being tuned, epoch by epoch (`_encode`)
    cache = encode_manifest(params, rows, manifest.parent, str(device), skip={m.name for m in tuned})
    features, present = cache.align(list(rows[ID]), str(manifest))
    classes = list(params.data.labels)
    return Split(ids=list(rows[ID]), values={m.name: list(rows[m.name]) for m in tuned}, features=features,
                 present=present, target=torch.tensor([classes.index(label) for label in rows[LABEL]]),
                 roots=[manifest.parent] * len(rows))


class _Inputs(Dataset):
    """Row i: each tuned modality's input tensor (zeros where absent), augmented when
    `augment` is given (a new view each `epoch`, seeded by sample, epoch and modality)."""

    def __init__(self, split: Split, tuned: dict[str, tuple[Modality, Any]], root: Path,
                 augment: AugmentParams | None, blank: dict[str, torch.Tensor] | None = None) -> None:
        self.split, self.tuned, self.root, self.augment, self.epoch = split, tuned, root, augment, 0
        # what an absent value becomes (masked out later): zeros shaped like a present one's input
        self.blank = blank or {name: torch.zeros_like(transform(m.load(*next(
            (v, self.root_of(i)) for i, v in enumerate(split.values[name]) if present(v)))))
            for name, (m, transform) in tuned.items()}

    def root_of(self, i: int) -> Path:
        return self.split.roots[i] if self.split.roots else self.root

    def __len__(self) -> int:
        return len(self.split.ids)

    def __getitem__(self, i: int) -> tuple[list[torch.Tensor], int]:
        out = []
        for name, (m, transform) in self.tuned.items():
            value = self.split.values[name][i]
            if not present(value):
                out.append(self.blank[name])
                continue
            loaded = m.load(value, self.root_of(i))
            strength = self.augment.strength.get(name, 0.0) if self.augment else 0.0
            if strength:
                loaded = m.augment(loaded, strength, view_seed(self.augment.seed, self.split.ids[i], self.epoch, name))
            out.append(transform(loaded))
        return out, i


class Tuned(nn.Module):
    """The fusion head over trainable encoders (for the tuned modalities) and cached features
    (for the rest)."""

    def __init__(self, head: FusionModel, encoders: dict[str, nn.Module]) -> None:
        super().__init__()
        self.head, self.encoders = head, nn.ModuleDict(encoders)

    def features(self, inputs: dict[str, torch.Tensor], cached: Features) -> Features:
        return {m: self.encoders[m](inputs[m]).float() if m in self.encoders else cached[m]
                for m in self.head.modalities}

    def forward(self, inputs: dict[str, torch.Tensor], cached: Features, present_: Mask) -> Any:
        return self.head(self.features(inputs, cached), present_)

    @property
    def alignment(self) -> nn.Module | None:
        return self.head.alignment

    def train(self, mode: bool = True) -> Tuned:
        # The encoders compute as in inference, only their weights learn: BatchNorm keeps its
        # pretrained statistics, and EfficientNet's stochastic depth stays off (the probed head
        # was trained on features made without it; with it, the first epochs undo the probe).
        super().train(mode)
        self.encoders.eval()
        return self


def _encode(model: Tuned, loader: DataLoader, split: Split, device: torch.device) -> Features:
    """Every modality's features of `split`: the tuned ones from the current encoders."""
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {m: [] for m in model.encoders}
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for inputs, _ in loader:
            for name, tensor in zip(model.encoders, inputs):
                parts[name].append(model.encoders[name](tensor.to(device, non_blocking=True)).float().cpu())
    return {m: torch.cat(parts[m]) if m in parts else split.features[m] for m in model.head.modalities}


def _weights(model: Tuned) -> dict[str, Weights]:
    return {n: {k: v.detach().cpu().clone() for k, v in e.state_dict().items()} for n, e in model.encoders.items()}


def _train_epoch(step: nn.Module, model: Tuned, optimizer: torch.optim.Optimizer, loader: DataLoader, train: Split,
                 params: TrainParams, dropping: torch.Generator, device: torch.device) -> dict[str, float]:
    """One pass over `loader` through `step` (`training_step(model, ...)`): the label loss on
    masks hit by modality dropout, plus `params.contrastive_weight` times the alignment loss.
    Loss sums and the sample count (a process's share, under torchrun)."""
    head, cuda = model.head, device.type == "cuda"
    align = head.alignment is not None and params.contrastive_weight > 0
    model.train()
    totals = {"train_loss": 0.0, "train_align_loss": 0.0, "samples": 0.0}
    for inputs, index in loader:
        batch = dict(zip(model.encoders, (t.to(device, non_blocking=True) for t in inputs)))
        cached = {m: train.features[m][index].to(device) for m in head.modalities}
        has = {m: train.present[m][index].to(device) for m in head.modalities}
        present_ = drop_modalities(has, params.modality_dropout, dropping)
        target = train.target[index].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            out, align_loss = step(batch, cached, present_, has=has, align=align)
            loss = head.loss(out.log_probs, target, present_, params.label_smoothing)
        totals["train_loss"] += loss.item() * len(target)
        if align_loss is not None:
            totals["train_align_loss"] += align_loss.item() * len(target)
            loss = loss + params.contrastive_weight * align_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        totals["samples"] += len(target)
    return totals


def _scores(log_probs: dict[str, torch.Tensor], split: Split, prefix: str) -> dict[str, float]:
    """`<prefix>_loss` and `<prefix>_acc` of the fused output on every row of `split`, and of each
    modality alone (`<prefix>_loss_<modality>`, ...) on the rows that have it."""
    row: dict[str, float] = {}
    for name in (FUSED, *(m for m in split.present if m in log_probs)):
        suffix = "" if name == FUSED else f"_{name}"
        rows = torch.ones_like(split.target, dtype=torch.bool) if name == FUSED else split.present[name].cpu()
        row[f"{prefix}_loss{suffix}"] = float(F.nll_loss(log_probs[name][rows], split.target[rows]))
        row[f"{prefix}_acc{suffix}"] = float((log_probs[name][rows].argmax(1) == split.target[rows]).float().mean())
    return row


def _validate(model: Tuned, loader: DataLoader, val: Split, device: torch.device) -> tuple[FusionModel, Features,
                                                                                          dict[str, float]]:
    """The head completed as served (a copy, its validation step fitted) on the validation
    split encoded by the current encoders; its features; each output's validation loss and accuracy."""
    head = model.head
    features = _encode(model, loader, val, device)
    served = copy.deepcopy(head)
    served.fit_on_validation(predict(served, features, device, val.present).log_probs, val.target, val.present)
    return served, features, _scores(predict(served, features, device, val.present).log_probs, val, "val")


def _select(model: Tuned, served: FusionModel, loaders: dict[str, DataLoader], sets: dict[str, Split],
            device: torch.device) -> dict[str, float]:
    """The `served` head's scores on each selection set, encoded by the current encoders."""
    row: dict[str, float] = {}
    for name, split in sets.items():
        features = _encode(model, loaders[name], split, device)
        row.update(_scores(predict(served, features, device, split.present).log_probs, split, f"select_{name}"))
    return row


def _selection_loss(row: dict[str, float], sets: dict[str, Split]) -> float:
    """What chooses the epoch: the fused validation loss, averaged with each selection set's."""
    return sum([row["val_loss"], *(row[f"select_{name}_loss"] for name in sets)]) / (1 + len(sets))


def fit_finetune(train: Split, val: Split, tuned: list[Modality], num_classes: int, params: TrainParams,
                 augment: AugmentParams | None, root: Path, device: torch.device,
                 checkpoint: Path | None = None, resume: bool = False, job: Dist = Dist(),
                 select: dict[str, Split] | None = None) -> FineTuned:
    """The head named by `params.fusion` trained on the cached features (the frozen mode), then
    the `tuned` modalities' encoders fine-tuned with it for `params.finetune_epochs`; the epoch
    whose served, fused prediction has the lowest validation loss is kept (head and encoders;
    the probed head alone, as epoch 0, if no epoch beats it). With `select` (`train.select_on`:
    other renderings of val ids), that loss is averaged with each selection set's. Test data
    never enters here.

    With `checkpoint`, every fine-tuned epoch's whole state (head, encoders, optimiser,
    scheduler, random streams, the best epoch so far with its encoders) is written there; with
    `resume` too, a killed run continues after its last epoch (the probe, seconds, is trained
    again: the same seed gives the same head) and ends as the uninterrupted run would have (bit
    for bit on the CPU; on CUDA, bf16 and cuDNN autotuning are not bit-stable).

    Under torchrun (`job`), the probe and every epoch are data-parallel (each process its share
    of every batch, DistributedDataParallel averaging the gradients); each process encodes the
    whole validation split, and rank 0 alone logs and checkpoints."""
    if job.enabled and resume:
        raise ValueError("--resume with several processes is not supported: resume in one process, or start afresh")
    probed = fit(train.features, train.target, val.features, val.target, num_classes, params, device,
                 train.present, val.present, job=job, calibrate=False)
    head = probed.model.to(device)  # standardised with the pretrained features' statistics, as it stays
    generator = seed_everything(params.seed)
    dropping = torch.Generator().manual_seed(params.seed + 1 + 7919 * job.rank)
    streams = {"data": generator, "dropping": dropping}
    parts = {m.name: (m, *m.trainable()) for m in tuned}
    model = Tuned(head, {name: encoder.requires_grad_(True) for name, (_, encoder, _) in parts.items()}).to(device)
    transforms = {name: (m, transform) for name, (m, _, transform) in parts.items()}
    encoder_params = [p for e in model.encoders.values() for p in e.parameters()]
    optimizer = OPTIMIZERS[params.optimizer]([{"params": head.parameters(), "lr": params.lr * HEAD_LR_SCALE},
                                              {"params": encoder_params, "lr": params.encoder_lr}],
                                             weight_decay=params.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=params.finetune_epochs)
    cuda = device.type == "cuda"
    loading = {"num_workers": params.workers, "pin_memory": cuda}
    train_inputs = _Inputs(train, transforms, root, augment)
    if job.enabled:  # each process its share of every epoch's shuffled order (set_epoch reshuffles)
        sampler = DistributedSampler(train_inputs, num_replicas=job.world_size, rank=job.rank, shuffle=True,
                                     seed=params.seed)
        loader = DataLoader(train_inputs, sampler=sampler, batch_size=job.batch_size(params.batch_size), **loading)
    else:
        loader = DataLoader(train_inputs, shuffle=True, generator=generator, batch_size=params.batch_size, **loading)
    val_loader = DataLoader(_Inputs(val, transforms, root, None, train_inputs.blank), shuffle=False,
                            batch_size=params.batch_size, **loading)
    select = select or {}
    # their own generator: a loader draws a seed from torch's global stream each pass, and choosing
    # must not change what is trained (with and without selection sets, the same epochs)
    select_loaders = {name: DataLoader(_Inputs(split, transforms, root, None, train_inputs.blank), shuffle=False,
                                       batch_size=params.batch_size, generator=torch.Generator(), **loading)
                      for name, split in select.items()}
    # the probed head's own validation loss, and (pretrained encoders) its scores on the selection sets
    probe = {"val_loss": probed.history[probed.best_epoch - 1]["val_loss"],
             **_select(model, head, select_loaders, select, device)}
    step = training_step(model, job, device)
    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"head": copy.deepcopy(head.state_dict()), "encoders": _weights(model),
                            "val_features": val.features, "epoch": 0, "loss": _selection_loss(probe, select)}
    run = checkpoints.fingerprint(params, [*train.features.values(), *train.present.values(), train.target,
                                           *val.features.values(), *val.present.values(), val.target],
                                  extra=[train.ids, train.values, val.ids, val.values,
                                         dataclasses.asdict(augment) if augment else None,
                                         {"processes": job.world_size},
                                         {name: [split.ids, split.values] for name, split in select.items()}]) \
        if checkpoint and job.main else ""
    checkpoint = checkpoint if job.main else None
    state = checkpoints.load(checkpoint, run) if checkpoint and resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        checkpoints.set_rng_state(streams, state["rng"])
        history, best = state["history"], state["best"]
    first = len(history) + 1
    bar = progress(params.finetune_epochs, f"finetune {params.fusion}", "epoch") if job.main else tqdm(disable=True)
    bar.update(first - 1)
    start = time.perf_counter()
    # fixed-size inputs: let cuDNN pick its fastest kernels (bf16 numbers are not bit-stable anyway)
    with torch.backends.cudnn.flags(enabled=True, benchmark=cuda, deterministic=False, allow_tf32=cuda):
        for epoch in range(first, params.finetune_epochs + 1):
            train_inputs.epoch = epoch
            if job.enabled:
                loader.sampler.set_epoch(epoch)
            totals = job.sum(_train_epoch(step, model, optimizer, loader, train, params, dropping, device))
            scheduler.step()
            served, val_features, scores = _validate(model, val_loader, val, device)
            row = {"epoch": epoch, **{k: totals[k] / max(totals["samples"], 1) for k in ("train_loss", "train_align_loss")},
                   **scores, **_select(model, served, select_loaders, select, device)}
            history.append(row)
            loss = _selection_loss(row, select)
            if loss < best["loss"]:
                best = {"head": copy.deepcopy(served.state_dict()), "encoders": _weights(model),
                        "val_features": val_features, "epoch": epoch, "loss": loss}
            if checkpoint:
                checkpoints.save(checkpoint, {
                    "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": checkpoints.rng_state(streams), "history": history,
                    "best": best}, run)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_loss=f"{row['val_loss']:.3f}", refresh=False)
            bar.update(1)
    bar.close()
    job.check_in_sync(model)
    seconds, ran = time.perf_counter() - start, params.finetune_epochs - first + 1
    if job.main:
        log.info("finetune %s (%s): %d epochs in %.1f s (%.1f samples/s on %s)%s%s; kept epoch %d (%s %.4f; "
                 "the probed head's %.4f)", params.fusion, ", ".join(parts), ran, seconds,
                 ran * len(train.ids) / max(seconds, 1e-9), device,
                 f", resumed after epoch {first - 1}" if first > 1 else "",
                 f", {job.world_size} processes" if job.enabled else "", best["epoch"],
                 f"val loss and {', '.join(select)}'s" if select else "val loss", best["loss"], _selection_loss(probe, select))
    head.load_state_dict(best["head"])
    # calibrated like the frozen mode, on the validation features of the encoders kept
    head.calibrate(predict(head, best["val_features"], device, val.present).log_probs, val.target, val.present)
    return FineTuned(model=head.cpu().eval(), encoders=best["encoders"], best_epoch=best["epoch"], history=history,
                     selection_losses=[_selection_loss(r, select) for r in (probe, *history)])
