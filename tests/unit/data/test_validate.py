import json

import pytest
import yaml

from mmops import stages
from mmops.cli import main
from mmops.config import Layout, params_from_dict
from mmops.data.validate import ValidationError, validate_manifest
from tests.conftest import TINY_LABELS, modalities_of, raw_frame, repo_params, write_manifest


def _report(params):
    return validate_manifest(raw_frame(params), params.data, modalities_of(params))


def test_good_manifest_passes(tiny_params):
    report = _report(tiny_params)
    assert report.success and report.failures == [] and report.warnings == []


def test_the_same_data_gives_the_same_report_file(tiny_params, tmp_path):
    first, second = Layout(tmp_path / "a"), Layout(tmp_path / "b")
    stages.validate(tiny_params, first)
    stages.validate(tiny_params, second)
    assert first.validation.read_bytes() == second.validation.read_bytes()
    assert first.validation_report.read_bytes() == second.validation_report.read_bytes()


def test_missing_column_is_named(tiny_params, tiny_rows):
    write_manifest(tiny_params.data.manifest, tiny_rows, columns=["sample_id", "image", "label"])
    report = _report(tiny_params)
    assert not report.success
    assert report.failures == ["missing column 'text'"]


def test_unknown_label_names_line_and_value(tiny_params, tiny_rows):
    tiny_rows[1]["label"] = "Zoo"
    write_manifest(tiny_params.data.manifest, tiny_rows)
    report = _report(tiny_params)
    assert report.success  # a row problem: clean rejects the row, the run goes on
    assert report.warnings == ["line 3: label 'Zoo': value outside the configured set"]


def test_missing_image_file_names_line_and_file(tiny_params, tiny_rows):
    tiny_rows[2]["image"] = "images/gone.png"
    write_manifest(tiny_params.data.manifest, tiny_rows)
    assert _report(tiny_params).warnings == ["line 4: image 'images/gone.png': image file not found"]


def test_path_escaping_data_is_a_failure(tiny_params, tiny_rows):
    tiny_rows[0]["image"] = "../../etc/passwd"
    write_manifest(tiny_params.data.manifest, tiny_rows)
    [failure] = _report(tiny_params).warnings
    assert failure.startswith("line 2: image '../../etc/passwd'") and "escapes" in failure


def test_duplicate_ids_and_empty_text_are_reported(tiny_params, tiny_rows):
    tiny_rows[3]["sample_id"] = "s0"
    tiny_rows[4]["text"] = "   "
    write_manifest(tiny_params.data.manifest, tiny_rows)
    failures = _report(tiny_params).warnings
    assert "line 2: sample_id 's0': duplicated value" in failures
    assert "line 5: sample_id 's0': duplicated value" in failures
    assert "line 6: text '   ': empty text" in failures


def test_renamed_missing_column_is_named_as_the_manifest_calls_it(tmp_path, tiny_rows):
    rows = [{"id": r["sample_id"], "img": r["image"], "label": r["label"]} for r in tiny_rows]
    write_manifest(tmp_path / "data" / "metadata.csv", rows)
    raw = repo_params(data={"root": str(tmp_path / "data"), "manifest": str(tmp_path / "data" / "metadata.csv"),
                            "columns": {"id": "id", "label": "label"}, "labels": TINY_LABELS})
    raw["modalities"][0]["column"] = "img"
    raw["modalities"][1]["column"] = "caption"
    report = _report(params_from_dict(raw))
    assert report.failures == ["missing column 'caption'"]


def test_a_class_without_rows_stops_the_run_naming_it(tiny_params, tiny_rows):
    rows = [r for r in tiny_rows if r["label"] != "Flags"]
    write_manifest(tiny_params.data.manifest, rows)
    report = _report(tiny_params)
    assert not report.success
    assert report.failures == ["column 'label': no rows for the configured class(es) 'Flags' (params.yaml data.labels)"]


def test_a_header_only_manifest_stops_the_run(tiny_params, tiny_rows):
    tiny_params.data.manifest.write_text("sample_id,image,text,label\n")
    assert _report(tiny_params).failures == ["no rows: the manifest has a header only"]


def test_validate_stage_writes_result_and_goes_on_past_row_problems(tiny_params, tiny_rows, tmp_path):
    tiny_rows[1]["label"] = "Zoo"
    write_manifest(tiny_params.data.manifest, tiny_rows)
    layout = Layout(tmp_path / "artifacts")
    assert stages.validate(tiny_params, layout) == {"rows": 6, "success": True, "row_problems": 1,
                                                    "drifted": None}  # no reference: nothing trained yet
    written = json.loads(layout.validation.read_text())
    assert written["success"] is True
    [label_check] = [e for e in written["expectations"] if e["type"] == "expect_column_values_to_be_in_set"
                     and e["column"] == "label"]
    assert label_check == {"type": "expect_column_values_to_be_in_set", "column": "label", "success": False,
                           "severity": "warning", "arguments": {"value_set": TINY_LABELS}, "unexpected": 1}
    page = layout.validation_report.read_text()
    assert "passed" in page and "line 3: label &#x27;Zoo&#x27;" in page
    assert "<script" not in page and "http" not in page  # readable offline


def test_validate_stage_stops_on_a_manifest_problem_naming_it(tiny_params, tiny_rows, tmp_path):
    write_manifest(tiny_params.data.manifest, tiny_rows, columns=["sample_id", "image", "label"])
    layout = Layout(tmp_path / "artifacts")
    with pytest.raises(ValidationError, match="missing column 'text'"):
        stages.validate(tiny_params, layout)
    assert json.loads(layout.validation.read_text())["success"] is False
    assert "FAILED" in layout.validation_report.read_text()


def test_cli_exits_nonzero_naming_the_problem(tiny_params, tiny_rows, tmp_path, capsys):
    write_manifest(tiny_params.data.manifest, [r for r in tiny_rows if r["label"] != "Objects"])
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(tiny_params.to_dict()))
    code = main(["stage", "validate", "--params", str(params_file), "--artifacts", str(tmp_path / "a")])
    assert code == 1
    assert "no rows for the configured class(es) 'Objects'" in capsys.readouterr().err


def test_an_empty_value_of_an_optional_modality_passes(tiny_params, tiny_rows):
    import dataclasses

    tiny_rows[4]["text"] = ""
    write_manifest(tiny_params.data.manifest, tiny_rows)
    params = dataclasses.replace(tiny_params, modalities=tuple(
        dataclasses.replace(m, required=False) if m.name == "text" else m for m in tiny_params.modalities))
    assert _report(params).success
    assert _report(tiny_params).warnings == ["line 6: text '': empty text"]
