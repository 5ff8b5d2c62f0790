import itertools
import re
from pathlib import Path

import pytest

import au_llm.data
from au_llm.data.au_codes import AUMark, parse_au_cell
from au_llm.data.facs import facs_table
from au_llm.explain import (
    annotation_marks,
    contradicted_sides,
    describe,
    describe_clip,
    load_phrasings,
    parse_explanation,
    parse_phrasings,
)

# Every AU cell of datasets.md (CASME II and SAMM), with the AU sets the coding rules give.
DATASETS_MD_CELLS = [
    12, "4+7+L10", "1+L2", "L2+26+38", "R1+R2", "4+R10", "R4+R10", "4+9+L10+14", "1+2+5+7",
    "L7+L10", "4+7", "4+7+43", "15A+17", "L20+21", "(R6 or R12)+R15", "(R6 or R12) + R15",
    "R6A+R12", "ref(7B)+43", "ref(7B)+43C", "7B+ ref(43)", "10A/B", "ref(L10)+A12B",
    "ref(5)+20C+25+26", "12A+ref(24)", "A/L12", "L12 or L14", "R12 or R14", "A9E+ref(10)",
    "1A+2B+L14C", "B18+25", "T18+39", "4+13+T18+39", "4D+ref(6)+7C+43E", "R14+17+soft focus",
    "4A/B", "12+15 ", "R14A or 17A or 24A", "T23", 7,
]  # fmt: skip
# Alternatives resolved by MEB's errata (datasets.md): raw cell, erratum AUs, expected sides.
ERRATA = [
    ("(R6 or R12)+R15", "R12+R15", {12: {"R"}, 15: {"R"}}),
    ("L12 or L14", "L14", {14: {"L"}}),
    ("R12 or R14", "R14", {14: {"R"}}),
    ("R14A or 17A or 24A", "R14A", {14: {"R"}}),
]


def resources_text() -> str:
    return (Path(au_llm.data.__file__).parent / "explain_phrasings.csv").read_text()


SENTENCE = re.compile(r"^[A-Z][^{}]*[.]$")


def _aus(cell, resolved=None):
    return parse_au_cell(cell, resolved).aus


@pytest.mark.parametrize("cell", DATASETS_MD_CELLS)
def test_targets_are_well_formed_and_name_exactly_the_annotated_aus(cell):
    aus = _aus(cell)
    marks = annotation_marks(cell, "+".join(map(str, aus)))
    assert sorted(marks) == sorted(aus)
    for seed in range(12):
        for emotion in ("", "disgust", "Others"):
            text = describe(marks, emotion, [seed])
            assert SENTENCE.match(text), text
            assert "  " not in text and ".." not in text
            assert parse_explanation(text).aus == frozenset(aus), text
            assert emotion.lower() in text.split(". ")[-1]
            assert text.startswith(f"AU{min(aus)},") if aus else "AU" not in text


def test_sides_and_intensities_of_datasets_md_notations_reach_the_text():
    marks = annotation_marks("4D+ref(6)+7C+43E", "4+6+7+43")
    assert marks[4] == AUMark(4, "", "D") and marks[6] == AUMark(6, "", "")
    text = describe(marks, "", [0])
    assert "severe" in text and "maximum" in text and "(D)" in text or "intensity D" in text
    assert annotation_marks("A/L12", "12")[12].sides == "AL"
    assert annotation_marks("10A/B", "10")[10].intensity == "A/B"
    assert "trace to slight" in describe(annotation_marks("10A/B", "10"), "", [0])
    left = describe(annotation_marks("L12", "12"), "", [0])
    assert parse_explanation(left).sides == {12: frozenset({"L"})}
    right = describe(annotation_marks("(R6 or R12)+R15", "12+15"), "", [3])
    assert parse_explanation(right).sides == {12: frozenset({"R"}), 15: frozenset({"R"})}
    both = describe(annotation_marks("L12+R12", "12"), "", [0])
    assert parse_explanation(both).sides == {}  # left and right together: bilateral


@pytest.mark.parametrize(("cell", "erratum", "sides"), ERRATA)
def test_errata_resolutions_keep_the_resolved_aus_and_their_sides(cell, erratum, sides):
    aus = _aus(cell, erratum)
    marks = annotation_marks(cell, "+".join(map(str, aus)))
    parsed = parse_explanation(describe(marks, "", [1]))
    assert parsed.aus == frozenset(aus)
    assert parsed.sides == {au: frozenset(s) for au, s in sides.items()}


def test_the_parser_recovers_the_aus_from_every_phrasing_combination():
    phrasings = load_phrasings()
    table = facs_table()
    entry = table[12]
    combos = itertools.product(
        phrasings["local"][""],
        [p for options in phrasings["side"].values() for p in options] + [""],
        phrasings["intensity"][""],
    )
    for local, side, intensity in combos:
        clause = local.format(
            au=12,
            name=entry.name,
            muscle=entry.muscle,
            movement=entry.movement,
            side=side,
            intensity=intensity.format(word="trace", letters="A"),
        )
        parsed = parse_explanation(f"Some global sentence. {clause}. AU4: more.")
        assert parsed.aus == {12, 4}
        said = parsed.sides.get(12, frozenset())
        expected = {"L"} if "left" in side else {"R"} if "right" in side else set()
        assert said == expected, clause
    for part in ("global", "global_none"):
        for template in phrasings[part][""]:
            for emotion in phrasings["emotion"][""]:
                text = template.format(
                    regions="upper face", count="two", units="action units", emotion=emotion
                )
                assert parse_explanation(text).aus == frozenset()


def test_every_phrasing_is_drawn_for_some_seed():
    marks = annotation_marks("L12+4C", "4+12")
    texts = {describe(marks, "fear", [seed]) for seed in range(200)}
    for template in load_phrasings()["global"][""]:
        opening = template.split("{")[0]
        assert any(f". {opening}" in text for text in texts), opening


def test_descriptions_are_deterministic_and_vary_with_the_variant():
    row = {
        "dataset": "casme2",
        "subject": "sub01",
        "clip": "EP01",
        "au_raw": "4+L12",
        "aus": "4+12",
    }
    assert describe_clip(row, 3) == describe_clip(dict(row), 3)
    assert len({describe_clip(row, step) for step in range(30)}) > 3
    assert parse_explanation(describe_clip({**row, "au_raw": ""}, 0)).aus == {4, 12}


def test_an_au_outside_the_facs_table_is_still_named():
    marks = {31: AUMark(31, "L", "")}
    text = describe(marks, "", [0])
    assert parse_explanation(text).aus == {31}
    assert parse_explanation(text).sides == {31: frozenset({"L"})}


def test_side_contradictions_on_hand_made_cases():
    marks = annotation_marks("L12+4+A14+R15+A/L20", "4+12+14+15+20")
    said = parse_explanation(
        "x. AU12 on the right side. AU4 on the left side. AU14 on the left side. "
        "AU15 on the right side. AU20 on the left side. AU7 on the left side."
    )
    # 12: coded left, said right; 4: coded bilateral, said left. 14 (asymmetric), 15 and 20
    # agree; 7 is not annotated (a wrong AU, not a wrong side).
    assert contradicted_sides(said, marks) == [4, 12]
    assert contradicted_sides(parse_explanation("AU12 and AU4."), marks) == []


def test_a_phrasing_table_that_would_mislead_the_parser_is_refused():
    header = "part,key,text\n"
    shipped = "\n".join(
        line for line in resources_text().splitlines()[1:] if not line.startswith("region,upper,")
    )
    assert parse_phrasings(header + shipped + "\nregion,upper,upper face") == load_phrasings()
    with pytest.raises(ValueError, match="says a side"):
        parse_phrasings(header + shipped + "\nregion,upper,left brow")
    with pytest.raises(ValueError, match="names an AU"):
        parse_phrasings(header + shipped + "\nregion,upper,AU4 area")
    with pytest.raises(ValueError, match="no phrasing for part 'region', key 'upper'"):
        parse_phrasings(header + shipped)
