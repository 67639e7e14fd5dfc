"""Validation of the raw manifest with a Great Expectations 1.x suite.

Checks that GE cannot do by itself (does a media file exist, does its path stay inside
`data/`, is a text empty) are each modality's own `check`, run once per value into a derived
`<modality>_status` column that the suite checks like any other, so every failure is reported
in one result.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mmops.config import DataParams
from mmops.data.manifest import ID, LABEL, LINE, source_names
from mmops.modalities.base import Modality

OK = "ok"


class ValidationError(ValueError):
    """The manifest violates the suite; the message lists every violation with its line."""


@dataclass(frozen=True)
class ValidationReport:
    """The suite's outcome, without GX's run ids and timestamps: the same data gives the same
    report (later stages depend on it, so it must not change when nothing did)."""

    success: bool
    failures: list[str]  # one readable line per violation
    expectations: list[dict[str, Any]]  # per expectation: type, column, arguments, success, unexpected

    def to_dict(self) -> dict[str, Any]:
        return {"success": self.success, "failures": self.failures, "expectations": self.expectations}


def status_column(modality: str) -> str:
    return f"{modality}_status"


def _with_modality_checks(frame: pd.DataFrame, root: Path, modalities: Sequence[Modality]) -> pd.DataFrame:
    return frame.assign(**{
        status_column(m.name): [OK if m.may_skip(v) else m.check(v, root) or OK for v in frame[m.name]]
        for m in modalities if m.name in frame.columns
    })


def _expectations(frame: pd.DataFrame, params: DataParams, modalities: Sequence[Modality]) -> list[Any]:
    import great_expectations as gx

    names = [ID, *(m.name for m in modalities), LABEL]
    checks: list[Any] = [gx.expectations.ExpectColumnToExist(column=key) for key in names]
    present = set(frame.columns)
    if ID in present:
        checks.append(gx.expectations.ExpectColumnValuesToBeUnique(column=ID))
        checks.append(gx.expectations.ExpectColumnValuesToNotMatchRegex(column=ID, regex=r"^\s*$"))
    if LABEL in present:
        checks.append(gx.expectations.ExpectColumnValuesToBeInSet(column=LABEL, value_set=list(params.labels)))
    for m in modalities:
        if status_column(m.name) in present:
            checks.append(gx.expectations.ExpectColumnValuesToBeInSet(column=status_column(m.name), value_set=[OK]))
    return checks


def _run_suite(frame: pd.DataFrame, params: DataParams, modalities: Sequence[Modality]) -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # offline: no usage statistics
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    batch = (
        context.data_sources.add_pandas("manifest")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="raw_manifest"))
    for expectation in _expectations(frame, params, modalities):
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(data=batch, suite=suite, name="raw_manifest")
    )
    index_columns = [LINE] + [m.name for m in modalities if m.name in frame.columns]
    return definition.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": index_columns},
    )


_WHAT = {
    "expect_column_values_to_be_unique": "duplicated value",
    "expect_column_values_to_not_match_regex": "empty value",
    "expect_column_values_to_be_in_set": "value outside the configured set",
}


def _describe(result: Any, params: DataParams, modalities: Sequence[Modality], max_rows: int = 20) -> list[str]:
    """One line per failing row (or missing column), e.g. `line 7: label 'Zoo' is ...`."""
    names = source_names(params, [m.spec for m in modalities])
    by_status = {status_column(m.name): m for m in modalities}
    lines: list[str] = []
    for item in result.results:
        if item.success:
            continue
        config = item.expectation_config
        column = config.kwargs.get("column")
        if config.type == "expect_column_to_exist":
            lines.append(f"missing column '{names.get(column, column)}'")
            continue
        rows = item.result.get("unexpected_index_list") or []
        for row in rows[:max_rows]:
            if column in by_status:
                m = by_status[column]
                lines.append(f"line {row[LINE]}: {m.column} {row[m.name]!r}: {row[column]}")
            else:
                shown = names.get(column, column)
                lines.append(f"line {row[LINE]}: {shown} {row[column]!r}: {_WHAT.get(config.type, config.type)}")
        if len(rows) > max_rows:
            lines.append(f"... and {len(rows) - max_rows} more for '{names.get(column, column)}'")
    return lines


def validate_manifest(frame: pd.DataFrame, params: DataParams, modalities: Sequence[Modality]) -> ValidationReport:
    """Run the raw-manifest suite over `frame` (as read by `read_manifest`)."""
    checked = _with_modality_checks(frame, params.root, modalities)
    result = _run_suite(checked, params, modalities)
    failures = _describe(result, params, modalities)
    expectations = []
    for item in result.to_json_dict()["results"]:
        kwargs = dict(item["expectation_config"]["kwargs"])
        kwargs.pop("batch_id", None)
        expectations.append({
            "type": item["expectation_config"]["type"],
            "column": kwargs.pop("column", None),
            "arguments": kwargs,
            "success": bool(item["success"]),
            "unexpected": (item.get("result") or {}).get("unexpected_count"),
        })
    return ValidationReport(success=bool(result.success) and not failures, failures=failures,
                            expectations=expectations)


def render_html(report: ValidationReport, title: str) -> str:
    """A self-contained page (no scripts, no network) of the suite's result: one row per
    expectation, then every violation by line."""
    rows = []
    for item in report.expectations:
        arguments, count = item["arguments"], item["unexpected"]
        rows.append(
            f"<tr class={'ok' if item['success'] else 'bad'}><td>{'pass' if item['success'] else 'FAIL'}</td>"
            f"<td>{html.escape(str(item['column'] or ''))}</td>"
            f"<td>{html.escape(item['type'])}</td><td>{html.escape(str(arguments) if arguments else '')}</td>"
            f"<td>{'' if count is None else count}</td></tr>"
        )
    failures = "".join(f"<li>{html.escape(line)}</li>" for line in report.failures) or "<li>none</li>"
    verdict = "passed" if report.success else "FAILED"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}: {verdict}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; }}
tr.bad td:first-child {{ color: #b00; font-weight: bold; }} tr.ok td:first-child {{ color: #070; }}
</style></head><body>
<h1>{html.escape(title)}: {verdict}</h1>
<p>Great Expectations suite <code>raw_manifest</code>: {sum(1 for e in report.expectations if e["success"])}
of {len(report.expectations)} expectations met.</p>
<table><tr><th>result</th><th>column</th><th>expectation</th><th>arguments</th><th>unexpected</th></tr>
{"".join(rows)}
</table>
<h2>Violations</h2><ul>{failures}</ul>
</body></html>
"""
