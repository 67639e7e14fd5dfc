"""Validation of the raw manifest with a Great Expectations 1.x suite.

Media checks that GE cannot do by itself (does the file exist, does its path stay inside
`data/`) become a derived column that the suite checks like any other, so every failure is
reported in one result.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mmops.config import DataParams
from mmops.data.manifest import CANONICAL, LINE, resolve_media, source_names

IMAGE_STATUS = "image_status"
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


def image_status(root: Path, relative: str) -> str:
    """'ok', or why the image at `relative` cannot be used."""
    try:
        path = resolve_media(root, relative)
    except ValueError as err:
        return str(err)
    return OK if path.is_file() else "file not found"


def _with_media_checks(frame: pd.DataFrame, root: Path) -> pd.DataFrame:
    if "image" not in frame.columns:
        return frame
    return frame.assign(**{IMAGE_STATUS: [image_status(root, p) for p in frame["image"]]})


def _expectations(frame: pd.DataFrame, params: DataParams) -> list[Any]:
    import great_expectations as gx

    checks: list[Any] = [gx.expectations.ExpectColumnToExist(column=key) for key in CANONICAL]
    present = set(frame.columns)
    if "sample_id" in present:
        checks.append(gx.expectations.ExpectColumnValuesToBeUnique(column="sample_id"))
        checks.append(gx.expectations.ExpectColumnValuesToNotMatchRegex(column="sample_id", regex=r"^\s*$"))
    if "text" in present:
        checks.append(gx.expectations.ExpectColumnValuesToNotMatchRegex(column="text", regex=r"^\s*$"))
    if "label" in present:
        checks.append(gx.expectations.ExpectColumnValuesToBeInSet(column="label", value_set=list(params.labels)))
    if IMAGE_STATUS in present:
        checks.append(gx.expectations.ExpectColumnValuesToBeInSet(column=IMAGE_STATUS, value_set=[OK]))
    return checks


def _run_suite(frame: pd.DataFrame, params: DataParams) -> Any:
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
    for expectation in _expectations(frame, params):
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(data=batch, suite=suite, name="raw_manifest")
    )
    index_columns = [LINE] + [c for c in ("image",) if c in frame.columns]
    return definition.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": index_columns},
    )


_WHAT = {
    "expect_column_values_to_be_unique": "duplicated value",
    "expect_column_values_to_not_match_regex": "empty value",
    "expect_column_values_to_be_in_set": "value outside the configured set",
}


def _describe(result: Any, params: DataParams, max_rows: int = 20) -> list[str]:
    """One line per failing row (or missing column), e.g. `line 7: label 'Zoo' is ...`."""
    names = source_names(params.columns)
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
            if column == IMAGE_STATUS:
                lines.append(f"line {row[LINE]}: image '{row['image']}': {row[IMAGE_STATUS]}")
            else:
                shown = names.get(column, column)
                lines.append(f"line {row[LINE]}: {shown} {row[column]!r}: {_WHAT.get(config.type, config.type)}")
        if len(rows) > max_rows:
            lines.append(f"... and {len(rows) - max_rows} more for '{names.get(column, column)}'")
    return lines


def validate_manifest(frame: pd.DataFrame, params: DataParams) -> ValidationReport:
    """Run the raw-manifest suite over `frame` (as read by `read_manifest`)."""
    checked = _with_media_checks(frame, params.root)
    result = _run_suite(checked, params)
    failures = _describe(result, params)
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
