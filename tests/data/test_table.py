"""The user's own clip table -> manifest."""

from pathlib import Path

import pandas as pd
import pytest

from au_llm.data.manifest import ManifestError
from au_llm.data.table import build_from_table
from tests.data.helpers import by_clip, skipped_by_clip, write_frames


def test_table_with_frames_dir_and_video_rows(table):
    result = build_from_table(table)
    rows = by_clip(result.frame)
    assert sorted(rows) == ["c1", "c2"]
    first = rows["c1"]
    assert first["dataset"] == "custom"
    assert Path(first["frames_dir"]) == table.parent / "frames" / "s1" / "c1"
    assert first["n_frames"] == 5 and first["aus"] == "1+2" and first["au_raw"] == "AU1+AU2"
    video = rows["c2"]
    assert video["frames_dir"] == ""
    assert Path(video["video"]) == table.parent / "videos" / "c2.mp4"
    assert video["n_frames"] == 11
    assert video["apex"] == 15 and video["apex_estimated"]
    assert video["aus"] == "4+7"
    skipped = skipped_by_clip(result)
    assert skipped["c3"].kind == "video missing"
    assert skipped["c4"].reason.startswith("frame 3 missing of 1-4")
    assert skipped["c5"].reason == "row has no subject" and skipped["c5"].row == 6
    assert any("s1/c2 (row 3)" in warning for warning in result.warnings)
    with pytest.raises(ManifestError, match=r"my_clips\.csv.*row 3"):
        build_from_table(table, strict=True)


def test_minimal_table_gets_defaults(tmp_path):
    (tmp_path / "a.avi").write_bytes(b"")
    pd.DataFrame(
        {
            "subject": ["006"],
            "clip": ["x"],
            "video": ["a.avi"],
            "onset": [0],
            "offset": [9],
            "aus": ["12"],
        }
    ).to_csv(tmp_path / "t.csv", index=False)
    result = build_from_table(tmp_path / "t.csv", strict=True)
    row = result.frame.iloc[0]
    assert row["subject"] == "006"
    assert (row["apex"], row["apex_estimated"], row["fps"], row["n_frames"]) == (4, True, 200.0, 10)
    assert row["emotion"] == "" and row["aus"] == "12" and row["au_raw"] == "12"


def test_table_missing_column_is_named(tmp_path):
    pd.DataFrame(
        {"subject": ["a"], "clip": ["b"], "onset": [1], "aus": ["1"], "video": ["v"]}
    ).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ManifestError, match=r"t\.csv: missing column 'offset'"):
        build_from_table(tmp_path / "t.csv")


def test_table_fps_column(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    pd.DataFrame(
        {
            "subject": ["1", "2", "3", "4", "5"],
            "clip": ["x", "y", "z", "w", "v"],
            "video": ["a.mp4"] * 5,
            "onset": [0] * 5,
            "offset": [9] * 5,
            "aus": ["12", "4", "4", "4", "4"],
            "fps": ["30", "fast", "0", "-5", ""],
        }
    ).to_csv(tmp_path / "t.csv", index=False)
    result = build_from_table(tmp_path / "t.csv")
    assert result.frame["fps"].tolist() == [30.0, 200.0]  # an empty cell: the default
    assert [(s.kind, s.describe()) for s in result.skipped] == [
        ("bad row", f"{s}/{c} (row {r}): fps {v!r} is not a positive frame rate")
        for s, c, r, v in (("2", "y", 3, "fast"), ("3", "z", 4, "0"), ("4", "w", 5, "-5"))
    ]
    with pytest.raises(ManifestError, match=r"row 3.*fps 'fast' is not a positive frame rate"):
        build_from_table(tmp_path / "t.csv", strict=True)


def test_table_duplicates_are_per_dataset(tmp_path):
    write_frames(tmp_path / "f", range(1, 4))
    rows = [
        {
            "dataset": d,
            "subject": "s1",
            "clip": "c1",
            "frames_dir": "f",
            "onset": 1,
            "offset": 3,
            "aus": "12",
        }
        for d in ("a", "b", "a")
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    result = build_from_table(tmp_path / "t.csv")
    assert sorted(result.frame["dataset"]) == ["a", "b"]
    assert [s.reason for s in result.skipped] == ["clip listed again (first at row 2)"]


def test_table_ids_with_path_separators_are_skipped_and_similar_subjects_warn(tmp_path):
    write_frames(tmp_path / "f", range(1, 4))
    base = {"dataset": "d", "clip": "c1", "frames_dir": "f", "onset": 1, "offset": 3, "aus": "4"}
    subjects = ["../../../../ESCAPED", "grp/01", "sub1", "sub01"]
    pd.DataFrame([{**base, "subject": s} for s in subjects]).to_csv(tmp_path / "t.csv", index=False)
    result = build_from_table(tmp_path / "t.csv")
    assert result.frame["subject"].tolist() == ["sub1", "sub01"]
    assert [(s.subject, s.row) for s in result.skipped] == [
        ("../../../../ESCAPED", 2),
        ("grp/01", 3),
    ]
    assert all("path separator" in s.reason for s in result.skipped)
    assert any("'sub01', 'sub1' differ only by case" in w for w in result.warnings)
