"""Paired comparison of two runs on the same folds and seeds.

Two settings of an ablation are computed on identical folds, fold seeds and clips, so they can be
compared unit by unit instead of through two means and two spreads. A unit is one test subject
under one seed. For each unit and each run, :func:`subject_metrics` gives

* ``binary_f1``: the mean over AUs of the positive-class F1 on the subject's clips (an AU with no
  positive label and no positive decision has no F1 and is left out; a false positive on an AU the
  subject never shows counts as F1 0);
* ``roc_auc``: the mean over AUs of the AUC on the subject's clips (only AUs with both classes
  among them).

:func:`paired_difference` takes the per-unit differences (setting minus reference) and gives their
mean, a two-stage bootstrap interval (subjects drawn with replacement, then each drawn subject's
seeds with replacement: seeds of one subject share its clips, so they are not independent units)
and the Wilcoxon signed-rank p of the per-subject mean differences (exact for small samples).
Units where either run's metric is undefined are left out and counted.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from au_llm.metrics import au_column, binary_f1, known_rows, roc_auc

PAIRED_METRICS = ("binary_f1", "roc_auc")
"""The per-unit metrics compared by :func:`paired_difference`."""
UNIT_KEYS = ["seed", "dataset", "subject"]
"""The columns that name a unit: one test subject under one seed."""


@dataclass(frozen=True)
class PairedDifference:
    """A setting minus the reference on one metric, over paired units.

    Attributes:
        metric: ``binary_f1`` or ``roc_auc``.
        mean: Mean over units of the per-unit difference.
        low: Lower end of the bootstrap interval of ``mean``.
        high: Upper end of the bootstrap interval of ``mean``.
        level: Coverage of the interval (0.95).
        p_wilcoxon: Two-sided Wilcoxon signed-rank p of the per-subject mean differences; None
            when every difference is 0 or fewer than two subjects remain.
        n_subjects: Subjects with at least one defined unit.
        n_units: Units (subject x seed) compared.
        n_undefined: Units left out because a run's metric is undefined there.
    """

    metric: str
    mean: float
    low: float
    high: float
    level: float
    p_wilcoxon: float | None
    n_subjects: int
    n_units: int
    n_undefined: int

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for JSON)."""
        return asdict(self)


def _mean_defined(values: Sequence[float]) -> float:
    """Mean of the non-nan values, nan when there are none."""
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def subject_metrics(frame: pd.DataFrame, aus: Sequence[int]) -> pd.DataFrame:
    """Per unit (seed, dataset, subject): the mean binary F1 and the mean AUC over AUs.

    Args:
        frame: Pooled predictions with ``seed, dataset, subject`` and ``AUxx_prob``,
            ``AUxx_pred``, ``AUxx_true`` per AU (unknown labels are nan and left out).
        aus: The AUs to average over.

    Returns:
        One row per unit, sorted: ``seed, dataset, subject, n_clips`` and one column per
        :data:`PAIRED_METRICS` (nan where undefined).
    """
    rows = []
    for (seed, dataset, subject), clips in frame.groupby(UNIT_KEYS, sort=True):
        f1s, aucs = [], []
        for au in aus:
            truth = clips[au_column(au, "true")].to_numpy(dtype=float)
            known = known_rows(truth)
            y = truth[known].astype(int)
            f1s.append(binary_f1(y, clips[au_column(au, "pred")].to_numpy()[known].astype(int)))
            aucs.append(roc_auc(y, clips[au_column(au, "prob")].to_numpy(dtype=float)[known]))
        rows.append(
            {
                "seed": int(seed),
                "dataset": str(dataset),
                "subject": str(subject),
                "n_clips": len(clips),
                "binary_f1": _mean_defined(f1s),
                "roc_auc": _mean_defined(aucs),
            }
        )
    return pd.DataFrame(rows, columns=[*UNIT_KEYS, "n_clips", *PAIRED_METRICS])


def _check_paired(reference: pd.DataFrame, setting: pd.DataFrame) -> None:
    """Raise ValueError unless both tables hold the same units with the same clip counts."""
    keys = [*UNIT_KEYS, "n_clips"]
    ours = reference[keys].reset_index(drop=True)
    theirs = setting[keys].reset_index(drop=True)
    if not ours.equals(theirs):
        raise ValueError(
            "the two runs do not hold the same subjects, seeds and clip counts: not paired"
        )


def _bootstrap_means(diffs: pd.DataFrame, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot] means of the differences over two-stage resamples (subjects, then seeds)."""
    groups = [group["diff"].to_numpy() for _, group in diffs.groupby(["dataset", "subject"])]
    means = np.empty(n_boot)
    for b in range(n_boot):
        picked = rng.integers(len(groups), size=len(groups))
        draws = [groups[i][rng.integers(len(groups[i]), size=len(groups[i]))] for i in picked]
        means[b] = np.concatenate(draws).mean()
    return means


def _wilcoxon_p(per_subject: np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p (zeros dropped), None when it is undefined."""
    if np.count_nonzero(per_subject) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's note that ties/zeros make the exact p approximate
        return float(wilcoxon(per_subject, zero_method="wilcox").pvalue)


def paired_difference(
    reference: pd.DataFrame,
    setting: pd.DataFrame,
    metric: str,
    *,
    n_boot: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """The per-unit difference ``setting - reference`` of one metric, with its interval and p.

    Args:
        reference: :func:`subject_metrics` of the reference run.
        setting: :func:`subject_metrics` of the compared run (the same units).
        metric: One of :data:`PAIRED_METRICS`.
        n_boot: Bootstrap resamples.
        level: Coverage of the percentile interval.
        seed: Seed of the bootstrap's random generator (the interval is reproducible).

    Returns:
        The difference; nan mean and interval when no unit is defined in both runs.

    Raises:
        ValueError: The tables hold different units, or ``metric`` is unknown.
    """
    if metric not in PAIRED_METRICS:
        raise ValueError(f"metric {metric!r}: expected one of {', '.join(PAIRED_METRICS)}")
    _check_paired(reference, setting)
    diffs = reference[UNIT_KEYS].assign(
        diff=setting[metric].to_numpy(dtype=float) - reference[metric].to_numpy(dtype=float)
    )
    defined = diffs[~diffs["diff"].isna()]
    n_undefined = len(diffs) - len(defined)
    if defined.empty:
        nan = float("nan")
        return PairedDifference(metric, nan, nan, nan, level, None, 0, 0, n_undefined)
    means = _bootstrap_means(defined, n_boot, np.random.default_rng(seed))
    tail = (1 - level) / 2
    per_subject = defined.groupby(["dataset", "subject"])["diff"].mean().to_numpy()
    return PairedDifference(
        metric=metric,
        mean=float(defined["diff"].mean()),
        low=float(np.quantile(means, tail)),
        high=float(np.quantile(means, 1 - tail)),
        level=level,
        p_wilcoxon=_wilcoxon_p(per_subject),
        n_subjects=len(per_subject),
        n_units=len(defined),
        n_undefined=n_undefined,
    )
