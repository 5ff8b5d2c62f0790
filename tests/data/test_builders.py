"""The CASME, CAS(ME)^3 Part A, MMEW and 4DME builders on small trees in their real layouts."""

from __future__ import annotations

from pathlib import Path

import pytest
from openpyxl import Workbook

from au_llm.data.build import build_manifest
from au_llm.data.builders import build_composite_dataset
from au_llm.data.errata import Errata, ErrataError
from au_llm.data.manifest import ManifestError, read_manifest, write_manifest
from au_llm.data.row_errata import RowErrata, load_row_errata
from tests.data.helpers import by_clip, skipped_by_clip, write_frames

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


def _row_errata(path: Path, lines: list[str]) -> RowErrata:
    path.write_text("dataset,row,field,value,source,note\n" + "\n".join(lines) + "\n")
    return load_row_errata(path)


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
    result = build_composite_dataset("casme3", root, coding, errata=Errata.empty())
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
    frame = build_composite_dataset("casme3", root, coding, errata=Errata.empty()).frame
    assert Path(frame["frames_dir"].iloc[1]).parent.name == "a2"


def test_row_errata_repair_only_invalid_values_and_say_so(tmp_path: Path) -> None:
    root = tmp_path / "CASME_raw_selected"
    write_frames(root / "sub01" / "EP01_5", range(100, 150))
    write_frames(root / "sub02" / "EP03_2", range(10, 20))
    rows = [
        [1, "EP01_5", None, 100, 300, None, 99, None, "4+9", "disgust"],
        [2, "EP03_2", None, 10, 12, None, 19, None, 14, "tense"],
    ]
    coding = _xlsx(tmp_path / "casme.xlsx", CASME_HEADER, rows)
    errata = _row_errata(
        tmp_path / "rows.csv",
        [
            "casme,2,offset,149,MEB benchmark,offset from the image folder",
            "casme,2,apex,120,MEB benchmark,middle frame",
            "casme,3,offset,18,MEB benchmark,a valid value stays",
        ],
    )
    result = build_composite_dataset(
        "casme", root, coding, errata=Errata.empty(), row_errata=errata
    )
    clips = by_clip(result.frame)
    first = clips["EP01_5"]
    assert (first["subject"], first["onset"], first["apex"], first["offset"]) == (
        "sub01",
        100,
        120,
        149,
    )
    assert "erratum, MEB benchmark" in first["notes"]
    second = clips["EP03_2"]
    assert second["offset"] == 19
    assert "erratum offset 18 not applied" in second["notes"]
    assert (result.frame["fps"] == 60.0).all()


def test_casme_without_errata_skips_the_inverted_clip(tmp_path: Path) -> None:
    root = tmp_path / "CASME_raw_selected"
    write_frames(root / "sub01" / "EP01_5", range(100, 150))
    rows = [[1, "EP01_5", None, 100, 120, None, 99, None, "4", "disgust"]]
    coding = _xlsx(tmp_path / "casme.xlsx", CASME_HEADER, rows)
    result = build_composite_dataset(
        "casme", root, coding, errata=Errata.empty(), row_errata=RowErrata.empty()
    )
    assert result.frame.empty
    assert "onset 100 is after offset 99" in skipped_by_clip(result)["EP01_5"].reason


def test_4dme_swapped_rows_and_key_frame_marks(tmp_path: Path) -> None:
    root = tmp_path / "gray_micro"
    for name in ("S01_01", "S01_02"):
        write_frames(root / "S01" / name, range(1, 9), lambda k: f"{k}.jpg")
    rows = [
        ["S01", "S01_01", "Positive", 1, 4, 8, "AU12+AU45(k)"],
        ["S01", "S01_02", "Negative", 1, 4, 8, "AU4+AU7"],
    ]
    coding = _xlsx(tmp_path / "4dme.xlsx", FOURD_HEADER, rows)
    errata = _row_errata(
        tmp_path / "rows.csv",
        ["4dme,2,aus_row,3,MEB benchmark,swapped", "4dme,3,aus_row,2,MEB benchmark,swapped"],
    )
    plain = build_composite_dataset(
        "4dme", root, coding, errata=Errata.empty(), row_errata=RowErrata.empty()
    )
    assert by_clip(plain.frame)["S01_01"]["aus"] == "12"
    assert "AU45(k)" in by_clip(plain.frame)["S01_01"]["notes"]
    assert not plain.warnings
    swapped = build_composite_dataset(
        "4dme", root, coding, errata=Errata.empty(), row_errata=errata
    )
    clips = by_clip(swapped.frame)
    assert (clips["S01_01"]["aus"], clips["S01_02"]["aus"]) == ("4+7", "12")
    assert "AU cell of row 3 used" in clips["S01_01"]["notes"]


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
    result = build_composite_dataset(
        "mmew", root, coding, errata=Errata.empty(), row_errata=RowErrata.empty()
    )
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
        build_composite_dataset("4dme", tmp_path, coding)


def test_the_shipped_row_errata_hold_mebs_corrections() -> None:
    errata = load_row_errata()
    casme3_rows = {row for dataset, row, _ in errata.entries if dataset == "casme3"}
    assert casme3_rows == {130, 710, 751, 752, 798, 800}
    assert errata.get("casme3", 752, "apex").frame == 1
    assert errata.get("4dme", 146, "aus_row").frame == 147
    assert len({row for dataset, row, _ in errata.entries if dataset == "mmew"}) == 16


def test_row_errata_reject_a_bad_field(tmp_path: Path) -> None:
    with pytest.raises(ErrataError, match="row 2: field 'color'"):
        _row_errata(tmp_path / "rows.csv", ["casme,5,color,1,x,y"])
