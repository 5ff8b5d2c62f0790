import numpy as np
import pytest

from au_llm.spot.peaks import contrast, smooth, spot_peaks, threshold


def _bumps(n, centres, heights, width=3.0, seed=0):
    t = np.arange(n, dtype=float)
    score = np.random.default_rng(seed).uniform(0, 0.05, n)
    for c, h in zip(centres, heights, strict=True):
        score += h * np.exp(-0.5 * ((t - c) / width) ** 2)
    return score


def test_peaks_above_the_threshold_become_intervals_peak_plus_minus_k():
    score = _bumps(600, [100, 300, 450], [1.0, 0.8, 0.1])
    peaks = spot_peaks(score, k=10, p=0.3, smooth_frames=1)
    assert [p.apex for p in peaks] == [100, 300]  # the 0.1 bump is under the threshold
    assert [(p.onset, p.offset) for p in peaks] == [(90, 110), (290, 310)]
    assert peaks[0].score == pytest.approx(score[100])


def test_peaks_closer_than_k_keep_the_higher_one_and_intervals_stop_at_the_ends():
    score = _bumps(200, [3, 100, 106, 197], [1.0, 0.9, 1.0, 1.0], width=1.0)
    peaks = spot_peaks(score, k=10, p=0.2, smooth_frames=1)
    assert [p.apex for p in peaks] == [3, 106, 197]
    assert (peaks[0].onset, peaks[0].offset) == (0, 13)
    assert (peaks[-1].onset, peaks[-1].offset) == (187, 199)


def test_threshold_is_mean_plus_p_times_max_minus_mean():
    score = np.array([0.0, 1.0, 2.0, 5.0, np.nan])
    assert threshold(score, 0.0) == pytest.approx(2.0)
    assert threshold(score, 1.0) == pytest.approx(5.0)
    assert threshold(score, 0.5) == pytest.approx(3.5)
    assert np.isnan(threshold(np.full(3, np.nan), 0.5))


def test_a_flat_or_undefined_score_gives_no_interval_and_nan_frames_never_peak():
    assert spot_peaks(np.ones(50), k=5, p=0.5, smooth_frames=3) == []
    assert spot_peaks(np.full(50, np.nan), k=5, p=0.5, smooth_frames=3) == []
    score = _bumps(300, [100, 200], [1.0, 1.0])
    score[195:206] = np.nan  # no face around the second bump
    assert [p.apex for p in spot_peaks(score, k=10, p=0.3, smooth_frames=1)] == [100]
    with pytest.raises(ValueError, match="k = 0"):
        spot_peaks(score, k=0, p=0.3, smooth_frames=1)
    with pytest.raises(ValueError, match="p = 1.5"):
        spot_peaks(score, k=3, p=1.5, smooth_frames=1)


def test_contrast_cancels_a_drift_and_keeps_a_bump():
    ramp = np.linspace(0, 10, 100)
    np.testing.assert_allclose(contrast(ramp, 5), 0, atol=1e-9)
    score = ramp.copy()
    score[50] += 2.0
    out = contrast(score, 5)
    assert out[50] == pytest.approx(2.0) and out.argmax() == 50
    assert (out[:5] == 0).all() and (out[-5:] == 0).all()  # no neighbour at the ends
    assert (out >= 0).all()
    # a recording shorter than 2k + 1 uses the largest distance it allows
    assert contrast(np.array([0.0, 3.0, 0.0]), 10)[1] == pytest.approx(3.0)


def test_smoothing_averages_defined_neighbours_only():
    score = np.array([1.0, np.nan, 3.0, 5.0, 7.0])
    out = smooth(score, 3)
    assert np.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2, 3, 4]], [1.0, 4.0, 5.0, 6.0])
    np.testing.assert_array_equal(smooth(score, 1), score)
