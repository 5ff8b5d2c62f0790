"""Detection metrics for AU predictions (plain numpy).

Conventions used throughout:

* Labels and decisions are 0/1 arrays; scores are probabilities in [0, 1]. A clip is predicted
  positive when its score is ``>= threshold`` (:func:`apply_thresholds`).
* **Binary F1** is the F1 of the positive class, ``2TP / (2TP + FP + FN)`` (MEB's convention).
  It is **nan** when ``TP + FP + FN == 0`` (no positive clip and no positive prediction): there is
  nothing to score, and neither 0 nor 1 would be honest. Averages skip nan values and report how
  many values were defined; pooled over all test clips of a protocol this is rarely nan.
* **"Macro" F1** is the mean of the positive-class F1 and the negative-class F1 (AU-LLM's
  convention). A class F1 that is undefined is left out of that mean, as scikit-learn's
  ``f1_score(average="macro")`` does with labels absent from both truth and prediction. The two
  conventions are not comparable: always label which one a number is.
* Precision is nan without predicted positives, recall is nan without positives, ROC AUC is nan
  when one class is absent.
* **An AU is undefined on a set of clips without a positive label** (:func:`decision_metrics`):
  every metric of it there is nan, whatever the decisions. Its "macro" F1 would otherwise be the
  negative class's F1 alone (1.0 when nothing is predicted) and its binary F1 0 or nan by the
  decisions alone: neither measures detecting the AU. Tables show it as n/a with its counts and
  leave it out of every mean.
* Averages over AUs, folds and seeds are ``nanmean`` values reported next to the number of defined
  values they were taken over.
* A label that is nan is unknown (an AU the clip's dataset does not code, see
  :mod:`au_llm.data.au_sets`): the clip is left out of that AU's metrics and thresholds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

COLUMN_KINDS: tuple[str, ...] = ("prob", "pred", "true")
"""Per-AU column suffixes of a predictions table: score, decision and label."""

METRIC_KEYS: tuple[str, ...] = ("binary_f1", "macro_f1", "precision", "recall", "roc_auc")
"""Metric names returned by :func:`per_au_metrics`."""

_AU_COLUMN = re.compile(r"^AU(\d{2,})_(prob|pred|true)$")


def _binary(values: np.ndarray | Sequence[int], name: str) -> np.ndarray:
    """Return ``values`` as a 1-D bool array, checking that it holds only 0 and 1."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        idx = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: expected only 0/1 values, got {arr[idx]!r} at index {idx}")
    return arr.astype(bool)


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = _binary(y_true, "y_true")
    p = _binary(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}")
    return t, p


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[int, int, int, int]:
    """Count the confusion-matrix cells of one AU.

    Args:
        y_true: [N] 0/1 labels.
        y_pred: [N] 0/1 decisions.

    Returns:
        ``(tp, fp, fn, tn)``.
    """
    t, p = _pair(y_true, y_pred)
    tp = int(np.sum(t & p))
    fp = int(np.sum(~t & p))
    fn = int(np.sum(t & ~p))
    tn = int(np.sum(~t & ~p))
    return tp, fp, fn, tn


def _f1_from_counts(tp: int, fp: int, fn: int) -> float:
    denom = 2 * tp + fp + fn
    return float("nan") if denom == 0 else 2 * tp / denom


def binary_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """F1 of the positive class, ``2TP / (2TP + FP + FN)``.

    Args:
        y_true: [N] 0/1 labels.
        y_pred: [N] 0/1 decisions.

    Returns:
        The F1 in [0, 1]; nan when ``TP + FP + FN == 0`` (no positive label and no positive
        decision, including N = 0).
    """
    tp, fp, fn, _ = confusion_counts(y_true, y_pred)
    return _f1_from_counts(tp, fp, fn)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean of the positive-class and negative-class F1 (AU-LLM's "macro" convention).

    Args:
        y_true: [N] 0/1 labels.
        y_pred: [N] 0/1 decisions.

    Returns:
        The mean of the defined class F1 values (a class absent from both labels and decisions has
        no F1 and is left out, as in scikit-learn's ``average="macro"``); nan when N = 0.
    """
    tp, fp, fn, tn = confusion_counts(y_true, y_pred)
    values = [_f1_from_counts(tp, fp, fn), _f1_from_counts(tn, fn, fp)]
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def precision(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Positive predictive value ``TP / (TP + FP)``.

    Args:
        y_true: [N] 0/1 labels.
        y_pred: [N] 0/1 decisions.

    Returns:
        The precision; nan without positive decisions.
    """
    tp, fp, _, _ = confusion_counts(y_true, y_pred)
    return float("nan") if tp + fp == 0 else tp / (tp + fp)


def recall(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Sensitivity ``TP / (TP + FN)``.

    Args:
        y_true: [N] 0/1 labels.
        y_pred: [N] 0/1 decisions.

    Returns:
        The recall; nan without positive labels.
    """
    tp, _, fn, _ = confusion_counts(y_true, y_pred)
    return float("nan") if tp + fn == 0 else tp / (tp + fn)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Return 1-based ranks of ``values`` [N], tied values sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=float)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve, from the Mann-Whitney U statistic.

    Equals the probability that a random positive clip scores higher than a random negative clip,
    ties counting one half.

    Args:
        y_true: [N] 0/1 labels.
        scores: [N] real scores (higher means more likely positive).

    Returns:
        The AUC in [0, 1]; nan when either class is absent.
    """
    t = _binary(y_true, "y_true")
    s = np.asarray(scores, dtype=float)
    if s.shape != t.shape:
        raise ValueError(f"y_true has shape {t.shape} but scores has shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores: expected finite values")
    n_pos = int(t.sum())
    n_neg = len(t) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum = float(_average_ranks(s)[t].sum())
    u_stat = rank_sum - n_pos * (n_pos + 1) / 2.0
    return u_stat / (n_pos * n_neg)


def au_column(au: int, kind: str) -> str:
    """Name of a predictions-table column, e.g. ``au_column(1, "prob") == "AU01_prob"``.

    Args:
        au: AU number (1-99).
        kind: ``"prob"``, ``"pred"`` or ``"true"``.

    Returns:
        The column name, with a two-digit AU number (OpenFace and py-feat naming).
    """
    if kind not in COLUMN_KINDS:
        raise ValueError(f"column kind {kind!r}: expected one of {', '.join(COLUMN_KINDS)}")
    if not 1 <= int(au) <= 99:
        raise ValueError(f"AU {au!r}: expected an AU number 1-99")
    return f"AU{int(au):02d}_{kind}"


def parse_au_columns(columns: Iterable[str]) -> list[int]:
    """Find the AUs of a predictions table from its column names.

    Args:
        columns: Column names; ``AUxx_prob``, ``AUxx_pred`` and ``AUxx_true`` are recognised,
            other names are ignored.

    Returns:
        Sorted AU numbers that have all three columns.

    Raises:
        ValueError: If an AU lacks one of its three columns (the message names them).
    """
    found: dict[int, set[str]] = {}
    for name in columns:
        match = _AU_COLUMN.match(str(name))
        if match:
            found.setdefault(int(match.group(1)), set()).add(match.group(2))
    missing = [
        au_column(au, kind)
        for au, kinds in sorted(found.items())
        for kind in COLUMN_KINDS
        if kind not in kinds
    ]
    if missing:
        raise ValueError(f"predictions table lacks the columns {', '.join(missing)}")
    return sorted(found)


def threshold_grid(start: float, stop: float, step: float) -> np.ndarray:
    """Evenly spaced thresholds from ``start`` to ``stop`` inclusive.

    Values are rounded to 10 decimals so that float steps land on round numbers: ``(0.10, 0.85,
    0.05)`` gives the 16 values 0.10, 0.15, ..., 0.85.

    Args:
        start: First threshold.
        stop: Last threshold (included when it lies on the grid, up to rounding).
        step: Positive spacing.

    Returns:
        [K] float64 thresholds.
    """
    if step <= 0:
        raise ValueError(f"threshold grid step {step}: expected > 0")
    if stop < start:
        raise ValueError(f"threshold grid [{start}, {stop}]: expected start <= stop")
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    return np.round(start + step * np.arange(count), 10)


def apply_thresholds(probs: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """Turn scores into decisions: positive when ``prob >= threshold``.

    Args:
        probs: [N, A] (or [N]) scores.
        thresholds: [A] per-AU thresholds, or one scalar.

    Returns:
        Int array of 0/1 decisions with the shape of ``probs``.
    """
    return (np.asarray(probs, dtype=float) >= np.asarray(thresholds, dtype=float)).astype(int)


def au_prediction_columns(
    aus: Sequence[int],
    probs: np.ndarray,
    thresholds: np.ndarray | float,
    labels: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The AU columns of every per-clip table (``predictions.csv`` and ``au-llm predict``).

    Args:
        aus: AU numbers, in the column order of ``probs``.
        probs: [N, A] probabilities.
        thresholds: [A] per-AU thresholds (or one scalar).
        labels: Optional [N, A] 0/1 ground truth.

    Returns:
        ``AUxx_prob, AUxx_pred`` (and ``AUxx_true`` with labels) per AU, in AU order.
    """
    preds = apply_thresholds(probs, thresholds)
    columns: dict[str, np.ndarray] = {}
    for j, au in enumerate(aus):
        columns[au_column(au, "prob")] = probs[:, j]
        columns[au_column(au, "pred")] = preds[:, j]
        if labels is not None:
            truth = np.asarray(labels, dtype=float)[:, j]
            columns[au_column(au, "true")] = truth if np.isnan(truth).any() else truth.astype(int)
    return columns


def known_rows(y_true: np.ndarray) -> np.ndarray:
    """[N] bool: the rows of one AU's labels that are known (not nan)."""
    arr = np.asarray(y_true)
    return ~np.isnan(arr) if arr.dtype.kind == "f" else np.ones(arr.shape, dtype=bool)


def _check_matrix(name: str, arr: np.ndarray, n_aus: int | None = None) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D [N, A] array, got shape {arr.shape}")
    if n_aus is not None and arr.shape[1] != n_aus:
        raise ValueError(f"{name}: expected {n_aus} AU columns, got shape {arr.shape}")
    return arr


def best_thresholds(y_true: np.ndarray, probs: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Per AU, the grid threshold that maximises binary F1 on the given clips.

    Used by the ``train`` policy (on the training clips' own predictions) and the ``test-oracle``
    policy (on the pooled test predictions, as AU-LLM's reference code does; optimistic).

    Selection rules: decisions are ``prob >= threshold``. A threshold at which F1 is undefined
    (no positive label and no positive decision) made no error and counts as F1 = 1, so an AU
    without positives gets the threshold that predicts no positives when the grid has one. Ties
    go to the threshold closest to 0.5, then to the lower one.

    Args:
        y_true: [N, A] 0/1 labels.
        probs: [N, A] scores.
        grid: [K] candidate thresholds.

    Returns:
        [A] float64 chosen thresholds.
    """
    y_true = _check_matrix("y_true", y_true)
    probs = _check_matrix("probs", probs, y_true.shape[1])
    if probs.shape[0] != y_true.shape[0]:
        raise ValueError(f"y_true has {y_true.shape[0]} rows but probs has {probs.shape[0]}")
    grid = np.asarray(grid, dtype=float).ravel()
    if grid.size == 0:
        raise ValueError("threshold grid is empty")
    # Candidate order encodes the tie-break: closest to 0.5 first, then lower.
    order = np.lexsort((grid, np.round(np.abs(grid - 0.5), 10)))
    chosen = np.empty(y_true.shape[1], dtype=float)
    for a in range(y_true.shape[1]):
        known = known_rows(y_true[:, a])
        scores = []
        for thr in grid[order]:
            f1 = binary_f1(y_true[known, a], apply_thresholds(probs[known, a], thr))
            scores.append(1.0 if math.isnan(f1) else f1)
        chosen[a] = grid[order][int(np.argmax(np.round(scores, 12)))]
    return chosen


def decision_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Binary F1, "macro" F1, precision and recall of one AU's decisions on a set of clips.

    Every table of metrics (the linear head's, text answers', explanations') computes them
    here, so an AU without a positive label is undefined everywhere alike.

    Args:
        y_true: [N] 0/1 labels (known ones only).
        y_pred: [N] 0/1 decisions.

    Returns:
        ``binary_f1, macro_f1, precision, recall``; all nan when no label is positive.
    """
    names = ("binary_f1", "macro_f1", "precision", "recall")
    if not _binary(y_true, "y_true").any():
        _pair(y_true, y_pred)
        return dict.fromkeys(names, float("nan"))
    functions = (binary_f1, macro_f1, precision, recall)
    return {name: f(y_true, y_pred) for name, f in zip(names, functions, strict=True)}


def au_metrics(y_true: np.ndarray, probs: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    """All metrics of one AU on one set of clips (nan labels left out).

    Args:
        y_true: [N] 0/1 labels, nan where unknown.
        probs: [N] scores.
        preds: [N] 0/1 decisions.

    Returns:
        ``binary_f1, macro_f1, precision, recall, roc_auc`` (floats; all nan when no known label
        is positive, see :func:`decision_metrics`) and the counts ``n_clips, n_pos, n_neg,
        n_pred_pos, tp, fp, fn, tn`` (ints).
    """
    known = known_rows(y_true)
    y_true, probs, preds = (
        np.asarray(y_true)[known],
        np.asarray(probs)[known],
        np.asarray(preds)[known],
    )
    tp, fp, fn, tn = confusion_counts(y_true, preds)
    return {
        **decision_metrics(y_true, preds),
        "roc_auc": roc_auc(y_true, probs),
        "n_clips": tp + fp + fn + tn,
        "n_pos": tp + fn,
        "n_neg": fp + tn,
        "n_pred_pos": tp + fp,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def per_au_metrics(
    y_true: np.ndarray, probs: np.ndarray, preds: np.ndarray, aus: Sequence[int]
) -> list[dict[str, float]]:
    """Metrics of each AU on the pooled clips.

    Args:
        y_true: [N, A] 0/1 labels.
        probs: [N, A] scores.
        preds: [N, A] 0/1 decisions.
        aus: [A] AU numbers, in column order.

    Returns:
        A list of A dicts: ``au`` plus the keys of :func:`au_metrics`.
    """
    y_true = _check_matrix("y_true", y_true, len(aus))
    probs = _check_matrix("probs", probs, len(aus))
    preds = _check_matrix("preds", preds, len(aus))
    if not y_true.shape[0] == probs.shape[0] == preds.shape[0]:
        raise ValueError(
            f"row counts differ: y_true {y_true.shape[0]}, probs {probs.shape[0]}, "
            f"preds {preds.shape[0]}"
        )
    return [
        {"au": int(au), **au_metrics(y_true[:, a], probs[:, a], preds[:, a])}
        for a, au in enumerate(aus)
    ]


def always_positive_metrics(y_true: np.ndarray, aus: Sequence[int]) -> list[dict[str, float]]:
    """Metrics of the always-positive baseline (every clip predicted positive), per AU.

    With P positives and M negatives its binary F1 is ``2P / (2P + M)`` and its "macro" F1 is half
    of that when both classes occur (the negative class gets F1 = 0); both are nan when P = 0
    (the AU is undefined there, see :func:`decision_metrics`).

    Args:
        y_true: [N, A] 0/1 labels.
        aus: [A] AU numbers, in column order.

    Returns:
        A list of A dicts: ``au``, ``binary_f1``, ``macro_f1``.
    """
    y_true = _check_matrix("y_true", y_true, len(aus))
    rows = []
    for a, au in enumerate(aus):
        truth = y_true[known_rows(y_true[:, a]), a]
        values = decision_metrics(truth, np.ones(truth.shape[0], dtype=int))
        rows.append({"au": int(au), **{k: values[k] for k in ("binary_f1", "macro_f1")}})
    return rows


def per_fold_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    preds: np.ndarray,
    folds: np.ndarray | Sequence[str],
    aus: Sequence[int],
) -> list[dict[str, float]]:
    """Metrics of each AU within each fold.

    Args:
        y_true: [N, A] 0/1 labels.
        probs: [N, A] scores.
        preds: [N, A] 0/1 decisions.
        folds: [N] fold name of each clip (compared as strings).
        aus: [A] AU numbers, in column order.

    Returns:
        One dict per (fold, AU), folds in order of first appearance: ``fold`` (str) plus the
        keys of :func:`per_au_metrics`.
    """
    fold_arr = np.asarray([str(f) for f in folds])
    if fold_arr.shape[0] != np.asarray(y_true).shape[0]:
        raise ValueError(f"folds has {fold_arr.shape[0]} entries, y_true has {len(y_true)} rows")
    y_true, probs, preds = np.asarray(y_true), np.asarray(probs), np.asarray(preds)
    rows: list[dict[str, float]] = []
    for fold in dict.fromkeys(fold_arr.tolist()):
        mask = fold_arr == fold
        for row in per_au_metrics(y_true[mask], probs[mask], preds[mask], aus):
            rows.append({"fold": fold, **row})
    return rows


def nanmean_count(values: Iterable[float]) -> tuple[float, int]:
    """Mean of the defined (non-nan) values and how many there were.

    Args:
        values: Numbers, possibly nan.

    Returns:
        ``(mean, n_defined)``; the mean is nan when nothing is defined.
    """
    arr = np.asarray(list(values), dtype=float)
    defined = arr[~np.isnan(arr)]
    return (float(defined.mean()) if defined.size else float("nan")), int(defined.size)


def fold_mean(
    fold_rows: Sequence[Mapping[str, float]],
    aus: Sequence[int],
    keys: Sequence[str] = ("binary_f1", "macro_f1"),
) -> list[dict[str, float]]:
    """Per AU, the mean over folds of per-fold metrics (folds where a metric is nan are skipped).

    Args:
        fold_rows: Output of :func:`per_fold_metrics`.
        aus: AU numbers to report.
        keys: Metrics to average.

    Returns:
        One dict per AU: ``au``, ``n_folds``, and for each key ``<key>_fold_mean`` and
        ``<key>_n_folds`` (folds where the metric is defined).
    """
    out = []
    for au in aus:
        rows = [r for r in fold_rows if int(r["au"]) == int(au)]
        entry: dict[str, float] = {"au": int(au), "n_folds": len(rows)}
        for key in keys:
            mean, count = nanmean_count(r[key] for r in rows)
            entry[f"{key}_fold_mean"] = mean
            entry[f"{key}_n_folds"] = count
        out.append(entry)
    return out


def summarise(
    rows: Sequence[Mapping[str, float]], keys: Sequence[str] = METRIC_KEYS
) -> dict[str, float]:
    """Average per-AU metrics over AUs (mean of per-AU values, nan values skipped).

    Args:
        rows: One dict per AU (e.g. from :func:`per_au_metrics`).
        keys: Metrics to average.

    Returns:
        For each key, ``<key>`` (the mean over AUs where it is defined) and ``<key>_n_aus`` (how
        many AUs that is).
    """
    out: dict[str, float] = {}
    for key in keys:
        mean, count = nanmean_count(r[key] for r in rows)
        out[key] = mean
        out[f"{key}_n_aus"] = count
    return out


def aggregate_seeds(
    per_seed: Sequence[Mapping[str, float]],
) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of metrics over seeds.

    Args:
        per_seed: One dict of metric name -> value per seed (keys may differ; a missing key or a
            nan value counts as undefined for that seed).

    Returns:
        For each metric name: ``mean`` (over seeds where it is defined), ``std`` (sample standard
        deviation, ddof=1, over those seeds; nan when fewer than two seeds define it, since one run
        says nothing about spread) and ``n`` (number of seeds where it is defined).
    """
    keys = list(dict.fromkeys(k for d in per_seed for k in d))
    out: dict[str, dict[str, float]] = {}
    for key in keys:
        arr = np.asarray([d.get(key, float("nan")) for d in per_seed], dtype=float)
        defined = arr[~np.isnan(arr)]
        out[key] = {
            "mean": float(defined.mean()) if defined.size else float("nan"),
            "std": float(defined.std(ddof=1)) if defined.size >= 2 else float("nan"),
            "n": int(defined.size),
        }
    return out
