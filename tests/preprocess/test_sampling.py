import numpy as np
import pytest

from au_llm.config import SAMPLING_STRATEGIES
from au_llm.preprocess.sampling import sample_indices


@pytest.mark.parametrize("strategy", SAMPLING_STRATEGIES)
@pytest.mark.parametrize("length", [1, 3, 6, 40])
def test_exactly_n_indices_in_range_starting_at_onset(strategy: str, length: int) -> None:
    numbers = np.arange(100, 100 + length)
    rng = np.random.default_rng(0)
    for n_frames in (2, 6, 16):
        idx = sample_indices(
            numbers, 100, 100 + length // 2, 100 + length - 1, n_frames, strategy, rng
        )
        assert idx.shape == (n_frames,)
        assert idx.dtype == np.int64
        assert idx[0] == 0
        assert idx.min() >= 0 and idx.max() < length
        assert np.all(np.diff(idx) >= 0)


def test_uniform_spans_onset_to_offset() -> None:
    numbers = np.arange(46, 57)  # 11 frames
    idx = sample_indices(numbers, 46, 50, 56, 6, "uniform", None)
    assert idx.tolist() == [0, 2, 4, 6, 8, 10]


def test_short_clip_repeats_frames() -> None:
    numbers = np.arange(10, 13)
    idx = sample_indices(numbers, 10, 11, 12, 6, "uniform", None)
    assert sorted(set(idx.tolist())) == [0, 1, 2]
    assert idx[-1] == 2


def test_onset_apex_ends_at_apex() -> None:
    numbers = np.arange(0, 21)
    idx = sample_indices(numbers, 0, 8, 20, 5, "onset_apex", None)
    assert idx.tolist() == [0, 2, 4, 6, 8]


def test_random_end_ends_between_apex_and_offset_and_is_reproducible() -> None:
    numbers = np.arange(0, 31)
    ends = set()
    for seed in range(60):
        idx = sample_indices(numbers, 0, 10, 30, 6, "random_end", np.random.default_rng(seed))
        again = sample_indices(numbers, 0, 10, 30, 6, "random_end", np.random.default_rng(seed))
        assert np.array_equal(idx, again)
        assert 10 <= idx[-1] <= 30
        ends.add(int(idx[-1]))
    assert len(ends) > 5  # the end really varies


def test_unknown_apex_is_clip_middle_and_frames_mapped_to_nearest() -> None:
    numbers = np.arange(100, 111)
    idx = sample_indices(numbers, 100, float("nan"), 110, 3, "onset_apex", None)
    assert idx.tolist() == [0, 3, 5]
    # Annotations outside the cached range are clipped to it.
    idx = sample_indices(numbers, 95, 105, 130, 3, "uniform", None)
    assert idx.tolist() == [0, 5, 10]


def test_errors() -> None:
    numbers = np.arange(5)
    with pytest.raises(ValueError, match="rng"):
        sample_indices(numbers, 0, 2, 4, 3, "random_end", None)
    with pytest.raises(ValueError, match="strategy"):
        sample_indices(numbers, 0, 2, 4, 3, "middle", None)
    with pytest.raises(ValueError, match="empty"):
        sample_indices(np.arange(0), 0, 2, 4, 3, "uniform", None)
