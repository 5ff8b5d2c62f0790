"""Synthetic long recordings: timelines, determinism, and where the face actually moves."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from au_llm.synth.long import LONG_STYLES, LongRenderer, iter_long_frames, plan_long_recordings
from au_llm.synth.long.plan import MARGIN_SECONDS


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
