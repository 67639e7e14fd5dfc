"""Training a fusion model on cached features: plain functions in the style of torchvision's
references (`train_one_epoch`, `fit`; `predict` and the checkpoint are the models'). Nothing here knows which fusion method or
which modalities it trains: it speaks only the `FusionModel` interface."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from tqdm import tqdm

from mmops.config import TrainParams
from mmops.models.fusion import FUSED, Features, FusionModel, Mask, all_present, build_fusion, fusion_options
from mmops.models.predict import predict
from mmops.progress import progress
from mmops.training import resume as checkpoints
from mmops.training.distributed import Dist, Step, training_step

log = logging.getLogger(__name__)
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


@dataclass
class FitResult:
    model: FusionModel
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch globally and return a generator for data order."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _loader(modalities: tuple[str, ...], features: Features, present: Mask, target: torch.Tensor, *,
            batch_size: int, generator: torch.Generator, device: torch.device, job: Dist, seed: int) -> DataLoader:
    # in the model's order: train_one_epoch unpacks them by model.modalities
    dataset = TensorDataset(*[features[m] for m in modalities], *[present[m] for m in modalities], target)
    if job.enabled:  # each process its share of every epoch's shuffled order (set_epoch reshuffles)
        sampler = DistributedSampler(dataset, num_replicas=job.world_size, rank=job.rank, shuffle=True, seed=seed)
        return DataLoader(dataset, batch_size=job.batch_size(batch_size), sampler=sampler,
                          pin_memory=device.type == "cuda")
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator,
                      pin_memory=device.type == "cuda")


def drop_modalities(present: Mask, rate: float, generator: torch.Generator) -> Mask:
    """Modality dropout: each present modality of each sample hidden with probability `rate`,
    except that a sample always keeps one (one of its own, drawn at random, if all were hit).
    Drawn on the CPU from `generator`, so a seed gives the same masks on any device."""
    if rate <= 0:
        return present
    names = list(present)
    mask = torch.stack([present[m].cpu() for m in names], dim=1)  # (N, M)
    kept = mask & (torch.rand(mask.shape, generator=generator) >= rate)
    lost = ~kept.any(dim=1)
    if bool(lost.any()):
        pick = (torch.rand(mask.shape, generator=generator) * mask).argmax(dim=1)  # one it has
        kept[lost, pick[lost]] = True
    return {m: kept[:, i].to(present[m].device) for i, m in enumerate(names)}


def train_one_epoch(model: FusionModel, optimizer: torch.optim.Optimizer, loader: DataLoader,
                    device: torch.device, params: TrainParams, generator: torch.Generator,
                    forward: torch.nn.Module | None = None) -> dict[str, float]:
    """One pass over `loader`: the model's label loss (with `params.label_smoothing`, on masks
    hit by modality dropout drawn from `generator`), plus `params.contrastive_weight` times the
    alignment loss (on the modalities each sample really has). Mean losses per sample.
    `forward` is what runs the batch: `training_step(model, ...)`."""
    model.train()
    forward = forward or Step(model)
    align = model.alignment is not None and params.contrastive_weight > 0
    m = len(model.modalities)
    totals, count = {"train_loss": 0.0, "train_align_loss": 0.0}, 0
    for *tensors, target in loader:
        tensors = [t.to(device, non_blocking=True) for t in tensors]
        batch = dict(zip(model.modalities, tensors[:m]))
        has = dict(zip(model.modalities, tensors[m:]))
        present = drop_modalities(has, params.modality_dropout, generator)
        target = target.to(device, non_blocking=True)
        out, align_loss = forward(batch, present, has=has, align=align)
        loss = model.loss(out.log_probs, target, present, params.label_smoothing)
        totals["train_loss"] += loss.item() * len(target)
        if align_loss is not None:
            loss = loss + params.contrastive_weight * align_loss
            totals["train_align_loss"] += align_loss.item() * len(target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        count += len(target)
    return {k: v / max(count, 1) for k, v in totals.items()}


def fit(
    train: Features, y_train: torch.Tensor, val: Features, y_val: torch.Tensor,
    num_classes: int, params: TrainParams, device: torch.device,
    present_train: Mask | None = None, present_val: Mask | None = None,
    checkpoint: Path | None = None, resume: bool = False, job: Dist = Dist(), calibrate: bool = True,
) -> FitResult:
    """Train the fusion model named by `params.fusion`. After each epoch the model is completed
    as it would be served (its validation step fitted on a copy), and the epoch whose served
    (`fused`) prediction has the lowest validation loss is kept; with `calibrate`, its
    temperatures are then fitted on validation (`FusionModel.calibrate`). Test data never enters here.

    With `checkpoint`, the whole training state is written there after every epoch; with
    `resume` too, a run killed mid-way continues from its last epoch and ends exactly as the
    uninterrupted run would have (`mmops.training.resume`).

    Under torchrun (`job`), each process trains on its share of every batch with the gradients
    averaged (DistributedDataParallel), every process scores the whole validation split (so all
    keep the same epoch), and only rank 0 logs and checkpoints.
    """
    if job.enabled and resume:
        raise ValueError("--resume with several processes is not supported: resume in one process, or start afresh")
    present_train = all_present(train) if present_train is None else present_train
    present_val = all_present(val) if present_val is None else present_val
    absent = [m for m, p in present_train.items() if not bool(p.any())]
    if absent:
        raise ValueError(f"no training sample has modality {', '.join(absent)}: nothing to learn it from")
    generator = seed_everything(params.seed)
    # its own stream (data order stays as it was), and each process its own draws
    dropping = torch.Generator().manual_seed(params.seed + 1 + 7919 * job.rank)
    dims = {m: int(t.shape[1]) for m, t in train.items()}
    options = fusion_options(params.fusion, params.fusions.get(params.fusion))
    model = build_fusion(params.fusion, dims, num_classes, **options)
    if params.contrastive_weight > 0:
        model.align(params.contrastive_dim, seed=params.seed + 2)
    model.prepare(train, present_train)
    model.to(device)
    loader = _loader(model.modalities, train, present_train, y_train, batch_size=params.batch_size,
                     generator=generator, device=device, job=job, seed=params.seed)
    forward = training_step(model, job, device)
    optimizer = OPTIMIZERS[params.optimizer](model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(params.epochs, 1))
    history: list[dict[str, float]] = []
    best_state, best_epoch, best_loss = None, 0, float("inf")
    streams = {"data": generator, "dropping": dropping}
    # the process count too: a multi-process run's checkpoint is not this one's to continue
    run = checkpoints.fingerprint(params, [*train.values(), *present_train.values(), y_train, *val.values(),
                                           *present_val.values(), y_val], extra={"processes": job.world_size}) \
        if checkpoint and job.main else ""
    checkpoint = checkpoint if job.main else None
    state = checkpoints.load(checkpoint, run) if checkpoint and resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        checkpoints.set_rng_state(streams, state["rng"])
        history, best_state, best_epoch, best_loss = state["history"], state["best_state"], state["best_epoch"], \
            state["best_loss"]
    first = len(history) + 1
    bar = progress(params.epochs, f"train {params.fusion}", "epoch") if job.main else tqdm(disable=True)
    start = time.perf_counter()
    bar.update(first - 1)
    for epoch in range(first, params.epochs + 1):
        if job.enabled:
            loader.sampler.set_epoch(epoch)
        losses = train_one_epoch(model, optimizer, loader, device, params, dropping, forward)
        if job.enabled:  # every process's mean, weighted by its samples: the epoch's mean
            n = len(loader.sampler)
            summed = job.sum({**{k: v * n for k, v in losses.items()}, "samples": n})
            losses = {k: summed[k] / summed["samples"] for k in losses}
        scheduler.step()
        served = copy.deepcopy(model)
        served.fit_on_validation(predict(served, val, device, present_val).log_probs, y_val, present_val)
        val_lp = predict(served, val, device, present_val).log_probs
        row: dict[str, float] = {"epoch": epoch, **losses}
        for name in (FUSED, *model.modalities):
            suffix = "" if name == FUSED else f"_{name}"
            rows = torch.ones_like(y_val, dtype=torch.bool) if name == FUSED else present_val[name].cpu()
            row[f"val_loss{suffix}"] = float(F.nll_loss(val_lp[name][rows], y_val[rows]))
            row[f"val_acc{suffix}"] = float((val_lp[name][rows].argmax(1) == y_val[rows]).float().mean())
        history.append(row)
        log.debug("epoch %d/%d: train loss %.4f, val loss %.4f, val accuracy %.3f",
                  epoch, params.epochs, losses["train_loss"], row["val_loss"], row["val_acc"])
        if row["val_loss"] < best_loss:
            best_state, best_epoch, best_loss = copy.deepcopy(served.state_dict()), epoch, row["val_loss"]
        if checkpoint:
            checkpoints.save(checkpoint, {
                "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": checkpoints.rng_state(streams), "history": history,
                "best_state": best_state, "best_epoch": best_epoch, "best_loss": best_loss}, run)
        ran = epoch - first + 1
        bar.set_postfix(loss=f"{losses['train_loss']:.3f}", val_loss=f"{row['val_loss']:.3f}",
                        samples_s=f"{ran * len(y_train) / (time.perf_counter() - start):.0f}", refresh=False)
        bar.update(1)
    bar.close()
    job.check_in_sync(model)
    seconds, ran = time.perf_counter() - start, params.epochs - first + 1
    if job.main:
        log.info("train %s: %d epochs in %.1f s (%.0f samples/s)%s%s; kept epoch %d (val loss %.4f, val accuracy %.3f)",
                 params.fusion, ran, seconds, ran * len(y_train) / max(seconds, 1e-9),
                 f", resumed after epoch {first - 1}" if first > 1 else "",
                 f", {job.world_size} processes" if job.enabled else "", best_epoch,
                 best_loss, history[best_epoch - 1]["val_acc"] if best_epoch else float("nan"))
    if best_state is None:
        raise ValueError(f"training diverged: the validation loss was never finite (last: {history[-1]})")
    model.load_state_dict(best_state)
    if calibrate:
        model.calibrate(predict(model, val, device, present_val).log_probs, y_val, present_val)
    return FitResult(model=model.cpu().eval(), best_epoch=best_epoch, history=history)
