import math

import numpy as np
import pytest

from au_llm.data.au_codes import au_marks, cell_text, format_aus, parse_au_cell, parse_aus

# Every real example of datasets.md, with the AU set a FACS coder reads.
CASME2_EXAMPLES = [
    ("4+7+L10", {4, 7, 10}),
    ("1+L2", {1, 2}),
    ("L2+26+38", {2, 26, 38}),
    ("R1+R2", {1, 2}),
    ("4+R10", {4, 10}),
    ("R4+R10", {4, 10}),
    ("4+9+L10+14", {4, 9, 10, 14}),
    ("1+2+5+7", {1, 2, 5, 7}),
    ("L7+L10", {7, 10}),
    (12, {12}),
]
SAMM_PLAIN_EXAMPLES = [
    ("4+7", {4, 7}),
    ("4+7+43", {4, 7, 43}),
    ("15A+17", {15, 17}),
    ("L20+21", {20, 21}),
    ("R6A+R12", {6, 12}),
    ("ref(7B)+43", {7, 43}),
    ("ref(7B)+43C", {7, 43}),
    ("7B+ ref(43)", {7, 43}),
    ("10A/B", {10}),
    ("ref(L10)+A12B", {10, 12}),
    ("ref(5)+20C+25+26", {5, 20, 25, 26}),
    ("12A+ref(24)", {12, 24}),
    ("A/L12", {12}),
    ("A9E+ref(10)", {9, 10}),
    ("1A+2B+L14C", {1, 2, 14}),
    ("B18+25", {18, 25}),
    ("T18+39", {18, 39}),
    ("4+13+T18+39", {4, 13, 18, 39}),
    ("4D+ref(6)+7C+43E", {4, 6, 7, 43}),
    ("4A/B", {4}),
    ("12+15 ", {12, 15}),
    ("T23", {23}),
    (7, {7}),
    (12.0, {12}),
]
# Alternatives: the first one is kept (without an erratum) and a note says so.
SAMM_ALTERNATIVE_EXAMPLES = [
    ("(R6 or R12)+R15", {6, 15}, "(R6 or R12)", 6),
    ("(R6 or R12) + R15", {6, 15}, "(R6 or R12)", 6),
    ("L12 or L14", {12}, "L12 or L14", 12),
    ("R12 or R14", {12}, "R12 or R14", 12),
    ("R14A or 17A or 24A", {14}, "R14A or 17A or 24A", 14),
]


@pytest.mark.parametrize(("cell", "expected"), CASME2_EXAMPLES + SAMM_PLAIN_EXAMPLES)
def test_real_examples_read_as_a_coder_would(cell, expected):
    parsed = parse_au_cell(cell)
    assert set(parsed.aus) == expected
    assert parsed.aus == tuple(sorted(expected))
    assert parsed.warnings == ()
    assert not parsed.has_alternatives


@pytest.mark.parametrize(("cell", "expected", "part", "first"), SAMM_ALTERNATIVE_EXAMPLES)
def test_alternatives_keep_the_first_with_a_note(cell, expected, part, first):
    parsed = parse_au_cell(cell)
    assert set(parsed.aus) == expected
    assert parsed.has_alternatives
    note = f"alternative {part!r} resolved to first ({first})"
    assert note in parsed.notes
    assert note in parsed.warnings


def test_alternatives_are_not_concatenated_digits():
    assert 1214 not in parse_au_cell("L12 or L14").aus
    assert parse_au_cell("12/14").aus == (12,)
    assert parse_au_cell("12/14").has_alternatives


def test_part_without_au_number_is_dropped_with_a_note():
    parsed = parse_au_cell("R14+17+soft focus")
    assert parsed.aus == (14, 17)
    assert "part 'soft focus' has no AU number, dropped" in parsed.notes
    assert parsed.warnings


@pytest.mark.parametrize("cell", [None, float("nan"), np.nan, "", "   "])
def test_empty_cells_give_no_aus_and_a_note(cell):
    parsed = parse_au_cell(cell)
    assert parsed.aus == ()
    assert parsed.notes == ("no AU code (empty cell)",)
    assert parsed.warnings == parsed.notes


def test_erratum_resolves_alternatives():
    parsed = parse_au_cell("(R6 or R12)+R15", resolved="R12+R15")
    assert parsed.aus == (12, 15)
    assert parsed.resolved_by_erratum
    assert parsed.warnings == ()
    assert "resolved by erratum to 'R12+R15'" in parsed.notes[0]
    assert parse_au_cell("L12 or L14", resolved="L14").aus == (14,)
    assert parse_au_cell("R14A or 17A or 24A", resolved="R14A").aus == (14,)


def test_erratum_is_ignored_when_the_cell_has_no_alternative():
    parsed = parse_au_cell("4+7", resolved="R12+R15")
    assert parsed.aus == (4, 7)
    assert not parsed.resolved_by_erratum
    assert any("not applied" in note for note in parsed.notes)
    assert parsed.warnings == ()


def test_same_au_on_both_sides_is_not_an_alternative():
    parsed = parse_au_cell("L12 or R12")
    assert parsed.aus == (12,)
    assert not parsed.has_alternatives
    assert parsed.warnings == ()


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("1214", ()), ("0", ()), ("12?", (12,)), ("AU1+AU2", (1, 2)), ("ref(7B+43)", (7, 43))],
)
def test_unusual_parts_are_read_or_dropped_with_a_warning(cell, expected):
    parsed = parse_au_cell(cell)
    assert parsed.aus == expected
    if cell in ("1214", "0", "12?"):
        assert parsed.warnings


def test_cell_text_keeps_strings_and_writes_ints_plainly():
    assert cell_text(12) == "12"
    assert cell_text(12.0) == "12"
    assert cell_text(np.int64(7)) == "7"
    assert cell_text("12+15 ") == "12+15 "
    assert cell_text(None) == ""
    assert cell_text(math.nan) == ""


def test_format_and_parse_aus_are_inverse():
    assert format_aus([10, 4, 7, 4]) == "4+7+10"
    assert format_aus([]) == ""
    assert parse_aus("4+7+10") == (4, 7, 10)
    assert parse_aus(format_aus([14, 2])) == (2, 14)
    assert parse_aus("") == ()
    assert parse_aus(float("nan")) == ()
    assert parse_aus(None) == ()
    assert parse_aus(12) == (12,)


def test_parse_aus_rejects_non_canonical_text():
    with pytest.raises(ValueError, match="'L12' is not a canonical AU list"):
        parse_aus("L12")


@pytest.mark.parametrize(
    ("cell", "aus", "expected"),
    [
        ("4+7+L10", (4, 7, 10), {4: ("", ""), 7: ("", ""), 10: ("L", "")}),
        ("R6A+R12", (6, 12), {6: ("R", "A"), 12: ("R", "")}),
        ("ref(7B)+43C", (7, 43), {7: ("", "B"), 43: ("", "C")}),
        ("ref(L10)+A12B", (10, 12), {10: ("L", ""), 12: ("A", "B")}),
        ("A/L12", (12,), {12: ("AL", "")}),
        ("10A/B", (10,), {10: ("", "A/B")}),
        ("B18+25", (18, 25), {18: ("B", ""), 25: ("", "")}),
        ("(R6 or R12)+R15", (12, 15), {12: ("R", ""), 15: ("R", "")}),
        ("L12 or L14", (14,), {14: ("L", "")}),
        ("L12+R12", (12,), {12: ("LR", "")}),
        (12, (12,), {12: ("", "")}),
        ("", (4,), {4: ("", "")}),
    ],
)
def test_au_marks_read_side_and_intensity_of_the_clip_aus(cell, aus, expected):
    marks = au_marks(cell, aus)
    assert {au: (m.sides, m.intensity) for au, m in marks.items()} == expected


@pytest.mark.parametrize("cell", ["150", "0", "3", "4+47", "AU99", "150?"])
def test_numbers_that_facs_does_not_define_are_dropped_with_a_warning(cell):
    parsed = parse_au_cell(cell)
    assert parsed.aus == ((4,) if cell == "4+47" else ())
    assert any("not a FACS AU code" in warning for warning in parsed.warnings), parsed.warnings


def test_the_canonical_column_refuses_numbers_that_facs_does_not_define():
    assert parse_aus("1+2+4+46+58+74+98") == (1, 2, 4, 46, 58, 74, 98)
    for text in ("0", "150", "12+3"):
        with pytest.raises(ValueError, match="is not a FACS AU code"):
            parse_aus(text)
