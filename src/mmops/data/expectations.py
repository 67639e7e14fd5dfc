"""Great Expectations 1.x plumbing shared by every suite: run a list of expectations over a
frame, turn GX's result into readable lines, and render one offline HTML report of all suites.

Each expectation carries GX's own `severity`: `critical` ones are problems with the data as a
whole and stop the stage; `warning` ones are per-row problems that a later step handles (clean
rejects the row), listed so the report shows them all in one place.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

CRITICAL, WARNING = "critical", "warning"

# What a failing row-level expectation means, for the readable lines.
_WHAT = {
    "expect_column_values_to_be_unique": "duplicated value",
    "expect_column_values_to_not_match_regex": "not allowed here",
    "expect_column_values_to_be_in_set": "value outside the configured set",
    "expect_column_values_to_be_between": "outside the expected range",
    "expect_column_values_to_not_be_null": "missing value",
}


@dataclass(frozen=True)
class SuiteResult:
    """One suite's outcome, without GX's run ids and timestamps: the same data gives the same
    result (later stages depend on the file, so it must not change when nothing did)."""

    suite: str
    subject: str  # the file the suite checked
    success: bool  # every critical expectation met
    failures: list[str]  # critical violations, one readable line each
    warnings: list[str]  # row-level violations that a later step handles
    expectations: list[dict[str, Any]]  # per expectation: type, column, arguments, severity, success, unexpected

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SuiteResult:
        return cls(**{key: raw[key] for key in cls.__dataclass_fields__})


def _run(name: str, frame: pd.DataFrame, expectations: Sequence[Any], index_columns: Sequence[str]) -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # offline: no usage statistics
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    batch = context.data_sources.add_pandas(name).add_dataframe_asset("rows").add_batch_definition_whole_dataframe("all")
    suite = context.suites.add(gx.ExpectationSuite(name=name))
    for expectation in expectations:
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(gx.ValidationDefinition(data=batch, suite=suite, name=name))
    return definition.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": list(index_columns)},
    )


Describe = Callable[[Any, Mapping[str, Any]], list[str] | None]


def run_suite(name: str, subject: str, frame: pd.DataFrame, expectations: Sequence[Any], *,
              index_column: str, extra_index_columns: Sequence[str] = (), names: Mapping[str, str] | None = None,
              describe: Describe | None = None, max_rows: int = 20) -> SuiteResult:
    """Run `expectations` over `frame`. Failing rows are named by `index_column` (the manifest
    line, or the sample id; `extra_index_columns` travel with each failing row) and columns by
    `names` (as the user's file calls them). `describe` may word a failure itself (return None
    to fall back to the generic line per row)."""
    names = names or {}
    result = _run(name, frame, expectations, [index_column, *extra_index_columns])
    failures: list[str] = []
    warnings: list[str] = []
    records = []
    for item in result.results:
        config = item.expectation_config
        kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
        column = kwargs.pop("column", None)
        severity = str(getattr(config.severity, "value", config.severity))
        records.append({"type": config.type, "column": column, "arguments": _summarised(kwargs),
                        "severity": severity, "success": bool(item.success),
                        "unexpected": item.result.get("unexpected_count")})
        if item.success:
            continue
        lines = describe(item, item.result) if describe else None
        if lines is None:
            lines = _generic_lines(item, column, index_column, names, max_rows)
        (failures if severity == CRITICAL else warnings).extend(lines)
    return SuiteResult(suite=name, subject=subject, success=not failures, failures=failures,
                       warnings=warnings, expectations=records)


def _generic_lines(item: Any, column: str | None, index_column: str, names: Mapping[str, str],
                   max_rows: int) -> list[str]:
    shown = names.get(column, column)
    kind = item.expectation_config.type
    if kind == "expect_column_to_exist":
        return [f"missing column '{shown}'"]
    rows = item.result.get("unexpected_index_list")
    if rows is None:  # a table- or column-level expectation
        observed = item.result.get("observed_value")
        return [f"{shown or 'table'}: {kind.removeprefix('expect_').replace('_', ' ')} (observed {observed!r})"]
    prefix = "line" if index_column == "line" else index_column
    lines = [f"{prefix} {_plain(row[index_column])}: {shown} {_plain(row.get(column))!r}: {_WHAT.get(kind, kind)}"
             for row in rows[:max_rows]]
    if len(rows) > max_rows:
        lines.append(f"... and {len(rows) - max_rows} more for '{shown}'")
    return lines


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (so messages read `False`, not `np.False_`),
    and a long text cut short (a 10 MB cell must not land in every message and report)."""
    value = value.item() if hasattr(value, "item") else value
    return shorten(value)


def shorten(value: Any, limit: int = 80) -> Any:
    """`value`, or the start of a longer string with how long it was."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}... ({len(value)} characters)"
    return value


def _summarised(arguments: dict[str, Any], limit: int = 20) -> dict[str, Any]:
    """Arguments as the result files show them: a long list (every id, every rejected line)
    as its length, so the JSON and the report stay readable."""
    return {k: f"{len(v)} values" if isinstance(v, (list, tuple)) and len(v) > limit else v
            for k, v in arguments.items()}


def render_html(results: Sequence[SuiteResult], title: str, rejects: pd.DataFrame | None = None) -> str:
    """A self-contained page (no scripts, no network): per suite, one row per expectation, then
    its critical failures and its row-level warnings; then, given clean's `rejects`, every
    rejected row with its reason (what the media checks found: undecodable, bombs, ...)."""
    sections = []
    for result in results:
        rows = []
        for item in result.expectations:
            state = "pass" if item["success"] else ("FAIL" if item["severity"] == CRITICAL else "warn")
            count = item["unexpected"]
            rows.append(
                f"<tr class={state.lower()}><td>{state}</td><td>{html.escape(str(item['column'] or ''))}</td>"
                f"<td>{html.escape(item['type'])}</td><td>{html.escape(str(item['arguments'] or ''))}</td>"
                f"<td>{item['severity']}</td><td>{'' if count is None else count}</td></tr>"
            )
        met = sum(1 for e in result.expectations if e["success"])

        def listed(lines: list[str]) -> str:
            return "".join(f"<li>{html.escape(line)}</li>" for line in lines) or "<li>none</li>"

        sections.append(f"""
<h2>{html.escape(result.suite)}: {"passed" if result.success else "FAILED"}</h2>
<p>{html.escape(result.subject)}: {met} of {len(result.expectations)} expectations met.</p>
<table><tr><th>result</th><th>column</th><th>expectation</th><th>arguments</th><th>severity</th><th>unexpected</th></tr>
{"".join(rows)}
</table>
<h3>Failures (stop the run)</h3><ul>{listed(result.failures)}</ul>
<h3>Row problems (rejected by clean)</h3><ul>{listed(result.warnings)}</ul>""")
    if rejects is not None:
        cells = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                        for row in rejects.itertuples(index=False))
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in rejects.columns)
        sections.append(f"<h2>Rejected by clean: {len(rejects)} row(s)</h2>"
                        + (f"<table><tr>{head}</tr>{cells}</table>" if len(rejects) else "<p>none</p>"))
    verdict = "passed" if all(r.success for r in results) else "FAILED"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}: {verdict}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; }}
tr.fail td:first-child {{ color: #b00; font-weight: bold; }} tr.pass td:first-child {{ color: #070; }}
tr.warn td:first-child {{ color: #a60; font-weight: bold; }}
</style></head><body>
<h1>{html.escape(title)}: {verdict}</h1>
<p>Great Expectations suites: {", ".join(html.escape(r.suite) for r in results)}.</p>
{"".join(sections)}
</body></html>
"""
