"""Spotted intervals scored against annotated ones, by the MEGC rules, and the AUs of the hits.

**Hit.** A spotted interval hits an annotated one when their intersection over union, counted
in frames with both ends included (:func:`~au_llm.spot.intervals.iou_matrix`), is at least 0.5:
the MEGC spotting challenges' rule since 2020 (``|W_spotted ∩ W_gt| / |W_spotted ∪ W_gt| >= 0.5``).
Each annotation is hit at most once and each spotted interval hits at most one annotation; a
spotted interval that hits nothing is a false positive, an annotation nobody hits a false
negative.

**Kinds.** As in MEGC, micro- and macro-expressions are scored apart: a spotted interval of kind
``micro`` can only hit a ``micro`` annotation, and the overall counts are the sums of the two
kinds' counts (so the overall F1 is not the mean of the two F1s).

**Matching.** ``optimal`` (the default) takes the most hits the intervals allow and, among as
many, the largest summed IoU (an assignment problem, solved exactly). ``greedy`` follows the
evaluation code published with MEAN (github.com/genbing99/MEAN_Spot-then-recognize, built on the
``mean_average_precision`` package's VOC matching with its confidence sort removed): the
spotted intervals, in onset order, each take the annotation they overlap most, when that
annotation is still free, else count as false positives. The two differ only where one spotted
interval reaches 0.5 with two annotations (overlapping annotations, or exact 0.5 ties); that code
also requires IoU strictly above 0.5, where MEGC's text and this module accept 0.5 itself.

**AUs.** The AU F1 on hits compares, for every hit, the spotted interval's AU decisions
(``AUxx_pred``) with its annotation's AUs; per AU it is the binary F1 over the hits (nan where
an AU is neither present nor predicted in any hit), averaged over the AUs where it is defined.
The STR-style score is the spotting F1 (overall) times the AU F1 on hits, the product form of
MEGC's spot-then-recognise score (STRS) with AU detection in place of emotion classes; it is 0
when nothing is hit and nan without AU decisions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from au_llm.config_checks import choices
from au_llm.data.manifest import au_label_matrix
from au_llm.metrics import au_column, nanmean_count, per_au_metrics
from au_llm.spot.intervals import KINDS, iou_matrix

Matching = Literal["optimal", "greedy"]
"""How spotted intervals are paired with annotations (see the module's docstring)."""
MATCHINGS = choices(Matching)
IOU_HIT = 0.5
"""Least IoU of a hit (MEGC)."""
OVERALL = "overall"


def match_intervals(
    spotted: np.ndarray,
    annotated: np.ndarray,
    *,
    threshold: float = IOU_HIT,
    matching: str = "optimal",
) -> list[tuple[int, int, float]]:
    """Pairs ``(spotted row, annotated row, IoU)`` of the hits between two sets of intervals.

    Args:
        spotted: ``[N, 2]`` ``(onset, offset)`` rows.
        annotated: ``[M, 2]`` ``(onset, offset)`` rows.
        threshold: Least IoU of a hit.
        matching: ``optimal`` or ``greedy`` (see the module's docstring).

    Returns:
        The hits, sorted by spotted row; each row of either side appears at most once.

    Raises:
        ValueError: An unknown ``matching`` or an interval ending before it starts.
    """
    if matching not in MATCHINGS:
        raise ValueError(f"matching {matching!r}: expected one of {', '.join(MATCHINGS)}")
    iou = iou_matrix(spotted, annotated)
    if iou.size == 0:
        return []
    eligible = iou >= threshold
    if matching == "greedy":
        order = np.argsort(np.asarray(spotted).reshape(-1, 2)[:, 0], kind="stable")
        taken: set[int] = set()
        pairs = []
        for row in order:
            best = int(np.argmax(iou[row]))
            if eligible[row, best] and best not in taken:
                taken.add(best)
                pairs.append((int(row), best, float(iou[row, best])))
        return sorted(pairs)
    # Each hit is worth 1 plus a share of its IoU too small for any IoU sum to outweigh one more
    # hit: the most hits first, then the largest summed IoU.
    weight = np.where(eligible, 1.0 + iou / (min(iou.shape) + 1), 0.0)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    return sorted(
        (int(r), int(c), float(iou[r, c]))
        for r, c in zip(rows, cols, strict=True)
        if eligible[r, c]
    )


@dataclass(frozen=True)
class SpotCounts:
    """Hits, false positives and misses of a set of recordings.

    Attributes:
        tp: Spotted intervals that hit an annotation.
        fp: Spotted intervals that hit none.
        fn: Annotations nobody hit.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: SpotCounts) -> SpotCounts:
        return SpotCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        """``tp / (tp + fp)``; nan when nothing was spotted."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else math.nan

    @property
    def recall(self) -> float:
        """``tp / (tp + fn)``; nan without annotations."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else math.nan

    @property
    def f1(self) -> float:
        """``2 tp / (2 tp + fp + fn)``; nan when nothing was spotted nor annotated."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else math.nan

    def to_dict(self) -> dict[str, float | None]:
        """Counts and rates, for JSON and tables (None for an undefined rate)."""
        return _defined(
            {
                "tp": self.tp,
                "fp": self.fp,
                "fn": self.fn,
                "precision": self.precision,
                "recall": self.recall,
                "f1": self.f1,
            }
        )


@dataclass
class SpotEvaluation:
    """The MEGC-style scores of spotted intervals.

    Attributes:
        counts: :class:`SpotCounts` per kind (``micro``, ``macro``) and ``overall`` (their sum).
        hits: One row per hit: the recording keys, ``kind``, ``spotted`` and ``annotated`` (row
            positions in the tables given), ``iou``.
        per_au: Metrics of each AU on the hits (:func:`~au_llm.metrics.per_au_metrics`); empty
            without AU decisions.
        au_f1: Mean binary F1 over the AUs where it is defined on the hits (nan without AU
            decisions or hits).
        au_f1_count: How many AUs that mean is over.
        strs: Spotting F1 (overall) times ``au_f1``; 0 without hits, nan without AU decisions.
    """

    counts: dict[str, SpotCounts]
    hits: pd.DataFrame
    per_au: list[dict[str, float]] = field(default_factory=list)
    au_f1: float = math.nan
    au_f1_count: int = 0
    strs: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """Every number, for a JSON file (None where a value is undefined)."""
        return _defined(
            {
                "counts": {kind: counts.to_dict() for kind, counts in self.counts.items()},
                "au_f1": self.au_f1,
                "au_f1_count": self.au_f1_count,
                "strs": self.strs,
                "per_au": self.per_au,
            }
        )


def _defined(value: Any) -> Any:
    """``value`` with every nan float replaced by None, in nested dicts and lists."""
    if isinstance(value, dict):
        return {key: _defined(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_defined(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _checked(table: pd.DataFrame, name: str, by: Sequence[str]) -> pd.DataFrame:
    """``table`` with integer ``onset``/``offset`` and a known ``kind``; errors name the row."""
    missing = [c for c in [*by, "onset", "offset", "kind"] if c not in table.columns]
    if missing:
        raise ValueError(f"{name} intervals: no column {', '.join(missing)}")
    table = table.reset_index(drop=True)
    for row, record in enumerate(table[["onset", "offset", "kind"]].itertuples(index=False)):
        onset, offset, kind = record
        if kind not in KINDS:
            raise ValueError(
                f"{name} interval {row}: kind {kind!r}, expected one of {', '.join(KINDS)}"
            )
        if pd.isna(onset) or pd.isna(offset) or int(offset) < int(onset):
            raise ValueError(f"{name} interval {row}: onset {onset}, offset {offset}")
    return table.astype({"onset": "int64", "offset": "int64"})


def evaluate_spotting(
    spotted: pd.DataFrame,
    annotated: pd.DataFrame,
    *,
    aus: Sequence[int] = (),
    by: Sequence[str] = ("recording",),
    matching: str = "optimal",
    threshold: float = IOU_HIT,
) -> SpotEvaluation:
    """Score spotted intervals against annotated ones, per kind and overall, and their AUs.

    Args:
        spotted: One row per spotted interval: the ``by`` columns, ``onset``, ``offset``,
            ``kind``, and for the AU scores ``AUxx_prob`` and ``AUxx_pred`` per AU of ``aus``.
        annotated: One row per annotated interval: the ``by`` columns, ``onset``, ``offset``,
            ``kind``, and for the AU scores ``aus`` (canonical AU lists, as in a manifest;
            ``aus_unknown`` leaves an AU out of a row's scores).
        aus: The AUs scored on the hits (none: spotting only).
        by: The columns naming a recording; intervals only meet inside one recording.
        matching: ``optimal`` or ``greedy`` (see the module's docstring).
        threshold: Least IoU of a hit.

    Returns:
        The counts per kind and overall, the hits, and the AU scores on the hits.

    Raises:
        ValueError: A missing column, an unknown kind, an interval ending before it starts, or
            a missing ``AUxx_pred`` column when ``aus`` is given.
    """
    by = list(by)
    spotted = _checked(spotted, "spotted", by)
    annotated = _checked(annotated, "annotated", by)
    counts = {kind: SpotCounts() for kind in KINDS}
    hits = []
    spots = spotted.groupby([*by, "kind"], sort=True).indices
    truths = annotated.groupby([*by, "kind"], sort=True).indices
    for key in sorted(set(spots) | set(truths), key=str):
        rows = spots.get(key, np.array([], dtype=int))
        truth = truths.get(key, np.array([], dtype=int))
        pairs = match_intervals(
            spotted.loc[rows, ["onset", "offset"]].to_numpy(),
            annotated.loc[truth, ["onset", "offset"]].to_numpy(),
            threshold=threshold,
            matching=matching,
        )
        kind = key[-1]
        counts[kind] += SpotCounts(len(pairs), len(rows) - len(pairs), len(truth) - len(pairs))
        keys = dict(zip([*by, "kind"], key, strict=True))
        hits += [
            {**keys, "spotted": int(rows[i]), "annotated": int(truth[j]), "iou": iou}
            for i, j, iou in pairs
        ]
    counts[OVERALL] = sum((counts[kind] for kind in KINDS), SpotCounts())
    columns = [*by, "kind", "spotted", "annotated", "iou"]
    hit_table = pd.DataFrame(hits, columns=columns)
    result = SpotEvaluation(counts=counts, hits=hit_table)
    if aus:
        _score_aus(result, spotted, annotated, list(aus))
    return result


def _score_aus(
    result: SpotEvaluation, spotted: pd.DataFrame, annotated: pd.DataFrame, aus: list[int]
) -> None:
    """Fill the AU scores of ``result`` from the hits' decisions and annotations."""
    preds = [au_column(au, "pred") for au in aus]
    missing = [c for c in preds if c not in spotted.columns]
    if missing:
        raise ValueError(f"spotted intervals: no column {', '.join(missing)}")
    hits = result.hits
    if hits.empty:
        result.strs = 0.0
        return
    probs = [au_column(au, "prob") for au in aus]
    chosen = spotted.loc[hits["spotted"]]
    labels = au_label_matrix(annotated.loc[hits["annotated"]].reset_index(drop=True), aus)
    scores = chosen[probs].to_numpy(float) if set(probs) <= set(spotted.columns) else None
    decisions = chosen[preds].to_numpy(float)
    result.per_au = per_au_metrics(labels, decisions if scores is None else scores, decisions, aus)
    result.au_f1, result.au_f1_count = nanmean_count(m["binary_f1"] for m in result.per_au)
    result.strs = result.counts[OVERALL].f1 * result.au_f1
