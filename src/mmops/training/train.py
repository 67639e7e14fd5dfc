"""Training of the fusion head on cached features: plain functions in the style of
torchvision's references (`train_one_epoch`, `predict`, `fit`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from mmops.config import TrainParams
from mmops.models.fusion import LateFusionClassifier

Features = dict[str, torch.Tensor]


@dataclass
class FitResult:
    model: LateFusionClassifier
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch globally and return a generator for data order."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def train_one_epoch(
    model: LateFusionClassifier, optimizer: torch.optim.Optimizer, loader: DataLoader, device: torch.device
) -> float:
    """One pass over `loader`; each modality's head learns from its own loss. Returns the mean loss."""
    model.train()
    total, count = 0.0, 0
    for *tensors, target in loader:
        batch = {m: t.to(device, non_blocking=True) for m, t in zip(model.modalities, tensors)}
        target = target.to(device, non_blocking=True)
        log_probs = model(batch)
        loss = sum(F.nll_loss(log_probs[m], target) for m in model.modalities)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(target)
        count += len(target)
    return total / max(count, 1)


@torch.inference_mode()
def predict(
    model: LateFusionClassifier, features: Features, device: torch.device,
    present: dict[str, torch.Tensor] | None = None, batch_size: int = 1024,
) -> dict[str, torch.Tensor]:
    """Log-probabilities (CPU) per modality and fused, for every row of `features`."""
    model.eval().to(device)
    n = len(next(iter(features.values())))
    chunks: list[dict[str, torch.Tensor]] = []
    for start in range(0, n, batch_size):
        part = {m: t[start:start + batch_size].to(device) for m, t in features.items()}
        mask = None if present is None else {m: p[start:start + batch_size].to(device) for m, p in present.items()}
        chunks.append({k: v.cpu() for k, v in model(part, mask).items()})
    return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]} if chunks else {}


def choose_fusion_weights(
    model: LateFusionClassifier, log_probs: dict[str, torch.Tensor], target: torch.Tensor, steps: int = 20
) -> torch.Tensor:
    """The mixture weights (a grid over the simplex for two modalities, else uniform) with the
    lowest validation log-loss."""
    m = len(model.modalities)
    if m != 2:
        return torch.full((m,), 1.0 / m)
    best, best_loss = None, float("inf")
    for i in range(steps + 1):
        w = torch.tensor([i / steps, 1 - i / steps])
        loss = float(F.nll_loss(model.fuse(log_probs, weights=w), target))
        if loss < best_loss - 1e-9:
            best, best_loss = w, loss
    return best


def fit(
    train: Features, y_train: torch.Tensor, val: Features, y_val: torch.Tensor,
    num_classes: int, params: TrainParams, device: torch.device,
) -> FitResult:
    """Train the heads, keep the epoch with the lowest validation loss, then fit fusion weights
    on validation. Test data never enters here."""
    generator = seed_everything(params.seed)
    dims = {m: t.shape[1] for m, t in train.items()}
    model = LateFusionClassifier(dims, num_classes, hidden_dim=params.hidden_dim, dropout=params.dropout)
    for m, head in model.heads.items():
        head.set_statistics(train[m])
    model.to(device)
    loader = DataLoader(
        TensorDataset(*train.values(), y_train), batch_size=params.batch_size, shuffle=True,
        generator=generator, pin_memory=device.type == "cuda",
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(params.epochs, 1))
    history: list[dict[str, float]] = []
    best_state, best_epoch, best_loss = None, 0, float("inf")
    for epoch in range(1, params.epochs + 1):
        train_loss = train_one_epoch(model, optimizer, loader, device)
        scheduler.step()
        val_lp = predict(model, val, device)
        row = {"epoch": epoch, "train_loss": train_loss}
        for m in model.modalities:
            row[f"val_loss_{m}"] = float(F.nll_loss(val_lp[m], y_val))
            row[f"val_acc_{m}"] = float((val_lp[m].argmax(1) == y_val).float().mean())
        val_loss = sum(row[f"val_loss_{m}"] for m in model.modalities)
        row["val_loss"] = val_loss
        history.append(row)
        if val_loss < best_loss:
            best_state, best_epoch, best_loss = copy.deepcopy(model.state_dict()), epoch, val_loss
    if best_state is None:
        raise ValueError(f"training diverged: the validation loss was never finite (last: {history[-1]})")
    model.load_state_dict(best_state)
    weights = choose_fusion_weights(model, predict(model, val, device), y_val)
    model.fusion_weights.copy_(weights.to(model.fusion_weights.device))
    return FitResult(model=model.cpu(), best_epoch=best_epoch, history=history)


def checkpoint(
    result: FitResult, classes: list[str], params: TrainParams, image_size: int, max_image_pixels: int
) -> dict:
    """One dict with everything needed to rebuild the model (loadable with weights_only=True)."""
    model = result.model
    return {
        "model": model.state_dict(),
        "classes": list(classes),
        "dims": {m: int(model.heads[m].mean.shape[0]) for m in model.modalities},
        "hidden_dim": params.hidden_dim,
        "dropout": params.dropout,
        "epoch": result.best_epoch,
        # What serving must reproduce: the featurizer's input size and the image-size guard.
        "image_size": image_size,
        "max_image_pixels": max_image_pixels,
    }


def model_from_checkpoint(ckpt: dict) -> LateFusionClassifier:
    """Rebuild the model saved by `checkpoint`."""
    model = LateFusionClassifier(
        ckpt["dims"], len(ckpt["classes"]), hidden_dim=ckpt["hidden_dim"], dropout=ckpt["dropout"]
    )
    model.load_state_dict(ckpt["model"])
    return model.eval()
