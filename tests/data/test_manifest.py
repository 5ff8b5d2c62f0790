"""Manifest files: writing, reading and validating, AU labels."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from au_llm.data.manifest import (
    MANIFEST_COLUMNS,
    ManifestError,
    au_label_matrix,
    read_manifest,
    write_manifest,
)
from au_llm.data.spreadsheets import build_samm


def test_write_and_read_round_trip(tmp_path, samm):
    frame = build_samm(*samm).frame
    out = tmp_path / "out" / "samm.csv"
    write_manifest(frame, out)
    assert not list(out.parent.glob(".*.tmp"))
    back = read_manifest(out)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert back["subject"].tolist()[0] == "006"
    for column in ("onset", "apex", "offset", "n_frames"):
        assert back[column].dtype == np.int64
    assert back["apex_estimated"].dtype == bool
    assert set(back["aus"]) >= {"12+15", "14"}


def test_read_manifest_validates(tmp_path):
    base = {
        "dataset": ["custom"],
        "subject": ["sub01"],
        "clip": ["c"],
        "frames_dir": ["f/c"],
        "onset": ["1"],
        "apex": ["2"],
        "offset": ["3"],
        "n_frames": ["3"],
        "aus": ["7+4"],
    }
    path = tmp_path / "m.csv"
    pd.DataFrame(base).to_csv(path, index=False)
    frame = read_manifest(path)
    assert frame["subject"].tolist() == ["sub01"]
    assert frame["aus"].tolist() == ["4+7"]
    assert Path(frame["frames_dir"].iloc[0]) == tmp_path / "f" / "c"
    assert frame["fps"].iloc[0] == 200.0 and not frame["apex_estimated"].iloc[0]
    pd.DataFrame({**base, "onset": ["x"]}).to_csv(path, index=False)
    with pytest.raises(ManifestError, match=r"m\.csv, row 2: onset 'x' is not an integer"):
        read_manifest(path)
    pd.DataFrame({**base, "aus": ["L12"]}).to_csv(path, index=False)
    with pytest.raises(ManifestError, match=r"row 2: 'L12' is not a canonical AU list"):
        read_manifest(path)
    pd.DataFrame({key: value for key, value in base.items() if key != "apex"}).to_csv(path)
    with pytest.raises(ManifestError, match=r"m\.csv: missing column 'apex'"):
        read_manifest(path)
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "none.csv")


def test_write_manifest_requires_the_columns(tmp_path):
    with pytest.raises(ManifestError, match="'dataset'"):
        write_manifest(pd.DataFrame({"clip": ["a"]}), tmp_path / "m.csv")


def test_au_label_matrix():
    frame = pd.DataFrame({"clip": ["a", "b", "c"], "aus": ["4+7", "", "12"]})
    labels = au_label_matrix(frame, [4, 12, 1])
    assert labels.dtype == np.float32 and labels.shape == (3, 3)
    np.testing.assert_array_equal(labels, [[1, 0, 0], [0, 0, 0], [0, 1, 0]])
    assert au_label_matrix(frame, []).shape == (3, 0)
    with pytest.raises(ManifestError, match="clip b"):
        au_label_matrix(pd.DataFrame({"clip": ["b"], "aus": ["L12"]}), [12])


def _manifest_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    """A minimal manifest CSV; each row overrides the defaults of one clip."""
    base = {
        "dataset": "custom",
        "subject": "s1",
        "clip": "c",
        "frames_dir": "f",
        "onset": "1",
        "apex": "2",
        "offset": "3",
        "n_frames": "3",
        "aus": "4",
    }
    pd.DataFrame([{**base, **row} for row in rows]).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("subject", "../../../../ESCAPED"),
        ("subject", "grp/01"),
        ("clip", "a\\b"),
        ("dataset", ".."),
        ("subject", ""),
        ("clip", "c" * 101),
        ("subject", "\u6c49" * 12),
    ],
)
def test_ids_that_are_not_one_safe_name_are_rejected_naming_the_row(tmp_path, column, value):
    path = _manifest_csv(tmp_path / "m.csv", [{}, {"clip": "d", column: value}])
    with pytest.raises(ManifestError, match=rf"m\.csv, row 3: {column}"):
        read_manifest(path)


def test_duplicate_rows_are_rejected_naming_both_rows(tmp_path):
    path = _manifest_csv(tmp_path / "m.csv", [{}, {"clip": "d"}, {}])
    with pytest.raises(ManifestError, match=r"row 4: clip custom/s1/c is listed again.*row 2"):
        read_manifest(path)


def test_subject_ids_that_differ_only_by_case_or_padding_warn(tmp_path, caplog):
    rows = [{"subject": "sub1"}, {"subject": "sub01"}, {"subject": "SUB 01"}, {"subject": "s2"}]
    path = _manifest_csv(tmp_path / "m.csv", rows)
    with caplog.at_level("WARNING"):
        read_manifest(path)
    assert "subjects 'SUB 01', 'sub01', 'sub1' differ only by case, padding or spaces" in (
        caplog.text
    )
    assert "'s2'" not in caplog.text


def test_an_id_of_the_longest_length_is_accepted_and_one_more_is_refused(tmp_path):
    path = _manifest_csv(tmp_path / "m.csv", [{"clip": "c" * 100, "subject": "\u6c49" * 11}])
    assert read_manifest(path)["clip"].tolist() == ["c" * 100]
    _manifest_csv(path, [{"clip": "c" * 250}])
    with pytest.raises(
        ManifestError, match=r"row 2: clip 'c+'\.\.\. is too long \(250 .*at most 100"
    ):
        read_manifest(path)


@pytest.mark.parametrize("fps", ["0", "-5", "inf", "nan", "fast"])
def test_a_frame_rate_that_is_not_positive_is_refused_naming_the_row(tmp_path, fps):
    path = _manifest_csv(tmp_path / "m.csv", [{"fps": "25"}, {"clip": "d", "fps": fps}])
    with pytest.raises(ManifestError, match=rf"m\.csv, row 3: fps '{fps}': expected a positive"):
        read_manifest(path)


@pytest.mark.parametrize("aus", ["0", "150", "4+3", "12+47"])
def test_au_codes_that_facs_does_not_define_are_refused_naming_the_row(tmp_path, aus):
    path = _manifest_csv(tmp_path / "m.csv", [{"aus": aus}])
    bad = [au for au in aus.split("+") if au not in ("4", "12")][0]
    with pytest.raises(ManifestError, match=rf"row 2: .*AU {bad} is not a FACS AU code"):
        read_manifest(path)


def test_an_apex_outside_the_clip_warns_naming_the_clip_and_uses_the_middle(tmp_path, caplog):
    path = _manifest_csv(
        tmp_path / "m.csv", [{"apex": "9", "onset": "1", "offset": "5"}, {"clip": "d"}]
    )
    with caplog.at_level("WARNING"):
        frame = read_manifest(path)
    assert "row 2: clip custom/s1/c: apex 9 outside onset..offset 1..5" in caplog.text
    assert frame["apex"].tolist() == [3, 2] and frame["apex_estimated"].tolist() == [True, False]
    assert "middle frame 3 used" in frame["notes"].iloc[0]
    _manifest_csv(path, [{"onset": "5", "apex": "4", "offset": "3"}])
    with pytest.raises(ManifestError, match="row 2: onset 5 is after offset 3"):
        read_manifest(path)


def test_ids_a_spreadsheet_would_run_are_escaped_in_the_file_and_read_back(tmp_path):
    rows = [
        {"subject": "=HYPERLINK(1)", "clip": "+c", "au_raw": "-12"},
        {"subject": "@s", "clip": "-d", "notes": "'kept"},
    ]
    frame = read_manifest(_manifest_csv(tmp_path / "in.csv", rows))
    out = tmp_path / "out.csv"
    write_manifest(frame, out)
    text = out.read_text()
    assert "'=HYPERLINK(1),'+c" in text and "'@s,'-d" in text and "''kept" in text
    pd.testing.assert_frame_equal(read_manifest(out), frame)


def test_columns_a_manifest_does_not_define_are_ignored_with_a_warning(tmp_path, caplog):
    """An ``aus_unknown`` column never overrides coded labels: labels come from ``aus`` only."""
    path = _manifest_csv(
        tmp_path / "m.csv", [{"dataset": "casme2", "aus": "4+12", "aus_unknown": "4", "mine": "x"}]
    )
    with caplog.at_level("WARNING", logger="au_llm.data.manifest"):
        frame = read_manifest(path)
    assert list(frame.columns) == MANIFEST_COLUMNS
    assert "m.csv: column 'aus_unknown', 'mine' ignored: not a manifest column" in caplog.text
    np.testing.assert_array_equal(au_label_matrix(frame, [4, 12]), [[1, 1]])


def test_recording_columns_are_kept_and_other_columns_still_ignored(tmp_path, caplog):
    """``recording`` and ``kind`` of a long-video manifest survive reading; ``mine`` does not."""
    rows = [{"recording": "006_1", "kind": "micro", "mine": "x", "clip": "c1"}]
    rows.append({"recording": "006_1", "kind": "", "mine": "y", "clip": "c2"})
    path = _manifest_csv(tmp_path / "m.csv", rows)
    with caplog.at_level("WARNING", logger="au_llm.data.manifest"):
        frame = read_manifest(path)
    assert list(frame.columns) == [*MANIFEST_COLUMNS, "recording", "kind"]
    assert frame["kind"].tolist() == ["micro", ""]
    assert "m.csv: column 'mine' ignored" in caplog.text
    rows[1]["kind"] = "blink"
    with pytest.raises(ManifestError, match="row 3: kind 'blink' is not an expression kind"):
        read_manifest(_manifest_csv(tmp_path / "m.csv", rows))
