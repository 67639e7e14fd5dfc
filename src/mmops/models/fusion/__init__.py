"""Fusion methods, by the name `train.fusion` uses. Adding one is a module beside `late.py`
with a `@register_fusion` class, imported here."""

from mmops.models.fusion import late  # noqa: F401  (registers "late")
from mmops.models.fusion.base import FUSED, FUSIONS, Features, FusionModel, Mask, all_present, build_fusion

__all__ = ["FUSED", "FUSIONS", "Features", "FusionModel", "Mask", "all_present", "build_fusion"]
