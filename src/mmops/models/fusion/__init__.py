"""Fusion methods, by the name `train.fusion` uses. Adding one is a module beside `late.py`
with a `@register_fusion` class, imported here."""

from mmops.models.fusion import attention, concat, gated, late, trust  # noqa: F401  (registers each method)
from mmops.models.fusion.base import (FUSED, FUSIONS, Features, FusionModel, FusionOutput, Mask, all_present,
                                      build_fusion, fusion_options)

__all__ = ["FUSED", "FUSIONS", "Features", "FusionModel", "FusionOutput", "Mask", "all_present", "build_fusion",
           "fusion_options"]
