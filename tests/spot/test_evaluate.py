import math

import numpy as np
import pandas as pd
import pytest

from au_llm.spot.evaluate import evaluate_spotting, match_intervals
from au_llm.spot.intervals import interval_seconds, iou_matrix, kind_of, span_seconds


def _table(rows, **extra):
    """Intervals ``(recording, onset, offset, kind)`` as a table, with extra columns."""
    frame = pd.DataFrame(rows, columns=["recording", "onset", "offset", "kind"])
    return frame.assign(**extra)


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ((0, 9), (0, 4), 0.5),  # exactly half: 5 shared frames of 10
        ((0, 9), (0, 3), 0.4),
        ((0, 4), (5, 9), 0.0),  # touching ranges share no frame
        ((0, 5), (5, 9), 1 / 10),  # one shared frame, ten in either
        ((10, 29), (15, 24), 0.5),  # nested
        ((10, 29), (16, 24), 9 / 20),
        ((3, 3), (3, 3), 1.0),  # a single frame
    ],
)
def test_iou_counts_frames_with_both_ends_included(first, second, expected):
    assert iou_matrix(np.array([first]), np.array([second]))[0, 0] == pytest.approx(expected)
    assert iou_matrix(np.array([second]), np.array([first]))[0, 0] == pytest.approx(expected)


def test_iou_refuses_an_interval_ending_before_it_starts():
    with pytest.raises(ValueError, match="first interval 1: offset 3 before onset 5"):
        iou_matrix(np.array([[0, 1], [5, 3]]), np.array([[0, 1]]))


def test_a_hit_needs_half_the_union_and_half_is_enough():
    annotated = _table([("r", 0, 4, "micro"), ("r", 20, 39, "micro")])
    spotted = _table([("r", 0, 9, "micro"), ("r", 21, 39, "micro"), ("r", 100, 110, "micro")])
    result = evaluate_spotting(spotted, annotated)
    assert list(result.hits["spotted"]) == [0, 1]
    assert list(result.hits["annotated"]) == [0, 1]
    np.testing.assert_allclose(result.hits["iou"], [0.5, 19 / 20])
    counts = result.counts["micro"]
    assert (counts.tp, counts.fp, counts.fn) == (2, 1, 0)
    assert counts.precision == pytest.approx(2 / 3) and counts.recall == 1.0
    assert counts.f1 == pytest.approx(2 * 2 / (2 * 2 + 1))
    below = evaluate_spotting(_table([("r", 0, 10, "micro")]), annotated)
    assert below.counts["overall"].tp == 0  # 5 / 11 < 0.5


def test_each_annotation_and_each_spotted_interval_is_matched_once():
    # two spotted intervals on one annotation: one hit, one false positive
    one = _table([("r", 0, 9, "macro")])
    two = _table([("r", 0, 9, "macro"), ("r", 1, 9, "macro")])
    counts = evaluate_spotting(two, one).counts["overall"]
    assert (counts.tp, counts.fp, counts.fn) == (1, 1, 0)
    # one spotted interval at IoU 0.5 with two annotations: one hit, one miss
    halves = _table([("r", 0, 4, "macro"), ("r", 5, 9, "macro")])
    counts = evaluate_spotting(one, halves).counts["overall"]
    assert (counts.tp, counts.fp, counts.fn) == (1, 0, 1)


def test_optimal_matching_finds_the_most_hits_where_the_greedy_rule_does_not():
    spotted = np.array([[0, 11], [2, 11]])
    annotated = np.array([[2, 11], [0, 17]])
    # the first spotted interval prefers annotation 0 (IoU 10/12) over 1 (12/18); the second
    # only hits annotation 0
    greedy = match_intervals(spotted, annotated, matching="greedy")
    assert [(i, j) for i, j, _ in greedy] == [(0, 0)]
    optimal = match_intervals(spotted, annotated)
    assert [(i, j) for i, j, _ in optimal] == [(0, 1), (1, 0)]
    np.testing.assert_allclose([iou for *_, iou in optimal], [12 / 18, 1.0])
    with pytest.raises(ValueError, match="matching 'best'"):
        match_intervals(spotted, annotated, matching="best")


def test_among_as_many_hits_the_optimal_matching_takes_the_closer_ones():
    spotted = np.array([[0, 9], [0, 8]])
    annotated = np.array([[0, 8], [0, 9]])
    pairs = match_intervals(spotted, annotated)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1), (1, 0)]


def test_empty_predictions_and_empty_annotations():
    annotated = _table([("r", 0, 9, "micro"), ("r", 50, 80, "macro")])
    nothing = _table([])
    missed = evaluate_spotting(
        nothing.assign(AU01_prob=[], AU01_pred=[]), annotated.assign(aus=["1", "1"]), aus=[1]
    )
    overall = missed.counts["overall"]
    assert (overall.tp, overall.fp, overall.fn) == (0, 0, 2)
    assert math.isnan(overall.precision) and overall.recall == 0 and overall.f1 == 0
    assert missed.strs == 0.0 and missed.hits.empty
    spurious = evaluate_spotting(annotated, nothing).counts["overall"]
    assert (spurious.tp, spurious.fp, spurious.fn) == (0, 2, 0)
    assert spurious.precision == 0 and math.isnan(spurious.recall) and spurious.f1 == 0
    assert math.isnan(evaluate_spotting(nothing, nothing).counts["overall"].f1)


def test_kinds_are_scored_apart_and_summed_overall():
    annotated = _table([("r", 0, 9, "micro"), ("r", 50, 80, "macro"), ("r", 200, 260, "macro")])
    spotted = _table([("r", 0, 9, "macro"), ("r", 50, 80, "macro"), ("r", 300, 310, "micro")])
    result = evaluate_spotting(spotted, annotated)
    micro, macro, overall = (result.counts[k] for k in ("micro", "macro", "overall"))
    assert (micro.tp, micro.fp, micro.fn) == (0, 1, 1)  # the same frames, but spotted as macro
    assert (macro.tp, macro.fp, macro.fn) == (1, 1, 1)
    assert (overall.tp, overall.fp, overall.fn) == (1, 2, 2)
    assert overall.f1 == pytest.approx(2 / (2 + 4))


def test_intervals_only_meet_inside_their_recording():
    annotated = _table([("a", 0, 9, "micro")])
    spotted = _table([("b", 0, 9, "micro")])
    assert evaluate_spotting(spotted, annotated).counts["overall"].tp == 0
    keyed = evaluate_spotting(
        spotted.assign(subject="s1", recording="a"),
        annotated.assign(subject="s2"),
        by=["subject", "recording"],
    )
    assert keyed.counts["overall"].tp == 0


def test_au_f1_on_hits_and_the_str_score():
    annotated = _table(
        [("r", 0, 9, "micro"), ("r", 20, 29, "micro"), ("r", 40, 49, "micro")],
        aus=["1+2", "12", "4"],
    )
    spotted = _table(
        [("r", 0, 9, "micro"), ("r", 20, 29, "micro"), ("r", 60, 69, "micro")],
        AU01_prob=[0.9, 0.2, 0.9], AU01_pred=[1, 0, 1],
        AU02_prob=[0.1, 0.8, 0.9], AU02_pred=[0, 1, 1],
        AU12_prob=[0.2, 0.7, 0.9], AU12_pred=[0, 1, 1],
    )  # fmt: skip
    result = evaluate_spotting(spotted, annotated, aus=[1, 2, 12])
    # two hits; AU1: tp 1 -> F1 1; AU2: fn on hit 0, fp on hit 1 -> F1 0; AU12: tp 1 -> F1 1
    assert [m["binary_f1"] for m in result.per_au] == [1.0, 0.0, 1.0]
    assert result.au_f1 == pytest.approx(2 / 3) and result.au_f1_count == 3
    spot_f1 = result.counts["overall"].f1
    assert spot_f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert result.strs == pytest.approx(spot_f1 * 2 / 3)
    # the third spotted interval's decisions never count: it hit nothing
    assert result.per_au[0]["n_clips"] == 2
    with pytest.raises(ValueError, match="no column AU04_pred"):
        evaluate_spotting(spotted, annotated, aus=[4])


def test_bad_intervals_are_named():
    good = _table([("r", 0, 9, "micro")])
    with pytest.raises(ValueError, match="spotted interval 0: kind 'mini'"):
        evaluate_spotting(_table([("r", 0, 9, "mini")]), good)
    with pytest.raises(ValueError, match="annotated interval 0: onset 9, offset 3"):
        evaluate_spotting(good, _table([("r", 9, 3, "micro")]))
    with pytest.raises(ValueError, match="annotated intervals: no column kind"):
        evaluate_spotting(good, good.drop(columns="kind"))


def test_kind_is_the_duration_at_the_recordings_own_frame_rate():
    assert interval_seconds(0, 99, 200.0) == pytest.approx(0.5)
    assert kind_of(interval_seconds(0, 99, 200.0)) == "micro"
    assert kind_of(interval_seconds(0, 100, 200.0)) == "macro"
    assert kind_of(interval_seconds(0, 99, 30.0)) == "macro"
    assert kind_of(interval_seconds(0, 14, 30.0)) == "micro"
    assert kind_of(0.6, micro_max_seconds=0.6) == "micro"


def test_a_span_of_real_frame_times_keeps_a_variable_frame_rate():
    times = np.array([0.0, 0.04, 0.08, 0.5, 0.54])
    assert span_seconds(times, 0, 2, 25.0) == pytest.approx(0.12)  # = 3 frames at 25 fps
    assert span_seconds(times, 0, 2, 25.0) == pytest.approx(interval_seconds(0, 2, 25.0))
    assert span_seconds(times, 1, 4, 25.0) == pytest.approx(0.54)  # a pause inside
    assert kind_of(span_seconds(times, 1, 4, 25.0)) == "macro"
