"""Synthetic long recordings: timelines, determinism, and where the face actually moves."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import openpyxl
import pytest

from au_llm.synth.long import (
    LONG_STYLES,
    LongRenderer,
    iter_long_frames,
    plan_long_recordings,
    write_long_style,
)
from au_llm.synth.long.plan import MARGIN_SECONDS
from au_llm.synth.long.write import CASME3_HEADERS


@pytest.mark.parametrize("style", LONG_STYLES)
def test_timeline_kinds_durations_and_distractors(style: str) -> None:
    recordings = plan_long_recordings(style, subjects=2, recordings_per_subject=2, seconds=40)
    assert len({(r.subject, r.recording) for r in recordings}) == 4
    kinds = set()
    for rec in recordings:
        assert rec.n_frames == round(40 * rec.fps)
        margin = round(MARGIN_SECONDS * rec.fps)
        spans = [(e.onset, e.offset) for e in rec.expressions]
        assert len(spans) >= 4
        assert spans == sorted(spans)
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))  # no overlap
        assert rec.first_frame < spans[0][0] and spans[-1][1] < rec.last_frame
        for e in rec.expressions:
            kinds.add(e.kind)
            assert e.onset < e.apex < e.offset
            assert 1 <= len(e.aus) <= 3
            if e.kind == "micro":
                assert e.n_frames <= 0.5 * rec.fps
            else:
                assert e.n_frames > 0.5 * rec.fps and e.n_frames <= 4 * rec.fps
        distractors = [(b.start, b.end) for b in rec.blinks] + [(t.start, t.end) for t in rec.turns]
        assert rec.blinks
        for start, end in distractors:
            assert rec.first_frame <= start < end <= rec.last_frame
            assert all(end + margin < on or start - margin > off for on, off in spans)
    assert kinds == {"micro", "macro"}


def test_same_seed_same_plan_and_pixels_other_seed_differs() -> None:
    first = plan_long_recordings("casme3-lv", 1, 1, seconds=4, seed=5, size=0.25)
    again = plan_long_recordings("casme3-lv", 1, 1, seconds=4, seed=5, size=0.25)
    other = plan_long_recordings("casme3-lv", 1, 1, seconds=4, seed=6, size=0.25)
    assert first == again
    assert first != other
    frame = first[0].first_frame + 7
    one = LongRenderer(first[0]).render(frame)
    assert np.array_equal(one, LongRenderer(again[0]).render(frame))
    assert not np.array_equal(one, LongRenderer(other[0]).render(frame))


def test_face_moves_only_inside_expressions_and_blinks() -> None:
    """Without head motion and noise, the frames differ from a neutral frame exactly there.

    Inside each expression the mean absolute difference of the face region rises from zero at
    the onset to its peak at the apex; each blink is a separate bump outside every expression.
    """
    rec = plan_long_recordings("casme-sq-lv", 1, 1, seconds=9, seed=1, size=0.3)[0]
    framing = LongRenderer(rec).framing
    (cx, cy), half = framing.centre, round(0.6 * framing.face_width)
    face = np.s_[round(cy) - half : round(cy) + half, round(cx) - half : round(cx) + half]
    frames = {f: image[face] for f, image in iter_long_frames(rec, noise=False, head=False)}
    neutral = frames[rec.first_frame].astype(np.float32)
    diff = {f: np.abs(image.astype(np.float32) - neutral).mean() for f, image in frames.items()}
    moving = {f for f, value in diff.items() if value > 0}
    inside = set()
    for e in rec.expressions:
        span = range(e.onset, e.offset + 1)
        inside.update(span)
        peak = max(span, key=diff.__getitem__)
        assert abs(peak - e.apex) <= 1
        assert diff[e.onset] == 0 and diff[e.offset] == 0 and diff[e.apex] > 0.2
    blinking = set()
    for b in rec.blinks:
        blinking.update(range(b.start, b.end + 1))
        assert diff[(b.start + b.end) // 2] > 0.2
    assert rec.blinks and not blinking & inside
    assert moving <= inside | blinking


def test_head_motion_and_noise_move_every_frame() -> None:
    rec = plan_long_recordings("samm-lv", 1, 1, seconds=3, seed=2, size=0.25)[0]
    renderer = LongRenderer(rec)
    assert renderer.shape == (91, 170)  # grayscale, a quarter of 680x363
    neutral = [f for f in rec.frame_numbers if rec.expression_at(f) is None][:3]
    clean = [renderer.render(f, noise=False) for f in neutral]
    assert all(not np.array_equal(a, b) for a, b in zip(clean, clean[1:], strict=False))
    still = [renderer.render(f, noise=False, head=False) for f in neutral]
    assert all(np.array_equal(still[0], image) for image in still)
    hard = LongRenderer(replace(rec, difficulty="hard"))
    assert hard.noise_sigma > renderer.noise_sigma and hard.jitter_sigma > renderer.jitter_sigma


def test_an_hour_long_recording_finds_its_events_by_bisection() -> None:
    rec = plan_long_recordings("samm-lv", 1, 1, seconds=3600, difficulty="hard", size=0.1)[0]
    assert rec.n_frames == 720_000 and len(rec.expressions) > 500 and len(rec.turns) > 100
    frames = range(rec.first_frame, rec.last_frame + 1, 997)
    for frame in frames:
        linear = [e for e in rec.expressions if e.onset <= frame <= e.offset]
        assert rec.expression_at(frame) == (linear[0] if linear else None)
        blinks = [b for b in rec.blinks if b.start <= frame <= b.end]
        assert rec.blink_at(frame) == (blinks[0] if blinks else None)
    turn = rec.turns[-1]
    middle = turn.start + turn.ramp + turn.hold // 2
    drift = replace(rec, turns=())
    moved = np.subtract(rec.head_pose(middle), drift.head_pose(middle))
    assert np.allclose(moved, (*turn.shift, turn.roll))
    assert LongRenderer(rec).render(rec.last_frame).shape == (36, 68)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="long style"):
        plan_long_recordings("casme2")
    with pytest.raises(ValueError, match="recordings_per_subject"):
        plan_long_recordings("casme-sq-lv", recordings_per_subject=10)
    with pytest.raises(ValueError, match="seconds"):
        plan_long_recordings("samm-lv", seconds=1)
    rec = plan_long_recordings("casme3-lv", 1, 1, seconds=2, size=0.2)[0]
    with pytest.raises(ValueError, match="outside"):
        LongRenderer(rec).render(rec.last_frame + 1)


def _sheets(path: Path) -> dict[str, list[tuple[object, ...]]]:
    book = openpyxl.load_workbook(path)
    return {sheet.title: list(sheet.iter_rows(values_only=True)) for sheet in book.worksheets}


def test_written_layouts_are_the_real_ones(tmp_path: Path) -> None:
    assert [r.recording for r in plan_long_recordings("samm-lv", 1, 2, seconds=2)] == [
        "032_1",
        "032_2",
    ]
    samm = write_long_style("samm-lv", tmp_path / "samm", 1, 1, seconds=2, size=0.15)
    rec = samm.recordings[0]
    assert rec.frames_dir == samm.root / "032_1"
    assert (rec.frames_dir / "032_1_0001.jpg").is_file()
    assert len(list(rec.frames_dir.iterdir())) == rec.n_frames == 400
    rows = _sheets(samm.codings[0])["FACS_Movement_Only"]
    assert rows[9][:4] == ("Subject", "Filename", "Inducement Code", "Onset")  # row 10
    types = {row[7] for row in rows[10:]}
    assert types <= {"Micro - 1/2", "Macro"}

    sq = write_long_style("casme-sq-lv", tmp_path / "sq", 2, 1, seconds=3, size=0.2)
    rec = sq.recordings[0]
    number = rec.subject_number
    assert rec.frames_dir == sq.root / f"s{number}" / f"{number}_0101disgustingteeth"
    assert (rec.frames_dir / "img001.jpg").is_file() and (rec.frames_dir / "img090.jpg").is_file()
    sheets = _sheets(sq.codings[0])
    assert list(sheets) == ["CASFEcode_final", "naming rule1", "naming rule2"]
    assert sheets["naming rule1"][0] == (number, f"s{number}", 1)
    assert sheets["naming rule2"][0] == (101, "disgust1")
    assert {row[7] for row in sheets["CASFEcode_final"]} <= {"micro-expression", "macro-expression"}

    c3 = write_long_style("casme3-lv", tmp_path / "c3", 1, 1, seconds=4, size=0.2)
    rec = c3.recordings[0]
    assert rec.frames_dir == c3.root / rec.subject / "a" / "color"
    assert rec.subject.startswith("spNO.") and (rec.frames_dir / "0.jpg").is_file()
    micro, macro = (_sheets(path) for path in c3.codings)
    assert list(micro) == ["label"] and list(macro) == ["Sheet1"]
    assert micro["label"][0] == CASME3_HEADERS["micro"]
    assert len(micro["label"]) - 1 == sum(e.kind == "micro" for e in rec.expressions)


def test_cli_synth_long_and_its_refusals(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from au_llm.cli import main

    base = ["synth", "--out", str(tmp_path / "out"), "--subjects", "1"]
    tiny = ["--seconds", "2", "--size", "0.2", "--recordings-per-subject", "1"]
    assert main([*base, "--long", "--style", "casme3-lv", *tiny]) == 0
    assert "1 recordings written" in capsys.readouterr().out
    assert main([*base, "--style", "samm-lv", *tiny]) == 2
    assert "add --long" in capsys.readouterr().err
    assert main([*base, "--long", "--style", "casme2"]) == 2
    assert "choose one of them" in capsys.readouterr().err
    assert main([*base, "--style", "casme2", "--seconds", "3"]) == 2
    assert "--seconds applies to long recordings only" in capsys.readouterr().err


def test_cli_offers_every_style() -> None:
    from au_llm.cli import SYNTH_STYLE_CHOICES
    from au_llm.synth import STYLES
    from au_llm.synth.styles import COMPOSITE_STYLES

    assert set(SYNTH_STYLE_CHOICES) == {*STYLES, *COMPOSITE_STYLES, *LONG_STYLES}


@pytest.mark.parametrize("style", LONG_STYLES)
def test_every_interval_round_trips_through_the_builder(tmp_path: Path, style: str) -> None:
    from au_llm.data.build import build_manifest
    from au_llm.data.manifest import read_manifest, write_manifest

    # 200 fps: one 4-second recording (800 frames); 30 fps: two subjects, 2 x 9 s each (1080).
    subjects, recordings, seconds = (1, 1, 4.0) if style == "samm-lv" else (2, 2, 9.0)
    written = write_long_style(style, tmp_path, subjects, recordings, seconds=seconds, size=0.15)
    result = build_manifest(style, root=written.root, coding=list(written.codings))
    out = tmp_path / "long.csv"
    write_manifest(result.frame, out)
    frame = read_manifest(out)
    columns = ["subject", "recording", "frames_dir", "kind", "onset", "offset", "aus"]
    got = sorted(tuple(row) for row in frame[columns].astype(str).values.tolist())
    expected = sorted(
        (r.subject, r.recording, str(r.frames_dir), e.kind, str(e.onset), str(e.offset))
        + ("+".join(map(str, e.aus)),)
        for r, e in written.expressions
    )
    assert got == expected and len(expected) >= subjects * recordings
    assert not result.skipped
    apexes = {(row["subject"], row["onset"]): row for row in frame.to_dict("records")}
    for r, e in written.expressions:
        row = apexes[(r.subject, e.onset)]
        assert row["apex"] == e.apex or (style == "casme-sq-lv" and row["apex_estimated"])
        assert row["fps"] == r.fps and row["n_frames"] == e.n_frames
    if style == "casme-sq-lv":  # every seventh expression is written with apex 0, as real rows
        assert frame["apex_estimated"].sum() == len(expected) // 7 > 0
