import itertools

import pytest

from au_llm.answers import ANSWER_FORMATS, decisions, parse_answer, target_answer
from au_llm.config import DATASET_AUS
from au_llm.data.facs import facs_table

CASME = DATASET_AUS["casme2"]


def _subsets(aus):
    for size in range(len(aus) + 1):
        yield from itertools.combinations(aus, size)


@pytest.mark.parametrize("fmt", ANSWER_FORMATS)
@pytest.mark.parametrize("style", ["casme2", "samm"])
def test_every_au_combination_round_trips(fmt, style):
    aus = DATASET_AUS[style]
    for present in _subsets(aus):  # every combination the synthetic plan can produce, and more
        text = target_answer(fmt, aus, present)
        parsed = parse_answer(fmt, aus, text)
        assert parsed.ok and parsed.present == frozenset(present), (fmt, present, text)


def test_json_answers_parse_with_any_spacing():
    aus = [1, 4, 12]
    spaced = '{"AU1": 1, "AU4": 0, "AU12": 1}'
    assert parse_answer("json", aus, spaced).present == frozenset({1, 12})
    assert parse_answer("json", aus, target_answer("json", aus, [1, 12])).present == {1, 12}


def test_target_strings_look_as_documented():
    aus = [1, 4, 12]
    assert target_answer("list", aus, [12, 1]) == "AU1, AU12"
    assert target_answer("list", aus, []) == "none"
    assert target_answer("yesno", aus, [4]) == "AU1: no; AU4: yes; AU12: no"
    assert target_answer("json", aus, [1]) == '{"AU1":1,"AU4":0,"AU12":0}'
    assert target_answer("names", aus, [1, 4]) == "inner brow raiser, brow lowerer"


@pytest.mark.parametrize(
    ("fmt", "text", "reason"),
    [
        ("list", "AU1, AU3", "unknown AU 'AU3'"),
        ("list", "AU1, AU1", "given twice"),
        ("list", "AU1 and AU4", "unknown AU"),
        ("list", "", "unknown AU ''"),
        ("yesno", "AU1: yes; AU4: no", "one answer per AU"),
        ("yesno", "AU1: yes; AU4: maybe; AU12: no", "expected 'AUn: yes|no"),
        ("json", '{"AU1": 1, "AU4": 0}', "expected the keys"),
        ("json", '{"AU1": 1, "AU4": 2, "AU12": 0}', "values 0 or 1"),
        ("json", "AU1: 1", "not JSON"),
        ("names", "brow lowerer, smile", "unknown name 'smile'"),
    ],
)
def test_malformed_answers_do_not_parse(fmt, text, reason):
    parsed = parse_answer(fmt, [1, 4, 12], text)
    assert not parsed.ok and reason in parsed.error
    assert decisions([parsed], [1, 4, 12]) == [[0, 0, 0]]


def test_whitespace_and_case_of_names_are_tolerated_but_not_extra_words():
    assert parse_answer("names", [1, 4], "  Brow Lowerer \n").present == frozenset({4})
    assert parse_answer("list", [1, 4], " AU4 ,AU1 ").present == frozenset({1, 4})
    assert not parse_answer("list", [1, 4], "AU4.").ok


def test_facs_table_covers_every_published_au_once():
    table = facs_table()
    for aus in DATASET_AUS.values():
        assert set(aus) <= set(table)
    assert table[4].muscle.startswith("corrugator supercilii")
