"""Validation of the raw manifest with a Great Expectations 1.x suite.

Policy: a problem with the manifest as a whole (a missing column, no rows, a configured class
with no rows at all) is `critical` and stops the run here, naming the file and column. A problem
with one row (unknown label, duplicate id, a media file missing or escaping `data/`, empty text)
is a `warning`: listed in the report, and the row becomes a recorded reject in `clean`, where
`clean.max_reject_fraction` decides whether the run goes on.

Checks GE cannot do by itself (does a media file exist, does its path stay inside `data/`, is a
text empty) are each modality's own `check`, run once per value into a derived
`<modality>_status` column that the suite checks like any other, so every problem is reported
in one result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from mmops.config import DataParams
from mmops.data.expectations import CRITICAL, WARNING, SuiteResult, run_suite, shorten
from mmops.data.manifest import ID, LABEL, LINE, classes_without_rows, source_names
from mmops.modalities.base import Modality

OK = "ok"
SUITE = "raw_manifest"


class ValidationError(ValueError):
    """The manifest as a whole cannot be used; the message lists every such problem."""


def status_column(modality: str) -> str:
    return f"{modality}_status"


def _with_modality_checks(frame: pd.DataFrame, params: DataParams, modalities: Sequence[Modality]) -> pd.DataFrame:
    return frame.assign(**{
        status_column(m.name): [OK if m.may_skip(v) else m.check(v, params.root) or OK for v in frame[m.name]]
        for m in modalities if m.name in frame.columns
    })


def _expectations(frame: pd.DataFrame, params: DataParams, modalities: Sequence[Modality]) -> list[Any]:
    import great_expectations as gx

    e = gx.expectations
    checks: list[Any] = [e.ExpectColumnToExist(column=key, severity=CRITICAL)
                         for key in [ID, *(m.name for m in modalities), LABEL]]
    checks.append(e.ExpectTableRowCountToBeBetween(min_value=1, severity=CRITICAL))
    present = set(frame.columns)
    if ID in present:
        checks.append(e.ExpectColumnValuesToBeUnique(column=ID, severity=WARNING))
        checks.append(e.ExpectColumnValuesToNotMatchRegex(column=ID, regex=r"^\s*$", severity=WARNING))
    if LABEL in present:
        checks.append(e.ExpectColumnValuesToBeInSet(column=LABEL, value_set=list(params.labels), severity=WARNING))
        if len(frame):
            checks.append(e.ExpectColumnDistinctValuesToContainSet(column=LABEL, value_set=list(params.labels),
                                                                   severity=CRITICAL))
    for m in modalities:
        if status_column(m.name) in present:
            checks.append(e.ExpectColumnValuesToBeInSet(column=status_column(m.name), value_set=[OK],
                                                        severity=WARNING))
    return checks


def _describer(frame: pd.DataFrame, params: DataParams, modalities: Sequence[Modality], names: Mapping[str, str],
               max_rows: int = 20):
    by_status = {status_column(m.name): m for m in modalities}

    def describe(item: Any, result: Mapping[str, Any]) -> list[str] | None:
        config = item.expectation_config
        column = config.kwargs.get("column")
        if config.type == "expect_table_row_count_to_be_between":
            return ["no rows: the manifest has a header only"]
        if config.type == "expect_column_distinct_values_to_contain_set":
            absent = classes_without_rows(frame, params.labels)
            return [f"column '{names[LABEL]}': no rows for the configured class(es) "
                    f"{', '.join(repr(a) for a in absent)} (params.yaml data.labels)"]
        if column in by_status:  # the modality's own reason, not "value outside the set"
            m = by_status[column]
            rows = result.get("unexpected_index_list") or []
            lines = [f"line {row[LINE]}: {m.column} {shorten(row[m.name])!r}: {row[column]}" for row in rows[:max_rows]]
            if len(rows) > max_rows:
                lines.append(f"... and {len(rows) - max_rows} more for '{m.column}'")
            return lines
        return None

    return describe


def validate_manifest(frame: pd.DataFrame, params: DataParams, modalities: Sequence[Modality]) -> SuiteResult:
    """Run the raw-manifest suite over `frame` (as read by `read_manifest`)."""
    names = source_names(params, [m.spec for m in modalities])
    checked = _with_modality_checks(frame, params, modalities)
    index = [LINE] + [m.name for m in modalities if m.name in frame.columns]
    # the index columns travel with each failing row, so messages can quote the modality's value
    return run_suite(SUITE, str(params.manifest), checked, _expectations(checked, params, modalities),
                     index_column=LINE, names=names, describe=_describer(frame, params, modalities, names),
                     extra_index_columns=index[1:])
