import logging

import pytest

from au_llm.data import errata as errata_module
from au_llm.data.errata import ERRATA_COLUMNS, Errata, ErrataError, Erratum, load_errata

HEADER = ",".join(ERRATA_COLUMNS)


def test_repository_errata_hold_the_known_fixes():
    errata = load_errata()
    expected = {
        ("samm", "028", "028_4_1", "apex"): "1105",
        ("samm", "032", "032_3_1", "apex"): "4945",
        ("samm", "032", "032_3_2", "apex"): "5130",
        ("samm", "013", "013_1_9", "offset"): "5739",
        ("samm", "007", "007_6_1", "aus"): "R12+R15",
        ("samm", "007", "007_6_5", "aus"): "R12+R15",
        ("samm", "011", "011_4_2", "aus"): "L14",
        ("samm", "014", "014_5_2", "aus"): "R14",
        ("samm", "035", "035_7_2", "aus"): "R14A",
        ("casme2", "sub04", "EP12_01f", "apex"): "279",
    }
    assert {key: entry.value for key, entry in errata.entries.items()} == expected
    assert errata.get("SAMM", "028", "028_4_1", "apex").frame == 1105
    assert errata.get("samm", "028", "028_4_1", "offset") is None
    assert all(entry.source for entry in errata.entries.values())


def test_missing_default_file_loads_nothing_and_warns(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(errata_module, "DEFAULT_ERRATA_PATH", tmp_path / "absent.csv")
    with caplog.at_level(logging.WARNING, logger="au_llm.data.errata"):
        errata = load_errata()
    assert len(errata) == 0
    assert "absent.csv" in caplog.text


def test_explicit_missing_file_raises(tmp_path):
    with pytest.raises(ErrataError, match="nope.csv"):
        load_errata(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("samm,006,006_1_2,duration,5,x,", r"row 3: field 'duration' is not one of"),
        ("samm,006,006_1_2,apex,5/6,x,", r"row 3: apex value '5/6' is not a frame number"),
        ("samm,006,006_1_2,aus,R12 or R14,x,", r"row 3: aus value 'R12 or R14'"),
        ("samm,,006_1_2,apex,5,x,", r"row 3: column 'subject' is empty"),
        ("samm,007,007_6_1,apex,9,x,", r"007_6_1/apex is listed twice"),
    ],
)
def test_invalid_rows_name_file_and_row(tmp_path, line, message):
    path = tmp_path / "errata.csv"
    path.write_text(f"{HEADER}\nsamm,007,007_6_1,apex,5,src,\n{line}\n")
    with pytest.raises(ErrataError, match=message):
        load_errata(path)


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "errata.csv"
    path.write_text("dataset,subject,clip,value\nsamm,007,007_6_1,5\n")
    with pytest.raises(ErrataError, match="missing column 'field'"):
        load_errata(path)


def test_custom_table_without_optional_columns(tmp_path):
    path = tmp_path / "errata.csv"
    path.write_text("dataset,subject,clip,field,value\nSAMM,007,007_6_1,apex,5\n\n")
    errata = load_errata(path)
    assert errata.get("samm", "007", "007_6_1", "apex") == Erratum(
        "samm", "007", "007_6_1", "apex", "5"
    )
    assert errata.path == path
    assert len(Errata.empty()) == 0
