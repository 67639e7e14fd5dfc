"""Every case of the bad-input corpus has one exact outcome, and the good rows beside it all
come through: a row problem is a recorded reject; a manifest problem stops validate, naming the
file, line or column."""

from __future__ import annotations

import dataclasses

import pytest

from mmops import stages
from mmops.config import Layout
from mmops.data.manifest import ManifestError
from mmops.data.validate import ValidationError
from tests.conftest import make_params, TINY_LABELS
from tests.data.bad_inputs import HEADER, ROW_CASES, manifest_text

GOOD = [f"s{i}" for i in range(6)]


def _run(params, tmp_path, budget: float = 0.2):
    """validate then clean, as `dvc repro` runs them; (kept ids, rejects as (line, id, reason))."""
    params = dataclasses.replace(params, clean=dataclasses.replace(params.clean, max_reject_fraction=budget))
    layout = Layout(tmp_path / "artifacts")
    stages.validate(params, layout)
    stages.clean(params, layout)
    import pandas as pd

    kept = pd.read_csv(layout.clean_manifest, dtype=str, keep_default_na=False)
    rejects = pd.read_csv(layout.rejects, dtype=str, keep_default_na=False)
    return list(kept["sample_id"]), [(int(r.line), r.sample_id, r.reason) for r in rejects.itertuples()]


@pytest.fixture
def root(tmp_path, tiny_rows):
    """tmp_path/data with the six good tiny rows' images; each test writes its own manifest."""
    return tmp_path / "data"


@pytest.mark.parametrize("case", sorted(ROW_CASES))
def test_a_bad_row_is_rejected_with_its_reason_and_the_good_rows_kept(case, root, tiny_rows, tmp_path):
    bad = ROW_CASES[case].build(root)
    (root / "metadata.csv").write_text(manifest_text([*tiny_rows, bad]), encoding="utf-8")
    kept, rejects = _run(make_params(root, labels=TINY_LABELS), tmp_path)
    report = (tmp_path / "artifacts" / "validate" / "validation.json").read_text()
    assert len(report) < 20_000  # a 10 MB cell is quoted by its start, not whole
    expected = ROW_CASES[case].reason
    if expected is None:
        assert kept == [*GOOD, bad["sample_id"]] and rejects == []
    else:
        assert kept == GOOD
        assert rejects == [(8, bad["sample_id"], expected.format(root=root))]


def test_all_bad_rows_at_once_exceed_the_budget_naming_the_top_reasons(root, tiny_rows, tmp_path):
    built = {case: ROW_CASES[case].build(root) for case in sorted(ROW_CASES)}  # each writes its own file
    bad_rows = [{**r, "sample_id": f"bad-{case}"} if r["sample_id"] == "bad" else r for case, r in built.items()]
    (root / "metadata.csv").write_text(manifest_text([*tiny_rows, *bad_rows]), encoding="utf-8")
    params = make_params(root, labels=TINY_LABELS)
    with pytest.raises(ValueError, match=r"rows rejected .* more than clean.max_reject_fraction \(5.0%\); "
                                         r"most frequent: 'bad image path' x3 \(line"):
        _run(params, tmp_path, budget=0.05)
    kept, rejects = _run(params, tmp_path / "again", budget=1.0)
    accepted = {f"bad-{case}" for case, c in ROW_CASES.items() if c.reason is None}
    assert len(accepted) == 2  # the JPEG named .png, the still GIF
    assert set(kept) == set(GOOD) | accepted
    assert len(rejects) == len(ROW_CASES) - len(accepted)


def test_a_missing_column_stops_validate_naming_it(root, tiny_rows, tmp_path):
    (root / "metadata.csv").write_text(manifest_text(tiny_rows, header="sample_id,image,label"))
    with pytest.raises(ValidationError, match="missing column 'text'"):
        _run(make_params(root, labels=TINY_LABELS), tmp_path)


def test_a_broken_quote_stops_validate_naming_the_file(root, tiny_rows, tmp_path):
    text = manifest_text(tiny_rows).replace("thing number 3", '"thing number 3')
    (root / "metadata.csv").write_text(text)
    with pytest.raises(ManifestError, match=rf"{root}/metadata.csv: malformed CSV: .*EOF inside string"):
        _run(make_params(root, labels=TINY_LABELS), tmp_path)


def test_non_utf8_text_stops_validate_naming_the_line(root, tiny_rows, tmp_path):
    data = manifest_text(tiny_rows).encode().replace(b"thing number 4", "caf\u00e9 4".encode("latin-1"))
    (root / "metadata.csv").write_bytes(data)
    with pytest.raises(ManifestError, match=rf"{root}/metadata.csv: line 6: not UTF-8 text"):
        _run(make_params(root, labels=TINY_LABELS), tmp_path)


def test_a_header_only_manifest_stops_validate(root, tmp_path):
    (root / "metadata.csv").write_text(HEADER + "\n")
    with pytest.raises(ValidationError, match="no rows: the manifest has a header only"):
        _run(make_params(root, labels=TINY_LABELS), tmp_path)


def test_a_byte_order_mark_is_read_as_an_ordinary_manifest(root, tiny_rows, tmp_path):
    (root / "metadata.csv").write_text("\ufeff" + manifest_text(tiny_rows), encoding="utf-8")
    assert _run(make_params(root, labels=TINY_LABELS), tmp_path) == (GOOD, [])


def test_crlf_line_ends_are_read_as_an_ordinary_manifest(root, tiny_rows, tmp_path):
    (root / "metadata.csv").write_bytes(manifest_text(tiny_rows, newline="\r\n").encode())
    kept, rejects = _run(make_params(root, labels=TINY_LABELS), tmp_path)
    assert (kept, rejects) == (GOOD, [])
    assert "\r" not in (tmp_path / "artifacts" / "clean" / "manifest.csv").read_text()
