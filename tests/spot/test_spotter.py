"""The rule spotter on a synthetic long recording (16 s, 320x240), with the real face landmarker.

One recording is too few to measure the spotter (``bench/spot_motion.py`` does that on held-out
subjects); these tests check that it finds the embedded expressions far better than random
intervals and that blinks and head turns draw fewer intervals than chance would place on them.
"""

import cv2
import numpy as np
import pandas as pd
import pytest

from au_llm.preprocess.landmarks import Landmarker
from au_llm.spot.config import SpotConfig
from au_llm.spot.evaluate import evaluate_spotting
from au_llm.spot.scan import measure_motion, spot_intervals
from au_llm.synth.long import iter_long_frames, plan_long_recordings


def _rgb(frames):
    for number, image in frames:
        yield number, cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image


def _overlaps(spotted, spans):
    """Spotted intervals overlapping any of the ``(first, last)`` spans."""
    return sum(
        any(on <= last and first <= off for first, last in spans)
        for on, off in zip(spotted["onset"], spotted["offset"], strict=True)
    )


def _chance(spotted, spans, first, last):
    """Expected number of spotted intervals overlapping the spans if placed uniformly."""
    room = last - first + 1
    expected = 0.0
    for on, off in zip(spotted["onset"], spotted["offset"], strict=True):
        length = off - on + 1
        covered = np.zeros(room, bool)  # onsets that would overlap a span
        for a, b in spans:
            covered[max(0, a - first - length + 1) : b - first + 1] = True
        expected += covered[: room - length + 1].mean()
    return expected


@pytest.fixture(scope="module")
def spotted():
    recording = plan_long_recordings(
        "casme-sq-lv", subjects=1, recordings_per_subject=1, seconds=16, seed=11, size=0.5
    )[0]
    cfg = SpotConfig()
    with Landmarker(num_faces=5) as landmarker:
        motion = measure_motion(_rgb(iter_long_frames(recording)), recording.fps, landmarker, cfg)
    table = spot_intervals(motion, cfg).assign(recording=recording.recording)
    return recording, table


def _random_f1(table, truth, first, last, draws=50):
    """Mean F1 of the spotted intervals' durations placed uniformly at random."""
    rng = np.random.default_rng(0)
    lengths = (table["offset"] - table["onset"]).to_numpy()
    scores = []
    for _ in range(draws):
        onsets = rng.integers(first, last - lengths + 1)
        shuffled = table.assign(onset=onsets, offset=onsets + lengths)
        scores.append(evaluate_spotting(shuffled, truth).counts["overall"].f1)
    return float(np.mean(scores))


def test_the_spotter_finds_the_embedded_expressions(spotted):
    recording, table = spotted
    truth = pd.DataFrame(
        [(recording.recording, e.onset, e.offset, e.kind) for e in recording.expressions],
        columns=["recording", "onset", "offset", "kind"],
    )
    counts = evaluate_spotting(table, truth).counts["overall"]
    assert counts.recall >= 0.6 and counts.precision >= 0.6, counts
    chance = _random_f1(table, truth, recording.first_frame, recording.last_frame)
    assert counts.f1 > chance + 0.4, (counts.f1, chance)


def test_blinks_and_head_turns_draw_fewer_intervals_than_chance(spotted):
    recording, table = spotted
    distractors = [(b.start, b.end) for b in recording.blinks]
    distractors += [(t.start, t.end) for t in recording.turns]
    assert distractors
    chance = _chance(table, distractors, recording.first_frame, recording.last_frame)
    assert _overlaps(table, distractors) < chance
