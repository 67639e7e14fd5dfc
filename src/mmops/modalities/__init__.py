"""The modalities mmops knows, by the name a `modalities:` entry in params.yaml uses.

Adding one is a module beside these with a `Modality` subclass, and one line here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from mmops.config import ModalityParams
from mmops.modalities.audio import AudioModality
from mmops.modalities.base import Modality, present
from mmops.modalities.image import ImageModality
from mmops.modalities.text import TextModality

REGISTRY: dict[str, type[Modality]] = {cls.name: cls for cls in (ImageModality, TextModality, AudioModality)}


def build_modalities(specs: Iterable[ModalityParams]) -> tuple[Modality, ...]:
    """The configured modalities, in params.yaml's order."""
    built = []
    for spec in specs:
        if spec.name not in REGISTRY:
            raise ValueError(f"params.yaml: unknown modality {spec.name!r} (known: {', '.join(sorted(REGISTRY))})")
        built.append(REGISTRY[spec.name](spec))
    return tuple(built)


def requests_for(frame: pd.DataFrame, modalities: Sequence[Modality], root: Path) -> pd.DataFrame:
    """Manifest rows (canonical column names) as a serving request: one column per modality,
    media read from `root` (base64), absent values None."""
    return pd.DataFrame({m.name: [m.to_request(v, root) if present(v) else None for v in frame[m.name]]
                         for m in modalities if m.name in frame.columns})
