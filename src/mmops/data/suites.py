"""The suites at the later hand-offs: the cleaned manifest (after `clean`) and the feature cache
(after `featurize`). Both are critical: a violation here is a bug upstream, not a bad row, and
stops the run. The raw manifest's suite is `validate.py`; the plumbing is `expectations.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from mmops.config import CleanParams, DataParams
from mmops.data.clean import hash_column
from mmops.data.expectations import SuiteResult, run_suite, shorten
from mmops.data.manifest import ID, LABEL, LINE, classes_without_rows
from mmops.features.cache import FeatureCache
from mmops.modalities.base import Modality

CLASS_ROWS = "class_rows"


def normalised_column(modality: str) -> str:
    return f"{modality}_normalised"


def check_cleaned(frame: pd.DataFrame, rejects: pd.DataFrame, data: DataParams, clean: CleanParams,
                  modalities: Sequence[Modality], subject: str) -> SuiteResult:
    """The cleaned manifest: no rejected row left, ids unique, labels in the set with at least
    `clean.min_per_class` rows each, values as their modality normalises them, media facts
    within bounds (each modality's `expectations`)."""
    import great_expectations as gx

    e = gx.expectations
    checked = frame.assign(**{
        CLASS_ROWS: frame.groupby(LABEL)[ID].transform("size") if len(frame) else [],
        **{normalised_column(m.name): [m.may_skip(v) or m.normalise(v) == v for v in frame[m.name]]
           for m in modalities},
    })
    expectations: list[Any] = [
        e.ExpectTableRowCountToBeBetween(min_value=1),
        e.ExpectColumnValuesToBeUnique(column=ID),
        e.ExpectColumnValuesToNotBeInSet(column=LINE, value_set=[int(line) for line in rejects[LINE]]),
        e.ExpectColumnValuesToBeInSet(column=LABEL, value_set=list(data.labels)),
        e.ExpectColumnDistinctValuesToContainSet(column=LABEL, value_set=list(data.labels)),
        e.ExpectColumnValuesToBeBetween(column=CLASS_ROWS, min_value=clean.min_per_class),
    ]
    for m in modalities:
        expectations.append(e.ExpectColumnValuesToBeInSet(column=normalised_column(m.name), value_set=[True]))
        if m.media:
            expectations.append(e.ExpectColumnValuesToMatchRegex(column=hash_column(m.name), regex=r"^(?:[0-9a-f]{64})?$"))
        expectations.extend(m.expectations())

    by_flag = {normalised_column(m.name): m for m in modalities}

    def describe(item: Any, result: dict[str, Any]) -> list[str] | None:
        config = item.expectation_config
        if config.kwargs.get("column") in by_flag:
            m = by_flag[config.kwargs["column"]]
            return [f"line {row[LINE]}: {m.column} {shorten(row[m.name])!r}: not normalised (clean stores "
                    f"{shorten(m.normalise(row[m.name]))!r})" for row in result.get("unexpected_index_list") or []]
        if config.kwargs.get("column") == CLASS_ROWS:
            counts = frame[LABEL].value_counts()
            return [f"class {label!r} has {count} row(s) after cleaning, fewer than clean.min_per_class "
                    f"({clean.min_per_class})" for label, count in counts.items() if count < clean.min_per_class]
        if config.type == "expect_column_distinct_values_to_contain_set":
            absent = classes_without_rows(frame, data.labels)
            return [f"no rows left for the class(es) {', '.join(map(repr, absent))} after cleaning"]
        return None

    return run_suite("cleaned_manifest", subject, checked, expectations, index_column=LINE,
                     extra_index_columns=[m.name for m in modalities], describe=describe)


def feature_frame(cache: FeatureCache) -> pd.DataFrame:
    """One row per cached sample: per modality, whether it is present, whether every value is
    finite, its width and L2 norm (empty where absent, so range checks skip it)."""
    columns: dict[str, Any] = {ID: list(cache.sample_ids)}
    for name, features in cache.features.items():
        present = cache.present[name].bool()
        columns[f"{name}_present"] = present.tolist()
        columns[f"{name}_finite"] = torch.isfinite(features).all(dim=1).tolist()
        columns[f"{name}_dim"] = [features.shape[1]] * len(cache.sample_ids)
        norms = torch.linalg.vector_norm(features.float(), dim=1)
        columns[f"{name}_norm"] = [float(n) if p else None for n, p in zip(norms.tolist(), present.tolist())]
    return pd.DataFrame(columns)


def check_features(cache: FeatureCache, cleaned: pd.DataFrame, modalities: Sequence[Modality],
                   subject: str) -> SuiteResult:
    """The feature cache: one row per kept sample (no more, no fewer), no NaN or inf, each
    modality's width as its encoder makes it, norms within the modality's `feature_norm`, and
    every sample with a required modality has it."""
    import great_expectations as gx

    e = gx.expectations
    frame = feature_frame(cache)
    expectations: list[Any] = [
        e.ExpectTableRowCountToEqual(value=len(cleaned)),
        e.ExpectColumnValuesToBeUnique(column=ID),
        e.ExpectColumnValuesToBeInSet(column=ID, value_set=list(cleaned[ID])),
    ]
    for m in modalities:
        low, high = m.feature_norm
        expectations += [
            e.ExpectColumnToExist(column=f"{m.name}_dim"),
            e.ExpectColumnValuesToBeInSet(column=f"{m.name}_dim", value_set=[m.feature_dim]),
            e.ExpectColumnValuesToBeInSet(column=f"{m.name}_finite", value_set=[True]),
            e.ExpectColumnValuesToBeBetween(column=f"{m.name}_norm", min_value=low, max_value=high),
        ]
        if m.required:
            expectations.append(e.ExpectColumnValuesToBeInSet(column=f"{m.name}_present", value_set=[True]))
    return run_suite("feature_cache", subject, frame, expectations, index_column=ID)
