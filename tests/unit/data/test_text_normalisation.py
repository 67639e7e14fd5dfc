"""One text normalisation, applied by `clean` (what the features see) and by serving alike:
NFKC, control characters dropped, whitespace collapsed."""

import pytest

from mmops.modalities import build_modalities
from mmops.modalities.text import TextModality, normalise_text
from tests.conftest import write_manifest
from tests.unit.data.test_clean import _clean


@pytest.mark.parametrize(("raw", "normalised"), [
    ("ｇｒｉｎｎｉｎｇ　ｆａｃｅ", "grinning face"),  # full-width letters and space
    ("\ufb01re engine", "fire engine"),  # a compatibility ligature
    ("  red\tapple\n\x00pie\x07  ", "red apple pie"),  # tabs, line breaks, NUL, BEL
    ("caf\u0065\u0301", "caf\u00e9"),  # a combining accent composed
    ("woman\u200dcook", "woman\u200dcook"),  # a zero-width joiner is not a control character: kept
])
def test_text_is_normalised_to_one_canonical_form(raw, normalised):
    assert normalise_text(raw) == normalised


def test_clean_keeps_the_normalised_text_and_rejects_one_with_nothing_left(tiny_params, tiny_rows):
    tiny_rows[0]["text"] = "ＲＥＤ\tapple \x00"
    tiny_rows[1]["text"] = "\x00\x01\x7f"
    write_manifest(tiny_params.data.manifest, tiny_rows)
    kept, rejects = _clean(tiny_params)
    assert kept.loc[kept["sample_id"] == "s0", "text"].item() == "RED apple"
    assert dict(zip(rejects["sample_id"], rejects["reason"])) == {"s1": "empty text"}


def test_serving_reads_a_request_text_through_the_same_function(tiny_params):
    [text] = [m for m in build_modalities(tiny_params.modalities) if isinstance(m, TextModality)]
    raw = "  ＲＥＤ\tapple \x00"
    assert text.from_request(raw) == normalise_text(raw) == text.normalise(raw) == "RED apple"
    assert text.from_request("\x00\x07") is None  # nothing left: the modality is absent
