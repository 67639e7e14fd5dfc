"""The fusion-model interface every fusion method implements, and its factory.

Training, evaluation, serving and explanations see only this: features per modality and a
per-sample mask of the modalities present go in; log-probabilities per modality and `fused`
come out. Each method brings its own loss, optional preparation on the train split, and an
optional step fitted on validation data once training is done.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from mmops.config import build_section

Features = dict[str, torch.Tensor]  # modality -> (N, dim)
Mask = dict[str, torch.Tensor]  # modality -> (N,) bool: present for that sample
FUSED = "fused"


class FusionModel(nn.Module, ABC):
    """A classifier over several modalities' features."""

    method: ClassVar[str]  # the name `train.fusion` uses
    Options: ClassVar[type]  # its own options (a frozen dataclass): `train.fusions.<method>` in params.yaml

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.modalities = tuple(dims)
        self.dims = dict(dims)
        self.num_classes = num_classes

    @abstractmethod
    def forward(self, features: Features, present: Mask) -> dict[str, torch.Tensor]:
        """Log-probabilities (N, C): one entry per modality, and `fused`, for every sample.
        A modality absent for a sample must not influence that sample's `fused`."""

    @abstractmethod
    def loss(self, outputs: dict[str, torch.Tensor], target: torch.Tensor, present: Mask) -> torch.Tensor:
        """The training loss for a batch of `forward` outputs."""

    def prepare(self, features: Features, present: Mask) -> None:
        """Fit anything taken from the train split before training (e.g. standardisation)."""

    def fit_on_validation(self, outputs: dict[str, torch.Tensor], target: torch.Tensor, present: Mask) -> None:
        """Fit post-training parameters on validation outputs (never on test)."""

    @torch.no_grad()
    def contributions(self, features: Features, present: Mask, outputs: dict[str, torch.Tensor],
                      chosen: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each modality's share (N,) in the fused probability of class `chosen` per sample, NaN
        where that modality is absent. Any fusion: how much that probability drops when the
        modality is left out (to the uniform 1/C when no modality would be left). A method
        whose fused prediction decomposes exactly overrides this."""
        chosen, present = chosen.cpu(), {m: p.cpu() for m, p in present.items()}
        fused = outputs[FUSED].exp().cpu()[torch.arange(len(chosen)), chosen]
        device = next(self.parameters()).device
        shares = {}
        for m in self.modalities:
            without = {k: p if k != m else torch.zeros_like(p) for k, p in present.items()}
            left = torch.stack(list(without.values())).any(0)  # samples with another modality
            kept = torch.full_like(fused, 1.0 / self.num_classes)
            if bool(left.any()):
                part = {k: t.cpu()[left].to(device) for k, t in features.items()}
                log_probs = self(part, {k: p[left].to(device) for k, p in without.items()})[FUSED]
                kept[left] = log_probs.float().exp().cpu()[torch.arange(int(left.sum())), chosen[left]]
            shares[m] = torch.where(present[m], fused - kept, torch.nan)
        return shares

    @abstractmethod
    def arguments(self) -> dict[str, Any]:
        """The keyword arguments (besides dims and classes) that rebuild this architecture."""


FUSIONS: dict[str, type[FusionModel]] = {}


def register_fusion(cls: type[FusionModel]) -> type[FusionModel]:
    """Class decorator: make a fusion method available to `train.fusion`."""
    FUSIONS[cls.method] = cls
    return cls


def fusion_class(method: str) -> type[FusionModel]:
    """The class registered for `method`; a ValueError naming the known ones otherwise."""
    if method not in FUSIONS:
        raise ValueError(f"params.yaml: unknown 'train.fusion' {method!r} (known: {', '.join(sorted(FUSIONS))})")
    return FUSIONS[method]


def fusion_options(method: str, raw: dict[str, Any] | None) -> dict[str, Any]:
    """`method`'s options from params.yaml (`train.fusions.<method>`), checked like every params
    section (unknown keys and wrong types refused) and completed with its defaults."""
    options = build_section(fusion_class(method).Options, raw, f"train.fusions.{method}")
    return dataclasses.asdict(options)


def build_fusion(method: str, dims: dict[str, int], num_classes: int, **arguments: Any) -> FusionModel:
    """A new, untrained model of fusion `method`, with its options as keyword arguments."""
    return fusion_class(method)(dims, num_classes, **arguments)


def all_present(features: Features) -> Mask:
    """The mask for features where every modality is present for every sample."""
    return {m: torch.ones(len(t), dtype=torch.bool, device=t.device) for m, t in features.items()}
