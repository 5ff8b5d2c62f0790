"""The CASME, CAS(ME)^3 Part A, MMEW and 4DME builders on small trees in their real layouts."""

from __future__ import annotations

from pathlib import Path

import pytest
from openpyxl import Workbook

from au_llm.data.build import build_manifest
from au_llm.data.errata import ERRATA_COLUMNS, Errata, load_errata
from au_llm.data.manifest import ManifestError, read_manifest, write_manifest
from tests.data.helpers import build, by_clip, skipped_by_clip, write_frames

CASME3_HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class"]
CASME3_HEADER += ["emotion"]
CASME_HEADER = ["Subject", "Filename", None, "OnsetF", "ApexF1", "ApexF2", "OffsetF", None]
CASME_HEADER += ["AU", "Emotion"]
FOURD_HEADER = ["sub_ID", "fold_name", "Emotion", "Onset", "Apex", "Offset", "AUs"]
MMEW_HEADER = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units"]
MMEW_HEADER += ["Estimated Emotion", "remarks"]


def _xlsx(path: Path, header: list[object], rows: list[list[object]], title: str = "Sheet1"):
    book = Workbook()
    sheet = book.active
    sheet.title = title
    for row in [header, *rows]:
        sheet.append(row)
    book.save(path)
    return path


def _errata(path: Path, lines: list[str]) -> Errata:
    path.write_text(",".join(ERRATA_COLUMNS) + "\n" + "\n".join(lines) + "\n")
    return load_errata(path)


def test_casme3_clips_sharing_a_recording_get_distinct_ids(tmp_path: Path) -> None:
    root = tmp_path / "ME_A"
    write_frames(root / "spNO.1" / "a" / "color", range(1, 60), lambda k: f"{k}.jpg")
    write_frames(root / "spNO.2" / "a" / "color", range(5, 12), lambda k: f"{k}.jpg")
    rows = [
        ["spNO.1", "a", 10, 12, 15, "R12", 1, "happy"],
        ["spNO.1", "a", 30, 33, 36, "26+25", 7, "others"],
        ["spNO.1", "a", 30, 33, 36, "26+25", 7, "others"],
        ["spNO.1", "a", 50, 52, 55, 5, 7, "surprise"],
        ["spNO.2", "a", 5, 7, 11, "L2", 2, "surprise"],
    ]
    coding = _xlsx(tmp_path / "label.xlsx", CASME3_HEADER, rows, title="label")
    result = build("casme3", root, coding, errata=Errata.empty())
    clips = result.frame[["subject", "clip", "onset", "aus"]].values.tolist()
    assert clips == [
        ["spNO.1", "a", 10, "12"],
        ["spNO.1", "a2", 30, "25+26"],
        ["spNO.1", "a3", 50, "5"],
        ["spNO.2", "a", 5, "2"],
    ]
    assert [item.row for item in result.skipped] == [4]
    assert "listed again (first at row 3)" in result.skipped[0].reason
    assert set(result.frame["frames_dir"]) == {
        str((root / "spNO.1" / "a" / "color").resolve()),
        str((root / "spNO.2" / "a" / "color").resolve()),
    }
    assert (result.frame["fps"] == 30.0).all()
    out = tmp_path / "m.csv"
    write_manifest(result.frame, out)
    assert read_manifest(out)["clip"].tolist() == ["a", "a2", "a3", "a"]


def test_casme3_prefers_the_extracted_folder_of_a_repeated_clip(tmp_path: Path) -> None:
    """MEB's extracted layout gives the second clip of recording ``a`` its own folder ``a2``."""
    root = tmp_path / "ME_A"
    write_frames(root / "spNO.3" / "a" / "color", range(1, 6), lambda k: f"{k}.jpg")
    write_frames(root / "spNO.3" / "a2" / "color", range(40, 46), lambda k: f"{k}.jpg")
    rows = [["spNO.3", "a", 1, 2, 5, 4, 3, "d"], ["spNO.3", "a", 40, 42, 45, 4, 3, "d"]]
    coding = _xlsx(tmp_path / "label.xlsx", CASME3_HEADER, rows, title="label")
    frame = build("casme3", root, coding, errata=Errata.empty()).frame
    assert Path(frame["frames_dir"].iloc[1]).parent.name == "a2"


def _casme_tree(tmp_path: Path, rows: list[list[object]]) -> tuple[Path, Path]:
    root = tmp_path / "CASME_raw_selected"
    for row in rows:
        write_frames(root / f"sub{row[0]:02d}" / row[1], range(1, 160))
    return root, _xlsx(tmp_path / "casme.xlsx", CASME_HEADER, rows)


def test_an_erratum_applies_only_where_its_clip_and_old_value_match(tmp_path: Path) -> None:
    root, coding = _casme_tree(
        tmp_path,
        [
            [1, "EP01_5", None, 100, 300, None, 99, None, "4+9", "disgust"],
            [2, "EP03_2", None, 10, 12, None, 19, None, 14, "tense"],
        ],
    )
    errata = _errata(
        tmp_path / "errata.csv",
        [
            "casme,sub01,EP01_5,offset,99,149,MEB benchmark,offset from the image folder,",
            "casme,sub01,EP01_5,apex,300,120,MEB benchmark,middle frame,",
            "casme,sub02,EP03_2,offset,18,17,MEB benchmark,written for another revision,",
            "casme,sub09,EP09_9,onset,5,6,MEB benchmark,a clip this file does not hold,",
        ],
    )
    result = build("casme", root, coding, errata=errata)
    clips = by_clip(result.frame)
    first = clips["EP01_5"]
    assert (first["onset"], first["apex"], first["offset"]) == (100, 120, 149)
    assert "offset '99' replaced by 149 (erratum errata.csv row 2, MEB benchmark)" in first["notes"]
    assert clips["EP03_2"]["offset"] == 19
    assert (result.errata_applied, result.errata_skipped) == (2, 2)
    assert result.errata_lines == [
        "errata.csv row 4: casme sub02/EP03_2 offset '18' -> 17: expects offset '18', the file "
        "has '19' (row 3)",
        "errata.csv row 5: casme sub09/EP09_9 onset '5' -> 6: no clip sub09/EP09_9 in this file",
    ]
    assert "errata: 2 applied, 2 skipped" in result.summary()
    assert (result.frame["fps"] == 60.0).all()


def test_a_resorted_sheet_never_takes_another_clips_erratum(tmp_path: Path) -> None:
    """A sheet sorted by its user: MEB's rows hold other clips, which keep their own labels."""
    root = tmp_path / "gray_micro"
    rows = []
    for index in range(2, 150):
        subject, name = f"S{index + 500}", f"S{index + 500}_01"
        cell = "AU12"
        if index == 146:
            subject, name, cell = "S022", "S022_01", "AU4+AU15"
        write_frames(root / subject / name, range(1, 9), lambda k: f"{k}.jpg")
        rows.append([subject, name, "Negative", 1, 4, 8, cell])
    coding = _xlsx(tmp_path / "4dme.xlsx", FOURD_HEADER, rows)
    result = build("4dme", root, coding)
    assert by_clip(result.frame)["S022_01"]["aus"] == "4+15"
    assert (result.errata_applied, result.errata_skipped) == (0, 2)
    assert result.errata_lines == [
        "errata_rows.csv row 52: row 146 (aus -> ?) names no clip, so it is never applied; "
        "row 146 of this file holds S022/S022_01 with aus 'AU4+AU15'",
        "errata_rows.csv row 53: row 147 (aus -> ?) names no clip, so it is never applied; "
        "row 147 of this file holds S647/S647_01 with aus 'AU12'",
    ]
    assert "errata: 0 applied, 2 skipped" in result.summary()


@pytest.mark.parametrize(
    ("offset", "problem"),
    [
        (40, "onset 102 is after offset 40"),
        (400, "frames 160-400 missing of 102-400 in "),
    ],
)
def test_a_value_set_by_an_erratum_is_named_in_the_message(
    tmp_path: Path, offset: int, problem: str
) -> None:
    """The file's offset 120 is valid; an erratum for another revision sets a wrong one."""
    root, coding = _casme_tree(
        tmp_path, [[1, "EP01_5", None, 102, 110, None, 120, None, "4", "disgust"]]
    )
    errata = _errata(
        tmp_path / "errata.csv", [f"casme,sub01,EP01_5,offset,120,{offset},MEB benchmark,typo,"]
    )
    result = build("casme", root, coding, errata=errata)
    reason = skipped_by_clip(result)["EP01_5"].reason
    assert reason.startswith(problem)
    assert reason.endswith("(offset from erratum errata.csv row 2, MEB benchmark)")
    assert result.errata_applied == 1


def test_an_erratum_matching_two_clips_of_a_recording_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "ME_A"
    write_frames(root / "spNO.1" / "a" / "color", range(1, 60), lambda k: f"{k}.jpg")
    rows = [
        ["spNO.1", "a", 10, 40, 15, "4", 1, "d"],
        ["spNO.1", "a", 20, 50, 25, "4", 1, "d"],
        ["spNO.1", "a", 30, 32, 35, "4", 1, "d"],
    ]
    coding = _xlsx(tmp_path / "label.xlsx", CASME3_HEADER, rows, title="label")
    errata = _errata(
        tmp_path / "errata.csv",
        [
            "casme3,spNO.1,a,apex,<invalid>,13,src,an apex outside its clip,",
            "casme3,spNO.1,a,apex,50,22,src,the second clip's apex,",
        ],
    )
    result = build("casme3", root, coding, errata=errata)
    clips = result.frame.set_index("clip")
    assert clips.loc["a2", "apex"] == 22
    assert clips.loc["a", "apex"] == 12 and clips.loc["a", "apex_estimated"]
    assert result.errata_applied == 1
    assert "matches 3 clips (rows 2, 3, 4)" in result.errata_lines[0]


def test_casme3_generated_ids_never_collide_with_the_sheets_filenames(tmp_path: Path) -> None:
    root = tmp_path / "ME_A"
    for name in ("a", "a2"):
        write_frames(root / "spNO.1" / name / "color", range(1, 60), lambda k: f"{k}.jpg")
    rows = [
        ["spNO.1", "a", 10, 12, 15, "4", 1, "d"],
        ["spNO.1", "a", 20, 22, 25, "4", 1, "d"],
        ["spNO.1", "a2", 30, 32, 35, "4", 1, "d"],
        ["spNO.1", "a", 40, 42, 45, "4", 1, "d"],
    ]
    coding = _xlsx(tmp_path / "label.xlsx", CASME3_HEADER, rows, title="label")
    result = build("casme3", root, coding, errata=Errata.empty())
    assert result.frame["clip"].tolist() == ["a", "a3", "a2", "a4"]
    out = tmp_path / "m.csv"
    write_manifest(result.frame, out)
    assert read_manifest(out)["clip"].tolist() == ["a", "a3", "a2", "a4"]


def test_casme_without_errata_skips_the_inverted_clip(tmp_path: Path) -> None:
    root = tmp_path / "CASME_raw_selected"
    write_frames(root / "sub01" / "EP01_5", range(100, 150))
    rows = [[1, "EP01_5", None, 100, 120, None, 99, None, "4", "disgust"]]
    coding = _xlsx(tmp_path / "casme.xlsx", CASME_HEADER, rows)
    result = build("casme", root, coding, errata=Errata.empty())
    assert result.frame.empty
    assert "onset 100 is after offset 99" in skipped_by_clip(result)["EP01_5"].reason


def test_4dme_swapped_au_cells_and_key_frame_marks(tmp_path: Path) -> None:
    root = tmp_path / "gray_micro"
    for name in ("S01_01", "S01_02"):
        write_frames(root / "S01" / name, range(1, 9), lambda k: f"{k}.jpg")
    rows = [
        ["S01", "S01_01", "Positive", 1, 4, 8, "AU12+AU45(k)"],
        ["S01", "S01_02", "Negative", 1, 4, 8, "AU4+AU7"],
    ]
    coding = _xlsx(tmp_path / "4dme.xlsx", FOURD_HEADER, rows)
    errata = _errata(
        tmp_path / "errata.csv",
        [
            "4dme,S01,S01_01,aus,AU12+AU45(k),AU4+AU7,MEB benchmark,swapped,",
            "4dme,S01,S01_02,aus,AU4+AU7,AU12,MEB benchmark,swapped,",
        ],
    )
    plain = build("4dme", root, coding, errata=Errata.empty())
    assert by_clip(plain.frame)["S01_01"]["aus"] == "12"
    assert "AU45(k)" in by_clip(plain.frame)["S01_01"]["notes"]
    assert not plain.warnings
    swapped = build("4dme", root, coding, errata=errata)
    clips = by_clip(swapped.frame)
    assert (clips["S01_01"]["aus"], clips["S01_02"]["aus"]) == ("4+7", "12")
    assert "AU cell 'AU12+AU45(k)' replaced by 'AU4+AU7'" in clips["S01_01"]["notes"]
    assert clips["S01_01"]["au_raw"] == "AU12+AU45(k)"
    assert swapped.errata_applied == 2


def test_mmew_finds_clips_under_their_emotion_folder(tmp_path: Path) -> None:
    root = tmp_path / "Micro_Expression"
    write_frames(root / "happiness" / "S01_01", range(1, 10), lambda k: f"{k}.jpg")
    write_frames(root / "others" / "S01_02", range(1, 10), lambda k: f"{k}.jpg")
    write_frames(root / "fear" / "S02_01", range(1, 10), lambda k: f"{k}.jpg")
    rows = [
        ["S01", "S01_01", 1, 3, 9, "AU12", "happiness", None],
        ["S01", "S01_02", 1, 3, 9, "L10+R14", "repression", None],
        ["S02", "S02_01", 1, 3, 9, "1+2+4", "fear", "remark"],
        ["S02", "S02_02", 1, 3, 9, "4", "fear", None],
    ]
    coding = _xlsx(tmp_path / "mmew.xlsx", MMEW_HEADER, rows)
    result = build("mmew", root, coding, errata=Errata.empty())
    clips = by_clip(result.frame)
    assert sorted(clips) == ["S01_01", "S01_02", "S02_01"]
    assert Path(clips["S01_02"]["frames_dir"]).parent.name == "others"
    assert "S02_02" in str(skipped_by_clip(result)["S02_02"].reason)
    assert (result.frame["fps"] == 90.0).all()


def test_smic_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="SMIC has no Action Unit labels"):
        build_manifest("smic", root=tmp_path, coding=tmp_path / "smic.xlsx")


def test_a_missing_column_names_the_dataset_columns(tmp_path: Path) -> None:
    coding = _xlsx(tmp_path / "4dme.xlsx", ["sub_ID", "fold_name", "Onset", "Apex"], [["S1", "x"]])
    with pytest.raises(ManifestError, match="no 'Offset' column; expected the 4DME columns"):
        build("4dme", tmp_path, coding)


def test_aus_coded_outside_the_datasets_set_are_noted_and_counted(tmp_path: Path) -> None:
    root, coding = _casme_tree(
        tmp_path,
        [
            [1, "EP01_5", None, 10, 12, None, 19, None, "4+5", "disgust"],
            [2, "EP03_2", None, 10, 12, None, 19, None, "5+L12", "tense"],
            [3, "EP04_1", None, 10, 12, None, 19, None, "9", "tense"],
        ],
    )
    result = build("casme", root, coding, errata=Errata.empty())
    assert result.outside_set == {("casme", 5): 2, ("casme", 12): 1}
    notes = by_clip(result.frame)
    assert (
        "AU5 coded but outside casme's AU set; with data.uncoded_aus=unknown the label is "
        in (notes["EP01_5"]["notes"])
    )
    assert "AU5, AU12 coded but outside casme's AU set" in notes["EP03_2"]["notes"]
    assert notes["EP04_1"]["notes"] == ""
    assert "AUs coded outside casme's AU set (1, 4, 9, 14): AU5 in 2, AU12 in 1 clips" in (
        result.summary()
    )
