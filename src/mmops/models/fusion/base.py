"""The fusion-model interface every fusion method implements, and its factory.

Training, evaluation, serving and explanations see only this: features per modality and a
per-sample mask of the modalities present go in; a `FusionOutput` comes out (log-probabilities
per modality and `fused`, and the per-modality embeddings the method fuses). Each method brings
its own loss, optional preparation on the train split, and an optional step fitted on
validation data once training is done. Any method can carry an `Alignment` (a CLIP-style
objective over its embeddings, `train.contrastive_weight`), and every model is calibrated the
same way once trained: a temperature per output, fitted on validation (`calibrate`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from mmops.config import build_section
from mmops.models.fusion.align import Alignment
from mmops.models.temperature import fit_temperature, scaled

Features = dict[str, torch.Tensor]  # modality -> (N, dim)
Mask = dict[str, torch.Tensor]  # modality -> (N,) bool: present for that sample
FUSED = "fused"


@dataclass
class FusionOutput:
    """A fusion model's answer for a batch: `log_probs` (N, C) for `fused` and for each modality
    alone (the fused path with the others masked), and `embeddings` (N, D_m): each modality's
    representation inside the method, which alignment projects into one space."""

    log_probs: dict[str, torch.Tensor]
    embeddings: dict[str, torch.Tensor]

    def cpu(self) -> FusionOutput:
        return FusionOutput({k: v.cpu() for k, v in self.log_probs.items()},
                            {k: v.cpu() for k, v in self.embeddings.items()})

    @staticmethod
    def cat(parts: list[FusionOutput]) -> FusionOutput:
        """The outputs of consecutive batches as one."""
        return FusionOutput({k: torch.cat([p.log_probs[k] for p in parts]) for k in parts[0].log_probs},
                            {k: torch.cat([p.embeddings[k] for p in parts]) for k in parts[0].embeddings})


class FusionModel(nn.Module, ABC):
    """A classifier over several modalities' features."""

    method: ClassVar[str]  # the name `train.fusion` uses
    Options: ClassVar[type]  # its own options (a frozen dataclass): `train.fusions.<method>` in params.yaml

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.modalities = tuple(dims)
        self.dims = dict(dims)
        self.num_classes = num_classes
        self.alignment: Alignment | None = None
        # output name -> temperature, set by `calibrate` once training is done (empty: raw outputs,
        # so training and model selection never see a temperature)
        self.temperatures: dict[str, float] = {}

    def align(self, dim: int, seed: int = 0) -> None:
        """Give the model (still on the CPU) an alignment head projecting its embeddings to `dim`
        (its weights then live in the state dict, and the checkpoint records `dim`). The head
        draws its initial weights from its own `seed`, not the global generator, so an aligned
        run sees the same dropout masks and data order as the same run without alignment: an
        ablation then measures the objective, not a reshuffle."""
        with torch.no_grad():
            was_training = self.training
            # the widths embed() gives, from a probe in eval mode (no dropout drawn)
            probe = self.eval().embed({m: torch.zeros(2, d) for m, d in self.dims.items()})
            self.train(was_training)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.alignment = Alignment({m: e.shape[1] for m, e in probe.items()}, dim)

    def forward(self, features: Features, present: Mask) -> FusionOutput:
        """Log-probabilities for every sample (one entry per modality, and `fused`) and the
        modalities' embeddings, each computed once. A modality absent for a sample must not
        influence its `fused`."""
        embeddings = self.embed(features)
        log_probs = self.answer(features, embeddings, present)
        if self.temperatures:
            log_probs = self._scaled(log_probs, present)
        return FusionOutput(log_probs, embeddings)

    def _scaled(self, log_probs: dict[str, torch.Tensor], present: Mask) -> dict[str, torch.Tensor]:
        """Each output at its temperature. A record with a single modality is that modality
        alone (its fused answer is the masked path, `alone`): it takes that modality's
        temperature, fitted for exactly that, not the one fitted on records that have them all."""
        out = {k: scaled(v, self.temperatures[k]) if k in self.temperatures else v for k, v in log_probs.items()}
        if FUSED not in out:
            return out
        count = torch.stack([present[m] for m in self.modalities]).sum(0)
        for m in self.modalities:
            only = present[m] & (count == 1)
            if m in self.temperatures and bool(only.any()):
                own = scaled(log_probs[FUSED], self.temperatures[m])
                out[FUSED] = torch.where(only[:, None].to(own.device), own, out[FUSED])
        return out

    def calibrate(self, outputs: dict[str, torch.Tensor], target: torch.Tensor, present: Mask) -> dict[str, float]:
        """Fit one temperature per output (`fused`, and each modality alone on the samples that
        have it) to uncalibrated validation `outputs` (made with no temperatures set), and use them
        from now on: in evaluate, explanations and serving alike. Returns them."""
        fitted = {}
        # the fused temperature serves records with two modalities or more (`_scaled`)
        several = torch.stack([present[m].cpu() for m in self.modalities]).sum(0) >= 2
        for name, log_probs in outputs.items():
            rows = present[name].cpu() if name in present else several if bool(several.any()) else \
                torch.ones(len(target), dtype=torch.bool)
            if bool(rows.any()):
                fitted[name] = fit_temperature(log_probs.cpu()[rows], target.cpu()[rows])
        self.temperatures = fitted
        return fitted

    @contextmanager
    def uncalibrated(self) -> Iterator[FusionModel]:
        """The model without its temperatures, inside the `with` block (the ECE before calibration)."""
        kept, self.temperatures = self.temperatures, {}
        try:
            yield self
        finally:
            self.temperatures = kept

    def log_probs(self, features: Features, present: Mask) -> dict[str, torch.Tensor]:
        """Just the log-probabilities of `forward`."""
        return self(features, present).log_probs

    @abstractmethod
    def embed(self, features: Features) -> dict[str, torch.Tensor]:
        """Each modality's representation (N, D_m) as this method fuses it (meaningless, but
        finite, for a sample that lacks the modality)."""

    @abstractmethod
    def answer(self, features: Features, embeddings: dict[str, torch.Tensor], present: Mask) -> dict[str, torch.Tensor]:
        """Log-probabilities (N, C) from `embed`'s output: one entry per modality (that
        modality alone), and `fused`."""

    @abstractmethod
    def loss(self, log_probs: dict[str, torch.Tensor], target: torch.Tensor, present: Mask,
             smoothing: float = 0.0) -> torch.Tensor:
        """The label loss for a batch of `log_probs` outputs (cross-entropy, with label
        smoothing `smoothing`)."""

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
                log_probs = self.log_probs(part, {k: p[left].to(device) for k, p in without.items()})[FUSED]
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
