"""CASME II and SAMM annotation spreadsheets -> manifests."""

import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from au_llm.data.errata import OLD_INVALID, Errata, Erratum
from au_llm.data.manifest import MANIFEST_COLUMNS, ManifestError, read_manifest, write_manifest
from tests.data.helpers import (
    CASME2_HEADER,
    build_casme2,
    build_samm,
    by_clip,
    casme2_row,
    make_samm_frames,
    samm_row,
    samm_rows,
    skipped_by_clip,
    subject_id,
    write_casme2_xlsx,
    write_frames,
    write_samm_xlsx,
)


def test_casme2_manifest_columns_and_clips(casme2):
    root, coding = casme2
    result = build_casme2(root, coding)
    frame = result.frame
    assert list(frame.columns) == MANIFEST_COLUMNS
    assert sorted(frame["clip"]) == ["EP02_01f", "EP03_02", "EP12_01f", "EP19_01"]
    rows = by_clip(frame)
    first = rows["EP02_01f"]
    assert first["dataset"] == "casme2"
    assert first["subject"] == "sub01"
    assert Path(first["frames_dir"]) == root / "sub01" / "EP02_01f"
    assert first["video"] == ""
    assert (first["onset"], first["apex"], first["offset"]) == (46, 49, 53)
    assert first["n_frames"] == 8
    assert first["fps"] == 200.0
    assert first["au_raw"] == "4+7+L10"
    assert first["aus"] == "4+7+10"
    assert first["emotion"] == "disgust"
    assert not first["apex_estimated"]
    assert rows["EP19_01"]["subject"] == "sub26"
    assert rows["EP19_01"]["aus"] == "4+9+10+14"


def test_casme2_int_au_cell_and_unknown_apex(casme2):
    result = build_casme2(*casme2)
    row = by_clip(result.frame)["EP03_02"]
    assert row["au_raw"] == "12" and row["aus"] == "12"
    assert row["apex"] == 15 and row["apex_estimated"]
    assert "apex '/' is not a frame number; middle frame 15 used" in row["notes"]
    assert len(result.warnings) == 1
    assert "sub01/EP03_02 (row 3)" in result.warnings[0]


def test_casme2_erratum_fills_the_unknown_apex_of_ep12_01f(casme2):
    row = by_clip(build_casme2(*casme2).frame)["EP12_01f"]
    assert row["subject"] == "sub04"
    assert row["apex"] == 279
    assert not row["apex_estimated"]
    assert "279" in row["notes"] and "erratum" in row["notes"]
    assert row["n_frames"] == 21


def test_casme2_without_errata_estimates_the_apex(casme2):
    row = by_clip(build_casme2(*casme2, errata=Errata.empty()).frame)["EP12_01f"]
    assert row["apex"] == 280 and row["apex_estimated"]


def test_casme2_problem_rows_are_skipped_with_reasons(casme2):
    result = build_casme2(*casme2)
    skipped = skipped_by_clip(result)
    assert len(result.skipped) == 5
    assert skipped["EP01_11f"].reason.startswith("frame 7 missing of 5-9")
    assert skipped["EP01_11f"].row == 5 and skipped["EP01_11f"].kind == "frames missing"
    assert skipped["EP05_09"].kind == "frames folder missing"
    assert str(casme2[0] / "sub03" / "EP05_09") in skipped["EP05_09"].reason
    assert skipped["EP09_01"].reason == "row has no subject" and skipped["EP09_01"].row == 7
    assert skipped["EP06_01"].reason == "onset 'abc' is not a frame number"
    assert skipped["EP07_01"].reason == "onset 30 is after offset 20"
    summary = result.summary()
    assert "4 clips written (3 subjects), 5 skipped, 1 warnings" in summary
    assert "frames missing (1):" in summary
    assert "sub02/EP01_11f (row 5): frame 7 missing of 5-9" in summary
    assert "bad onset/offset (2):" in summary
    assert "apex estimated as the middle frame for 1 clips" in summary


def test_casme2_row_order_does_not_matter(tmp_path, casme2):
    root, coding = casme2
    sheet = openpyxl.load_workbook(coding).active
    rows = [list(row) for row in sheet.iter_rows(min_row=2, values_only=True)]
    shuffled = write_casme2_xlsx(tmp_path / "CASME2-coding-updated.xlsx", rows[::-1])
    original = build_casme2(root, coding).frame.sort_values("clip").reset_index(drop=True)
    reordered = build_casme2(root, shuffled).frame.sort_values("clip").reset_index(drop=True)
    pd.testing.assert_frame_equal(original, reordered)


def test_casme2_strict_raises_naming_file_row_and_clip(casme2):
    with pytest.raises(ManifestError) as info:
        build_casme2(*casme2, strict=True)
    message = str(info.value)
    assert "CASME2-coding-20190701.xlsx" in message
    assert "row 3" in message and "EP03_02" in message


def test_casme2_strict_passes_on_a_clean_file(tmp_path):
    root = tmp_path / "root"
    write_frames(root / "sub01" / "EP02_01f", range(46, 54), lambda k: f"reg_img{k}.jpg")
    coding = write_casme2_xlsx(
        tmp_path / "c.xlsx", [casme2_row(1, "EP02_01f", 46, 49, 53, "4+7+L10")]
    )
    result = build_casme2(root, coding, strict=True)
    assert len(result.frame) == 1 and not result.skipped and not result.warnings


def test_mixed_frame_names_in_a_clip_folder_warn(tmp_path):
    root = tmp_path / "root"
    write_frames(root / "sub01" / "EP02_01f", range(46, 54))
    write_frames(root / "sub01" / "EP02_01f", range(46, 54), lambda k: f"reg_img{k}.jpg")
    coding = write_casme2_xlsx(tmp_path / "c.xlsx", [casme2_row(1, "EP02_01f", 46, 49, 53, 4)])
    result = build_casme2(root, coding)
    assert len(result.frame) == 1
    assert any("reg_img<N>.jpg ignored" in warning for warning in result.warnings)
    with pytest.raises(ManifestError, match="reg_img"):
        build_casme2(root, coding, strict=True)


def test_unreadable_or_headerless_files_raise(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    garbage = tmp_path / "broken.xlsx"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(ManifestError, match="broken.xlsx"):
        build_casme2(root, garbage)
    with pytest.raises(ManifestError, match="annotation file not found"):
        build_casme2(root, tmp_path / "missing.xlsx")
    workbook = openpyxl.Workbook()
    workbook.active.append(["SAMM Micro-Movement FACS Codes"])
    workbook.active.append(["Filename", "subject_inducement_clip"])
    workbook.save(tmp_path / "h.xlsx")
    with pytest.raises(ManifestError, match="no header row found"):
        build_samm(root, tmp_path / "h.xlsx")


def test_missing_required_column_is_named(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    workbook = openpyxl.Workbook()
    workbook.active.append(["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame"])
    workbook.save(tmp_path / "c.xlsx")
    with pytest.raises(ManifestError, match="'Action Units' column"):
        build_casme2(root, tmp_path / "c.xlsx")


def test_samm_manifest_with_preamble(samm):
    root, coding = samm
    result = build_samm(root, coding)
    rows = by_clip(result.frame)
    assert sorted(rows) == sorted(
        [
            "006_1_2",
            "007_6_1",
            "011_4_2",
            "009_3_1",
            "028_4_1",
            "032_3_2",
            "032_3_1",
            "013_1_9",
            "014_5_2",
            "015_1_1",
        ]
    )
    first = rows["006_1_2"]
    assert first["dataset"] == "samm" and first["subject"] == "006"
    assert Path(first["frames_dir"]) == root / "006" / "006_1_2"
    assert (first["onset"], first["apex"], first["offset"], first["n_frames"]) == (
        5562,
        5565,
        5570,
        9,
    )
    assert first["fps"] == 200.0 and first["emotion"] == "Anger"
    assert rows["007_6_1"]["n_frames"] == 7  # unpadded frame names
    assert rows["011_4_2"]["n_frames"] == 5  # 4-digit padding


def test_samm_au_errata_resolve_alternatives(samm):
    rows = by_clip(build_samm(*samm).frame)
    assert rows["007_6_1"]["aus"] == "12+15"
    assert rows["007_6_1"]["au_raw"] == "(R6 or R12)+R15"
    assert "resolved by erratum to 'R12+R15'" in rows["007_6_1"]["notes"]
    assert rows["011_4_2"]["aus"] == "14"


def test_samm_unlisted_alternative_keeps_the_first_and_warns(samm):
    result = build_samm(*samm)
    row = by_clip(result.frame)["009_3_1"]
    assert row["aus"] == "12"
    assert "alternative 'R12 or R14' resolved to first (12)" in row["notes"]
    assert any("009/009_3_1 (row 18)" in warning for warning in result.warnings)


def test_samm_aus_erratum_not_applied_without_alternative(samm):
    row = by_clip(build_samm(*samm).frame)["014_5_2"]
    assert row["aus"] == "12+15"
    assert row["au_raw"] == "12+15 "
    assert "not applied" in row["notes"]


def test_samm_frame_errata_apply_only_to_invalid_values(samm):
    rows = by_clip(build_samm(*samm).frame)
    outside = rows["028_4_1"]
    assert outside["apex"] == 1105 and not outside["apex_estimated"]
    assert "apex 2000 lies outside onset..offset 1100-1120" in outside["notes"]
    missing = rows["032_3_1"]
    assert missing["apex"] == 4945 and not missing["apex_estimated"]
    valid = rows["032_3_2"]
    assert valid["apex"] == 5127
    assert "erratum apex 5130 not applied" in valid["notes"]
    offset = rows["013_1_9"]
    assert offset["offset"] == 5739 and offset["n_frames"] == 10
    assert "offset '?' is not a frame number; 5739 used (erratum" in offset["notes"]


def test_samm_frame_erratum_is_ignored_when_the_file_value_is_valid(samm):
    errata = Errata.from_entries(
        [Erratum("samm", "006", "006_1_2", "offset", OLD_INVALID, "5571", "test")]
    )
    row = by_clip(build_samm(*samm, errata=errata).frame)["006_1_2"]
    assert row["offset"] == 5570
    assert "erratum offset 5571 not applied" in row["notes"]


def test_samm_skips_and_warnings(samm):
    result = build_samm(*samm)
    skipped = skipped_by_clip(result)
    assert len(result.skipped) == 2
    assert skipped["016_2_2"].reason == "offset '?' is not a frame number"
    assert skipped["016_2_2"].row == 25
    assert skipped["row 26"].reason == "row has no filename"
    assert skipped["row 26"].subject == "017"
    assert len(result.warnings) == 2
    soft = by_clip(result.frame)["015_1_1"]
    assert soft["aus"] == "14+17"
    assert "part 'soft focus' has no AU number, dropped" in soft["notes"]


def test_samm_header_found_at_another_row(tmp_path):
    root = tmp_path / "SAMM"
    make_samm_frames(root)
    coding = write_samm_xlsx(tmp_path / "samm.xlsx", samm_rows(), preamble=[["SAMM"], []])
    result = build_samm(root, coding)
    assert len(result.frame) == 10
    assert skipped_by_clip(result)["016_2_2"].row == 14


def test_samm_strict_raises_on_the_first_problem(samm):
    with pytest.raises(ManifestError, match=r"SAMM_Micro_FACS_Codes_v2\.xlsx.*row 18.*009_3_1"):
        build_samm(*samm, strict=True)


def test_subject_ids():
    assert subject_id("casme2", 1) == "sub01"
    assert subject_id("casme2", 1.0) == "sub01"
    assert subject_id("casme2", "sub01") == "sub01"
    assert subject_id("samm", 6) == "006"
    assert subject_id("samm", "006") == "006"
    assert subject_id("samm", "x") is None
    assert subject_id("samm", None) is None


def test_unclear_offsets_float_text_and_inverted_pairs(tmp_path):
    root = tmp_path / "SAMM"
    write_frames(root / "006" / "006_1_2", range(10, 21), lambda k: f"006_{k:05d}.jpg")
    write_frames(root / "006" / "006_1_3", range(30, 41), lambda k: f"006_{k:05d}.jpg")
    write_frames(root / "006" / "006_1_4", range(50, 61), lambda k: f"006_{k:05d}.jpg")
    rows = [
        samm_row(6, "006_1_2", 10, "12.0", "20?", "4"),
        samm_row(6, "006_1_3", 30, 32, 3, "4"),
        samm_row(6, "006_1_4", 50, 52, 5, "4"),
        samm_row("six", "006_1_5", 1, 2, 3, "4"),
    ]
    coding = write_samm_xlsx(tmp_path / "samm.xlsx", rows)
    errata = Errata.from_entries(
        [Erratum("samm", "006", "006_1_3", "offset", OLD_INVALID, "40", "typo fix")]
    )
    result = build_samm(root, coding, errata=errata)
    rows = by_clip(result.frame)
    assert (rows["006_1_2"]["apex"], rows["006_1_2"]["offset"]) == (12, 20)
    assert "offset '20?' marked unclear; 20 used" in rows["006_1_2"]["notes"]
    assert rows["006_1_3"]["offset"] == 40
    assert "onset 30 is after offset 3; errata give 30-40" in rows["006_1_3"]["notes"]
    skipped = skipped_by_clip(result)
    assert skipped["006_1_4"].reason == "onset 50 is after offset 5"
    assert skipped["006_1_5"].reason == "row has subject 'six', not a subject number"


def test_coding_file_types(tmp_path, casme2):
    root, coding = casme2
    (tmp_path / "old.xls").write_bytes(b"")
    with pytest.raises(ManifestError, match=r"old\.xls: expected an \.xlsx or \.csv"):
        build_casme2(root, tmp_path / "old.xls")
    sheet = openpyxl.load_workbook(coding).active
    with (tmp_path / "coding.csv").open("w") as handle:
        for row in sheet.iter_rows(values_only=True):
            handle.write(",".join("" if value is None else str(value) for value in row) + "\n")
    from_csv = build_casme2(root, tmp_path / "coding.csv").frame
    pd.testing.assert_frame_equal(from_csv, build_casme2(root, coding).frame)


def test_relative_root_is_stored_absolute_so_the_manifest_reads_back_anywhere(
    tmp_path, casme2, monkeypatch
):
    root, coding = casme2
    monkeypatch.chdir(root.parent)
    frame = build_casme2(Path(root.name), coding).frame
    assert all(Path(p).is_absolute() for p in frame["frames_dir"])
    out = tmp_path / "elsewhere" / "casme2.csv"
    write_manifest(frame, out)
    back = read_manifest(out)
    assert all(Path(p).is_dir() for p in back["frames_dir"])


def test_filename_with_a_path_separator_is_skipped_naming_the_row(tmp_path):
    root = tmp_path / "root"
    write_frames(root / "sub01" / "EP01", range(1, 4))
    rows = [casme2_row(1, "EP01", 1, 2, 3, 4), casme2_row(1, "../sub02/EP01", 1, 2, 3, 4)]
    rows.append(casme2_row(1, "E" * 250, 1, 2, 3, 4))
    result = build_casme2(root, write_casme2_xlsx(tmp_path / "c.xlsx", rows), errata=Errata.empty())
    assert result.frame["clip"].tolist() == ["EP01"]
    assert [skipped.row for skipped in result.skipped] == [3, 4]
    assert "path separator" in result.skipped[0].reason
    assert "too long (250 characters as a file name; at most 100" in result.skipped[1].reason


def _damage_deflate(path: Path, member: str) -> None:
    """Overwrite the start of ``member``'s deflate stream with an invalid block type."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30
    name_length = int.from_bytes(data[start - 4 : start - 2], "little")
    extra_length = int.from_bytes(data[start - 2 : start], "little")
    start += name_length + extra_length
    data[start : start + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))


def test_damaged_xlsx_is_a_clear_error_naming_the_file(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    coding = write_casme2_xlsx(tmp_path / "c.xlsx", [casme2_row(1, "EP01", 1, 2, 3, 4)])
    _damage_deflate(coding, "xl/worksheets/sheet1.xml")
    with pytest.raises(ManifestError, match=r"c\.xlsx: not a readable \.xlsx workbook.*damaged"):
        build_casme2(root, coding)


def test_the_sheet_with_header_and_rows_is_used_after_a_header_only_sheet(tmp_path):
    root = tmp_path / "root"
    write_frames(root / "sub01" / "EP01", range(1, 4))
    workbook = openpyxl.Workbook()
    workbook.active.append(CASME2_HEADER)
    data = workbook.create_sheet("data")
    data.append(CASME2_HEADER)
    data.append(casme2_row(1, "EP01", 1, 2, 3, 4))
    workbook.save(tmp_path / "two.xlsx")
    result = build_casme2(root, tmp_path / "two.xlsx", errata=Errata.empty())
    assert result.frame["clip"].tolist() == ["EP01"]
    del workbook["data"]
    workbook.save(tmp_path / "empty.xlsx")
    with pytest.raises(
        ManifestError, match=r"empty\.xlsx: the header row of sheet 'Sheet'.*no data"
    ):
        build_casme2(root, tmp_path / "empty.xlsx", errata=Errata.empty())


def _save_result(path: Path, cell: str, result: str) -> None:
    """Store ``result`` as the saved value of the formula in ``cell`` (as Excel does)."""
    member = "xl/worksheets/sheet1.xml"
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    xml = files[member].decode()
    start = xml.index(f'<c r="{cell}"')
    end = xml.index("</c>", start)
    saved = xml[start:end].replace("<v />", "") + f"<v>{result}</v>"
    files[member] = (xml[:start] + saved + xml[end:]).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def test_formula_cells_give_their_saved_result_or_are_refused_naming_the_cell(tmp_path):
    root = tmp_path / "root"
    write_frames(root / "sub01" / "EP01", range(1, 4))
    coding = write_casme2_xlsx(tmp_path / "c.xlsx", [casme2_row(1, "EP01", 1, 2, 3, "=10+2")])
    with pytest.raises(ManifestError, match=r"c\.xlsx: cell Sheet1!H2 holds the formula =10\+2"):
        build_casme2(root, coding, errata=Errata.empty())
    _save_result(coding, "H2", "12")
    result = build_casme2(root, coding, errata=Errata.empty())
    assert result.frame["aus"].tolist() == ["12"]
