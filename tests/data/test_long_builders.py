"""The SAMM-LV, CAS(ME)^2 and CAS(ME)^3 long-video builders on small trees in their real layouts."""

from __future__ import annotations

from pathlib import Path

import pytest
from openpyxl import Workbook

from au_llm.data.build import build_manifest
from au_llm.data.builders.long import BEYOND_RECORDING, UNKNOWN_TYPE
from au_llm.data.manifest import ManifestError, read_manifest, write_manifest
from au_llm.data.rows import BAD_ROW, BAD_TIMING, DUPLICATE, FOLDER_MISSING, FRAMES_MISSING
from tests.data.helpers import by_clip, write_frames

SAMM_LV_HEADER = ["Subject", "Filename", "Inducement Code", "Onset", "Apex", "Offset"]
SAMM_LV_HEADER += ["Duration", "Type", "Action Units", "Notes"]
CASME3_ME = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
CASME3_MAE = "cas(me)3_part_A_MaE_label_JpgIndex_v2_emotion.xlsx"
CASME3_HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class"]
CASME3_HEADER += ["emotion"]


def _book(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def _kinds(result) -> dict[str, str]:
    """Skipped rows: clip (or ``row N``) -> reason group."""
    return {item.clip or f"row {item.row}": item.kind for item in result.skipped}


def _samm_lv(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "SAMM_longvideos"
    write_frames(root / "006_1", range(1, 201), lambda k: f"006_1_{k:04d}.jpg")
    numbers = [k for k in range(1, 51) if k not in (20, 21, 22)]
    write_frames(root / "006_2", numbers, lambda k: f"006_2_{k:04d}.jpg")

    def row(name: str, onset: object, apex: object, offset: object, kind: str, aus: object):
        return [6, name, int(name.split("_")[1]), onset, apex, offset, None, kind, aus, None]

    rows = [
        row("006_1_1", 10, 12, 30, "Micro - 1/2", "4+7"),
        row("006_1_2", 50.0, 70.0, 120.0, "Macro", 12),  # decimals, as in the real file
        row("006_1_3", 130, 132, 140, "Blink", 45),
        row("006_1_4", 150, 190, 260, "Macro", 4),  # past the last frame (200)
        row("006_1_5", 160, 150, 140, "Micro - 1/2", 2),
        row("006_1", 10, 12, 30, "Micro - 1/2", 2),
        row("006_1_6", 10, 12, 30, "Micro - 1/2", "4+7"),  # the interval of 006_1_1 again
        row("006_1_7", 25, 28, 40, "micro - 1/2 ", "L2"),  # overlaps 006_1_1
        row("006_2_1", 15, 18, 25, "Macro", 12),  # frames 20-22 missing
        row("006_2_2", 30, 35, 0, "Macro", 12),  # offset 0: not annotated
        row("006_2_3", 0, 0, 40, "Macro", 12),  # onset and apex 0: nothing to use
        row("007_2_1", 1, 2, 3, "Macro", 12),  # no folder 007_2
    ]
    rows[-1][0] = 7
    preamble: list[list[object]] = [["SAMM Long Videos"], *[[] for _ in range(8)]]
    coding = _book(
        tmp_path / "SAMM_LongVideos_V3_Release.xlsx",
        {"FACS_Movement_Only": [*preamble, SAMM_LV_HEADER, *rows]},
    )
    return root, coding


def test_samm_lv_rows_and_bad_rows(tmp_path: Path) -> None:
    root, coding = _samm_lv(tmp_path)
    result = build_manifest("samm-lv", root=root, coding=coding)
    clips = by_clip(result.frame)
    assert sorted(clips) == ["006_1_1", "006_1_2", "006_1_7", "006_2_2"]
    first = clips["006_1_1"]
    assert (first["subject"], first["recording"], first["kind"]) == ("006", "006_1", "micro")
    assert first["frames_dir"] == str(root.resolve() / "006_1") and first["fps"] == 200.0
    assert (clips["006_1_2"]["onset"], clips["006_1_2"]["offset"]) == (50, 120)
    assert clips["006_1_2"]["kind"] == "macro" and clips["006_1_7"]["kind"] == "micro"
    assert "overlaps 006_1_7 (25-40)" in first["notes"]
    assert (clips["006_2_2"]["offset"], clips["006_2_2"]["n_frames"]) == (35, 6)
    assert any("offset 0 (not annotated)" in w for w in result.warnings)
    assert _kinds(result) == {
        "006_1_3": UNKNOWN_TYPE,
        "006_1_4": BEYOND_RECORDING,
        "006_1_5": BAD_TIMING,
        "006_1": BAD_ROW,
        "006_1_6": DUPLICATE,
        "006_2_1": FRAMES_MISSING,
        "006_2_3": BAD_TIMING,
        "007_2_1": FOLDER_MISSING,
    }
    reasons = {item.clip: item.describe() for item in result.skipped}
    assert "(row 13)" in reasons["006_1_3"] and "'Blink'" in reasons["006_1_3"]
    assert "'Micro - 1/2' or 'Macro'" in reasons["006_1_3"]
    assert "outside the recording's frames 1-200" in reasons["006_1_4"]
    assert "frames 20-22 missing" in reasons["006_2_1"]
    assert "onset 0 (not annotated) and no apex to use" in reasons["006_2_3"]
    with pytest.raises(ManifestError, match=r"row 13, clip 006/006_1_3: type 'Blink'"):
        build_manifest("samm-lv", root=root, coding=coding, strict=True)


def test_casme_sq_rows_and_bad_rows(tmp_path: Path) -> None:
    root = tmp_path / "rawpic"
    write_frames(
        root / "s15" / "15_0101disgustingteeth", range(1, 101), lambda k: f"img{k:03d}.jpg"
    )
    write_frames(root / "s16" / "16_0401girlcrashing", range(1, 61), lambda k: f"img{k:03d}.jpg")
    (root / "s15" / "15_0101disgustingteeth" / "thumb_1.png").write_bytes(b"")  # not a frame

    def row(index: int, name: str, onset: int, apex: int, offset: int, kind: str = "micro"):
        return [index, name, onset, apex, offset, "4+7", "negative", f"{kind}-expression", "fear"]

    codes = [
        row(1, "disgust1_1", 10, 12, 20),
        row(1, "disgust1_2", 30, 0, 60, "macro"),  # apex 0: not annotated
        row(1, "disgust1_3", 70, 75, 0, "macro"),  # offset 0: the apex is used
        row(2, "anger1_1", 5, 8, 12),
        row(2, "disgust1_1", 5, 8, 12),  # subject s16 has no 0101 folder
        row(3, "disgust1_1", 5, 8, 12),  # index 3 is not in naming rule1
        row(1, "sleepy1_1", 5, 8, 12),  # not in naming rule2
        row(1, "disgust1_4", 80, 85, 90, "blink"),
        row(1, "disgust1_5", 95, 99, 130),  # past the last frame (100)
        row(1, "disgust1_6", 10, 12, 20),  # the interval of disgust1_1 again
    ]
    coding = _book(
        tmp_path / "CAS(ME)^2code_final.xlsx",
        {
            "CASFEcode_final": codes,
            "naming rule1": [[15, "s15", 1], [16, "s16", 2]],
            "naming rule2": [[101, "disgust1"], [401, "anger1"]],
        },
    )
    result = build_manifest("casme-sq-lv", root=root, coding=coding)
    clips = by_clip(result.frame)
    assert sorted(clips) == ["anger1_1", "disgust1_1", "disgust1_2", "disgust1_3"]
    assert clips["disgust1_1"]["recording"] == "15_0101disgustingteeth"
    assert clips["anger1_1"]["subject"] == "s16" and clips["anger1_1"]["fps"] == 30.0
    assert clips["disgust1_2"]["apex"] == 45 and clips["disgust1_2"]["apex_estimated"]
    assert "apex 0: not annotated" in clips["disgust1_2"]["notes"]
    assert (clips["disgust1_3"]["offset"], clips["disgust1_3"]["kind"]) == (75, "macro")
    assert clips["disgust1_1"]["emotion"] == "fear"
    ignored = [w for w in result.warnings if "thumb_<N>.png ignored" in w]
    assert len(ignored) == 1 and "s15/15_0101disgustingteeth" in ignored[0]  # once per recording
    skipped = {(item.clip, item.subject): item for item in result.skipped}
    assert {key: item.kind for key, item in skipped.items()} == {
        ("disgust1_1", "s16"): FOLDER_MISSING,
        ("disgust1_1", ""): BAD_ROW,
        ("sleepy1_1", "s15"): BAD_ROW,
        ("disgust1_4", "s15"): UNKNOWN_TYPE,
        ("disgust1_5", "s15"): BEYOND_RECORDING,
        ("disgust1_6", "s15"): DUPLICATE,
    }
    assert (
        "subject index 3 is not in the sheet 'naming rule1'" in skipped[("disgust1_1", "")].reason
    )
    assert "'sleepy1'" in skipped[("sleepy1_1", "s15")].reason
    with pytest.raises(ManifestError, match="naming rule1"):
        build_manifest(
            "casme-sq-lv",
            root=root,
            coding=_book(tmp_path / "bare.xlsx", {"CASFEcode_final": codes}),
        )


def _casme3(tmp_path: Path) -> tuple[Path, Path, Path]:
    root = tmp_path / "part_A"
    write_frames(root / "spNO.1" / "a" / "color", range(0, 100), lambda k: f"{k}.jpg")
    write_frames(root / "spNO.1" / "b" / "color", range(0, 50), lambda k: f"{k}.jpg")
    micro = [
        ["spNO.1", "a", 10, 12, 15, "R12", 1, "happy"],
        ["spNO.1", "A", 20, 22, 25, 4, 3, "Others"],  # the folder is lower case
        ["spNO.1", "b", 40, 45, 60, 4, 3, "others"],  # past the last frame (49)
        ["spNO.1", "c", 1, 2, 3, 4, 3, "others"],  # no recording c
        [None, "a", 1, 2, 3, 4, 3, "others"],
        ["spNO.1", "a", 10, 12, 15, "R12", 1, "happy"],  # row 2 again
    ]
    macro = [
        ["spNO.1", "a", 30, 40, 60, 12, "happy"],
        ["spNO.1", "a", 0, 5, 20, "6+12", "happy"],  # frame 0 exists: onset 0 is a frame
        ["spNO.1", "b", 30, 25, 20, 12, "happy"],
    ]
    me = _book(tmp_path / CASME3_ME, {"label": [CASME3_HEADER, *micro]})
    header = [h for h in CASME3_HEADER if h != "Objective class"]
    mae = _book(tmp_path / CASME3_MAE, {"Sheet1": [header, *macro]})
    return root, me, mae


def test_casme3_long_rows_from_both_files(tmp_path: Path) -> None:
    root, me, mae = _casme3(tmp_path)
    result = build_manifest("casme3-lv", root=root, coding=[me, mae])
    rows = result.frame[["clip", "recording", "kind", "onset", "offset", "aus"]].values.tolist()
    assert rows == [
        ["a_10-15", "a", "micro", 10, 15, "12"],
        ["a_20-25", "a", "micro", 20, 25, "4"],
        ["a_30-60", "a", "macro", 30, 60, "12"],
        ["a_0-20", "a", "macro", 0, 20, "6+12"],
    ]
    assert "overlaps a_10-15 (10-15), a_20-25 (20-25)" in result.frame["notes"].iloc[3]
    skipped = {(item.row, item.kind) for item in result.skipped}
    assert skipped == {
        (4, BEYOND_RECORDING),
        (5, FOLDER_MISSING),
        (6, BAD_ROW),
        (7, DUPLICATE),
        (4, BAD_TIMING),
    }
    assert any(CASME3_MAE in line for line in [result.source])
    # Only the micro-expression file: micro-expressions only.
    micro_only = build_manifest("casme3-lv", root=root, coding=me)
    assert set(micro_only.frame["kind"]) == {"micro"}


def test_casme3_kind_from_a_type_column_or_refused(tmp_path: Path) -> None:
    root, me, _ = _casme3(tmp_path)
    header = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Expression type"]
    rows = [
        ["spNO.1", "a", 10, 12, 15, 4, "Macro-expression "],
        ["spNO.1", "a", 30, 35, 40, 4, "Micro-expression"],
        ["spNO.1", "a", 50, 55, 60, 4, "Expression"],
    ]
    combined = _book(tmp_path / "CAS(ME)3_part_A_v2.xlsx", {"Sheet1": [header, *rows]})
    result = build_manifest("casme3-lv", root=root, coding=combined)
    assert result.frame["kind"].tolist() == ["macro", "micro"]
    assert [item.kind for item in result.skipped] == [UNKNOWN_TYPE]
    renamed = me.rename(tmp_path / "labels.xlsx")
    with pytest.raises(ManifestError, match="cannot tell whether it lists micro- or macro"):
        build_manifest("casme3-lv", root=root, coding=renamed)


def test_long_manifest_round_trips_and_the_cli(tmp_path: Path, capsys) -> None:
    from au_llm.cli import main

    root, me, mae = _casme3(tmp_path)
    out = tmp_path / "long.csv"
    args = ["manifest", "casme3-lv", "--root", str(root), "--coding", str(me), str(mae)]
    assert main([*args, "--out", str(out)]) == 0
    assert "4 clips written" in capsys.readouterr().out
    frame = read_manifest(out)
    assert frame["kind"].tolist() == ["micro", "micro", "macro", "macro"]
    assert set(frame["recording"]) == {"a"}
    frame.loc[0, "kind"] = "mikro"
    write_manifest(frame, out)
    with pytest.raises(ManifestError, match="row 2: kind 'mikro' is not an expression kind"):
        read_manifest(out)
    casme2 = ["manifest", "casme2", "--root", str(root), "--out", str(out)]
    assert main([*casme2, "--coding", str(me), str(mae)]) == 2
    assert "reads one annotation file, got 2" in capsys.readouterr().err
    assert main(["manifest", "samm-lv", "--root", str(root), "--out", str(out)]) == 2
    assert "needs root" in capsys.readouterr().err


def test_cli_offers_every_manifest_kind() -> None:
    from au_llm.cli import MANIFEST_CHOICES
    from au_llm.data.build import MANIFEST_KINDS

    assert set(MANIFEST_CHOICES) == {*MANIFEST_KINDS, "smic"}
