import logging

import pytest

from au_llm.data.errata import OLD_ALTERNATIVES, OLD_INVALID, Erratum
from au_llm.data.errata_ledger import ClipErrata
from au_llm.data.manifest import ManifestError
from au_llm.data.report import BuildReport
from au_llm.data.rows import (
    BAD_TIMING,
    FRAMES_MISSING,
    ClipLog,
    SkipClipError,
    count_frames,
    read_aus,
    read_timing,
)
from tests.data.helpers import write_frames


def errata(**frames: int) -> ClipErrata:
    """A clip's errata: one for an invalid value per given field."""
    return ClipErrata(
        {
            name: Erratum("casme2", "sub01", "EP01", name, OLD_INVALID, str(v), "MEB")
            for name, v in frames.items()
        }
    )


def no_errata() -> ClipErrata:
    return ClipErrata()


def test_frame_cells_are_read_in_every_spreadsheet_spelling():
    log = ClipLog()
    assert read_timing(46, "50.0", " 60 ", no_errata(), log) == (46, 50, 60, False)
    assert read_timing(46.0, "50?", 60, no_errata(), log) == (46, 50, 60, False)
    assert log.notes == ["apex '50?' marked unclear; 50 used"]
    assert log.warnings == []


def test_a_missing_apex_becomes_the_middle_frame_and_is_warned_about():
    log = ClipLog()
    assert read_timing(40, "/", 50, no_errata(), log) == (40, 45, 50, True)
    assert log.warnings == ["apex '/' is not a frame number; middle frame 45 used"]
    quiet = ClipLog()
    assert read_timing(40, None, 50, no_errata(), quiet, warn_missing_apex=False)[1:] == (
        45,
        50,
        True,
    )
    assert quiet.warnings == [] and quiet.notes == ["apex is empty; middle frame 45 used"]


def test_errata_repair_only_what_the_file_gets_wrong():
    log = ClipLog()
    assert read_timing("", 70, 90, errata(onset=60), log) == (60, 70, 90, False)
    assert log.notes == ["onset is empty; 60 used (erratum, MEB)"]
    inverted = ClipLog()
    assert read_timing(95, 70, 90, errata(onset=60), inverted)[:3] == (60, 70, 90)
    assert "onset 95 is after offset 90; errata give 60-90 (onset corrected)" in inverted.notes
    valid = ClipLog()
    assert read_timing(60, 70, 90, errata(apex=72), valid)[1] == 70
    assert valid.notes == ["erratum apex 72 not applied: the file's apex 70 is valid"]


def test_unusable_timing_skips_the_clip_naming_the_cell():
    with pytest.raises(SkipClipError, match="onset 'x' is not a frame number") as caught:
        read_timing("x", 5, 9, no_errata(), ClipLog())
    assert caught.value.kind == BAD_TIMING
    with pytest.raises(SkipClipError, match="onset 12 is after offset 9"):
        read_timing(12, 5, 9, no_errata(), ClipLog())


def test_frames_are_counted_and_gaps_skip_the_clip(tmp_path):
    folder = tmp_path / "EP01"
    write_frames(folder, [1, 2, 3, 5])
    assert count_frames(folder, 1, 3, ClipLog()) == 3
    with pytest.raises(SkipClipError, match="4") as caught:
        count_frames(folder, 1, 5, ClipLog())
    assert caught.value.kind == FRAMES_MISSING
    with pytest.raises(SkipClipError, match="not found"):
        count_frames(tmp_path / "nowhere", 1, 3, ClipLog())


def test_au_cells_are_canonical_and_alternatives_are_warnings():
    log = ClipLog()
    assert read_aus("L10+4", no_errata(), log) == "4+10"
    assert log.warnings == []
    alternatives = ClipLog()
    assert read_aus("L12 or L14", no_errata(), alternatives) in ("12", "14")
    assert alternatives.warnings, "an unresolved alternative must be a warning"
    resolved = ClipLog()
    erratum = Erratum("casme2", "sub01", "EP01", "aus", OLD_ALTERNATIVES, "14", "MEB")
    assert read_aus("L12 or L14", ClipErrata({"aus": erratum}), resolved) == "14"
    assert resolved.notes == [
        "AU alternatives in 'L12 or L14' resolved by erratum to '14' (erratum, MEB)"
    ]
    assert resolved.warnings == []


def test_a_build_report_names_file_row_and_clip_and_raises_when_strict(tmp_path, caplog):
    source = tmp_path / "coding.xlsx"
    report = BuildReport(source, strict=False)
    with caplog.at_level(logging.WARNING):
        report.skip(BAD_TIMING, "onset is empty", "sub01", "EP01", 7)
        report.warn("apex estimated", "sub01", "EP02", None)
    assert report.skipped[0].describe() == "sub01/EP01 (row 7): onset is empty"
    assert report.warnings == ["sub01/EP02: apex estimated"]
    assert "sub01/EP01 (row 7): onset is empty; clip left out" in caplog.text
    strict = BuildReport(source, strict=True)
    with pytest.raises(ManifestError, match=r"coding.xlsx, row 7, clip sub01/EP01: onset is empty"):
        strict.skip(BAD_TIMING, "onset is empty", "sub01", "EP01", 7)
    assert strict.skipped == []


def test_an_erratum_naming_the_exact_value_replaces_even_a_valid_one():
    exact = ClipErrata(
        {
            "apex": Erratum(
                "casme", "sub01", "EP01", "apex", "70", "95", "MEB", table="e.csv", line=2
            )
        }
    )
    log = ClipLog()
    assert read_timing(60, 70, 90, exact, log) == (60, 75, 90, True)
    assert log.notes[0] == "apex '70' replaced by 95 (erratum e.csv row 2, MEB)"
    assert log.warnings == [
        "apex 95 (apex from erratum e.csv row 2, MEB) lies outside onset..offset 60-90; "
        "middle frame 75 used"
    ]
    assert exact.used == [exact.found["apex"]]


def test_an_erratum_for_an_invalid_value_is_declined_where_the_value_is_valid():
    clip = errata(offset=95)
    log = ClipLog()
    assert read_timing(60, 70, 90, clip, log)[2] == 90
    assert clip.declined == {clip.found["offset"]: "the file's offset 90 is valid"}
    assert clip.used == []
