"""The feature cache (`features.pt`): features per modality, which samples have each modality,
and the identity of the encoder that made them, so every later use can check it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmops import artifacts

Identity = dict[str, Any]  # as `Modality.identity` makes it


class EncoderMismatch(ValueError):
    """Features were made by other encoders (or settings) than the ones they are used with."""


@dataclass(frozen=True)
class FeatureCache:
    sample_ids: list[str]
    features: dict[str, torch.Tensor]  # modality -> (N, dim) float32
    present: dict[str, torch.Tensor]  # modality -> (N,) bool
    encoders: dict[str, Identity]  # modality -> what made its features

    def save(self, path: Path) -> Path:
        return artifacts.save_torch(path, {
            "sample_id": list(self.sample_ids), "features": self.features, "present": self.present,
            "encoders": self.encoders,
        })

    def describe(self) -> dict[str, Any]:
        """Samples, feature size per modality, and the precision the features were computed in."""
        return {"samples": len(self.sample_ids), "dims": {m: t.shape[1] for m, t in self.features.items()},
                "dtype": ",".join(sorted({identity["dtype"] for identity in self.encoders.values()}))}

    @classmethod
    def load(cls, path: Path) -> FeatureCache:
        raw = artifacts.load_torch(path)
        if not isinstance(raw, dict) or "encoders" not in raw:
            raise ValueError(f"{path}: not a feature cache of this version of mmops; rerun featurize")
        return cls(raw["sample_id"], raw["features"], raw["present"], raw["encoders"])

    def align(self, sample_ids: Sequence[str], where: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Features and presence masks reordered to `sample_ids` (the cache's order is its own)."""
        position = {sample_id: i for i, sample_id in enumerate(self.sample_ids)}
        missing = [s for s in sample_ids if s not in position]
        if missing:
            raise ValueError(f"{where} lacks {len(missing)} sample(s) (e.g. {missing[0]}); rerun featurize")
        order = torch.tensor([position[s] for s in sample_ids], dtype=torch.long)
        return ({m: t[order] for m, t in self.features.items()},
                {m: p[order] for m, p in self.present.items()})


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(f"{prefix}.{key}", item))
        return out
    return {prefix: value}


def check_encoders(made: dict[str, Identity], expected: dict[str, Identity], *, made_by: str,
                   expected_by: str, ignore: tuple[str, ...] = (), remedy: str = "") -> None:
    """Raise `EncoderMismatch` listing every difference (by modality and field, both sides
    named) between the encoders that made features and the ones expected. A field only one side
    records is a difference too: an identity from before that field existed (the device kind,
    say) cannot vouch for it."""
    def flat(identities: dict[str, Identity]) -> dict[str, Any]:
        return {k: v for m, ident in identities.items()
                for k, v in _flatten(m, {f: x for f, x in ident.items() if f not in ignore}).items()}

    a, b = flat(made), flat(expected)
    differences = [
        f"{key}: {made_by} has {a.get(key, '(none)')!r}, {expected_by} has {b.get(key, '(none)')!r}"
        for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)
    ]
    if list(made) != list(expected):
        differences.insert(0, f"modalities: {made_by} has {list(made)}, {expected_by} has {list(expected)}")
    if differences:
        raise EncoderMismatch(f"{made_by} and {expected_by} disagree on the encoders:\n  " + "\n  ".join(differences)
                              + (f"\n{remedy}" if remedy else ""))
