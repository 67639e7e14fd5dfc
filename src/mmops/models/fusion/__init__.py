"""Fusion methods, by the name `train.fusion` uses. Adding one is a module beside `late.py`
with a `@register_fusion` class, imported here."""

from mmops.models.fusion import concat, gated, late  # noqa: F401  (registers "concat", "gated", "late")
from mmops.models.fusion.base import (FUSED, FUSIONS, Features, FusionModel, Mask, all_present, build_fusion,
                                      fusion_options)

__all__ = ["FUSED", "FUSIONS", "Features", "FusionModel", "Mask", "all_present", "build_fusion", "fusion_options"]
