import logging

import pytest

from au_llm.data import errata as errata_module
from au_llm.data.errata import (
    DEFAULT_ERRATA_PATHS,
    ERRATA_COLUMNS,
    OLD_ALTERNATIVES,
    OLD_INVALID,
    Errata,
    ErrataError,
    Erratum,
    load_errata,
)

HEADER = ",".join(ERRATA_COLUMNS)


def test_repository_errata_name_their_clip_and_the_value_they_replace():
    errata = load_errata(DEFAULT_ERRATA_PATHS[0])
    expected = {
        ("samm", "028", "028_4_1", "apex"): (OLD_INVALID, "1105"),
        ("samm", "032", "032_3_1", "apex"): (OLD_INVALID, "4945"),
        ("samm", "032", "032_3_2", "apex"): (OLD_INVALID, "5130"),
        ("samm", "013", "013_1_9", "offset"): (OLD_INVALID, "5739"),
        ("samm", "007", "007_6_1", "aus"): (OLD_ALTERNATIVES, "R12+R15"),
        ("samm", "007", "007_6_5", "aus"): (OLD_ALTERNATIVES, "R12+R15"),
        ("samm", "011", "011_4_2", "aus"): (OLD_ALTERNATIVES, "L14"),
        ("samm", "014", "014_5_2", "aus"): (OLD_ALTERNATIVES, "R14"),
        ("samm", "035", "035_7_2", "aus"): (OLD_ALTERNATIVES, "R14A"),
        ("casme2", "sub04", "EP12_01f", "apex"): ("/", "279"),
    }
    found = {(e.dataset, e.subject, e.filename, e.field): (e.old, e.value) for e in errata.entries}
    assert found == expected
    assert all(entry.source and entry.named for entry in errata.entries)


def test_meb_row_corrections_stay_unapplied_until_their_clip_is_named():
    """MEB keys these by row index only: no clip, no old value, never applied (see the file)."""
    errata = load_errata(DEFAULT_ERRATA_PATHS[1])
    assert not any(entry.named for entry in errata.entries)
    per_dataset = {name: len(errata.of_dataset(name)) for name in ("casme", "casme3", "mmew")}
    assert per_dataset == {"casme": 11, "casme3": 7, "mmew": 32}
    rows = {entry.row for entry in errata.of_dataset("casme3")}
    assert rows == {130, 710, 751, 752, 798, 800}
    swap = errata.of_dataset("4dme")
    assert [(entry.row, entry.field, entry.value) for entry in swap] == [
        (146, "aus", ""),
        (147, "aus", ""),
    ]
    assert all("not established" in entry.note for entry in errata.entries)


def test_default_errata_are_both_tables(tmp_path, monkeypatch, caplog):
    assert len(load_errata()) == sum(len(load_errata(p)) for p in DEFAULT_ERRATA_PATHS)
    monkeypatch.setattr(
        errata_module, "DEFAULT_ERRATA_PATHS", (DEFAULT_ERRATA_PATHS[0], tmp_path / "absent.csv")
    )
    with caplog.at_level(logging.WARNING, logger="au_llm.data.errata"):
        errata = load_errata()
    assert len(errata) == len(load_errata(DEFAULT_ERRATA_PATHS[0]))
    assert "absent.csv" in caplog.text


def test_explicit_missing_file_raises(tmp_path):
    with pytest.raises(ErrataError, match="nope.csv"):
        load_errata(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("samm,006,006_1_2,duration,1,5,x,,", r"row 3: field 'duration' is not one of"),
        ("samm,006,006_1_2,apex,3,5/6,x,,", r"row 3: apex value '5/6' is not a frame number"),
        ("samm,006,006_1_2,aus,4,R12 or R14,x,,", r"row 3: aus value 'R12 or R14'"),
        ("samm,,006_1_2,apex,3,5,x,,", r"row 3: column 'subject' is empty"),
        ("samm,006,006_1_2,apex,,5,x,,", r"row 3: column 'old' is empty"),
        ("samm,006,006_1_2,aus,<invalid>,12,x,,", r"row 3: old <invalid> applies to onset"),
        ("samm,006,006_1_2,apex,<alternatives>,5,x,,", r"row 3: old <alternatives> applies"),
        ("samm,006,006_1_2,apex,3,,x,,", r"row 3: column 'value' is empty"),
        ("samm,,,apex,,5,x,,", r"row 3: the erratum names no clip .* and no row"),
        ("samm,,,apex,,5,x,,1", r"row 3: row '1' is not a data row number"),
        ("samm,007,007_6_1,apex,3,9,x,,", r"errata.csv row 3: .*listed again .*errata.csv row 2"),
    ],
)
def test_invalid_rows_name_file_and_row(tmp_path, line, message):
    path = tmp_path / "errata.csv"
    path.write_text(f"{HEADER}\nsamm,007,007_6_1,apex,3,5,src,,\n{line}\n")
    with pytest.raises(ErrataError, match=message):
        load_errata(path)


def test_the_same_value_of_two_clips_of_one_recording_is_two_errata(tmp_path):
    """CAS(ME)^3 clips share a Filename: the value each replaces tells them apart."""
    path = tmp_path / "errata.csv"
    path.write_text(f"{HEADER}\ncasme3,spNO.1,a,onset,10,11,x,,\ncasme3,spNO.1,a,onset,30,31,x,,\n")
    assert [entry.old for entry in load_errata(path).entries] == ["10", "30"]


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "errata.csv"
    path.write_text("dataset,subject,filename,field,value\nsamm,007,007_6_1,apex,5\n")
    with pytest.raises(ErrataError, match="missing column 'old'"):
        load_errata(path)


def test_custom_table_without_optional_columns(tmp_path):
    path = tmp_path / "errata.csv"
    path.write_text("dataset,subject,filename,field,old,value\nSAMM,007,007_6_1,apex,/,5\n\n")
    errata = load_errata(path)
    assert errata.entries == (
        Erratum("samm", "007", "007_6_1", "apex", "/", "5", table="errata.csv", line=2),
    )
    assert errata.paths == (path,)
    assert len(Errata.empty()) == 0


def test_an_exact_old_value_accepts_only_that_cell():
    onset = Erratum("casme", "sub01", "EP01_5", "onset", "98", "100")
    assert onset.accepts(98) and onset.accepts(98.0) and onset.accepts(" 98 ")
    assert not onset.accepts(99) and not onset.accepts(None) and not onset.accepts("98?")
    aus = Erratum("4dme", "S022", "S022_01", "aus", "AU4+AU15", "AU7")
    assert aus.accepts("AU4+AU15 ") and not aus.accepts("AU4+AU15+AU7")
    assert Erratum("samm", "028", "028_4_1", "apex", OLD_INVALID, "1105").accepts(2000)
