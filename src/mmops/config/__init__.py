"""Typed configuration: one frozen dataclass per `params.yaml` section (`params`), how the file
is read into them (`load`), and where each stage writes (`layout`). Everything is importable
from here, as `from mmops.config import Layout, Params, load_params`."""

from mmops.config.layout import Layout
from mmops.config.load import build_section, load_params, params_from_dict
from mmops.config.params import (ID, LABEL, LINE, PRECISIONS, AugmentParams, CleanParams, Columns, DataParams,
                                 DriftParams, FeaturizeParams, ModalityParams, Params, PromoteParams, RegisterParams,
                                 ScaleParams, ServeParams, ShiftParams, SplitParams, TrainParams)

__all__ = ["ID", "LABEL", "LINE", "PRECISIONS", "AugmentParams", "CleanParams", "Columns", "DataParams", "DriftParams",
           "FeaturizeParams", "Layout", "ModalityParams", "Params", "PromoteParams", "RegisterParams", "ScaleParams",
           "ServeParams", "ShiftParams", "SplitParams", "TrainParams", "build_section", "load_params",
           "params_from_dict"]
