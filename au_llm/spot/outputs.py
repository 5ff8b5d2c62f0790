"""What ``au-llm spot`` writes per recording: the intervals, a per-frame timeline, a plot.

**Intervals** (``<name>_intervals.csv``): one row per spotted interval: ``interval`` (its number
in the recording), ``onset, apex, offset`` (frame numbers: a folder's file numbers, a video's
0-based indices), ``onset_time, apex_time, offset_time`` (seconds), ``duration`` (seconds, from
the onset frame's time to the offset frame's time plus one frame period), ``kind`` (micro or
macro, by that duration), ``score`` (the peak's motion score), then ``AUxx_prob, AUxx_pred`` per
AU: the model's probability and decision for the clip ``onset..offset``, aligned and sampled as
in training.

**Timeline** (``<name>_timeline.csv``), in OpenFace's per-frame layout: ``frame, face_id,
timestamp, confidence, success``, then ``AUxx_prob`` for every AU, then ``AUxx_pred`` for every
AU (OpenFace's ``_r`` then ``_c`` grouping), then ``interval`` and ``motion_<kind>``. ``frame``
is the recording's own frame number (as in the interval table; OpenFace counts from 1);
``face_id`` is 0 (one face is followed); ``timestamp`` is the frame's presentation time in
seconds (a video's own per-frame times, so variable frame rates are kept; a frame folder's
``(frame - first) / fps``); ``confidence`` is the face detector's score on the last landmarked
frame (0 without the face, empty when the detector gives none); ``success`` is 1 where the face
was aligned. A frame inside spotted intervals gets the highest probability and decision of
those intervals and ``interval`` the number of the highest-scoring one; a frame outside every
interval has an empty ``AUxx_prob`` (the model never saw it) and ``AUxx_pred`` 0 (no spotted
movement, so no AU is reported), and an empty ``interval``. ``motion_<kind>`` is the per-frame
motion score at that kind's distance (empty where undefined).

**Plot** (``<name>_timeline.png``): the motion scores over time with the spotted intervals
shaded (and the annotated ones drawn below them when known), and one row per AU marking the
intervals whose decision is positive.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from au_llm.io_utils import atomic_open
from au_llm.metrics import au_column
from au_llm.spot.intervals import span_seconds
from au_llm.spot.scan import RecordingMotion

TIMELINE_KEYS = ["frame", "face_id", "timestamp", "confidence", "success"]
INTERVAL_KEYS = ["interval", "onset", "apex", "offset", "onset_time", "apex_time", "offset_time"]
INTERVAL_KEYS += ["duration", "kind", "score"]
KIND_COLOURS = {"micro": "tab:red", "macro": "tab:blue"}


def interval_table(
    intervals: pd.DataFrame, motion: RecordingMotion, times: np.ndarray, au_columns: pd.DataFrame
) -> pd.DataFrame:
    """The interval CSV's rows (see the module).

    Args:
        intervals: :func:`~au_llm.spot.scan.spot_intervals`'s rows.
        motion: The recording's motion (frame numbers).
        times: ``[N]`` seconds of each frame (``RecordingReader.times`` of the frames read).
        au_columns: ``AUxx_prob, AUxx_pred`` per interval, in the same order (rows of intervals
            whose clip failed hold empty values).
    """
    positions = {
        end: np.searchsorted(motion.numbers, intervals[end].to_numpy())
        for end in ("onset", "apex", "offset")
    }
    table = pd.DataFrame(
        {
            "interval": np.arange(len(intervals), dtype=np.int64),
            "onset": intervals["onset"].to_numpy(),
            "apex": intervals["apex"].to_numpy(),
            "offset": intervals["offset"].to_numpy(),
            **{f"{end}_time": times[pos] for end, pos in positions.items()},
            "duration": [
                span_seconds(times, first, last, motion.fps)
                for first, last in zip(positions["onset"], positions["offset"], strict=True)
            ],
            "kind": intervals["kind"].to_numpy(),
            "score": intervals["score"].to_numpy(),
        }
    )
    return pd.concat([table, au_columns.reset_index(drop=True)], axis=1)


def timeline_table(
    motion: RecordingMotion, times: np.ndarray, intervals: pd.DataFrame, aus: list[int]
) -> pd.DataFrame:
    """The per-frame timeline (see the module).

    Args:
        motion: The recording's motion.
        times: ``[N]`` seconds of each frame.
        intervals: :func:`interval_table`'s rows.
        aus: AU numbers.
    """
    count = len(motion.numbers)
    probs = np.full((count, len(aus)), np.nan)
    preds = np.zeros((count, len(aus)), dtype=np.int64)
    owner = np.full(count, -1, dtype=np.int64)
    best = np.full(count, -np.inf)
    prob_cols = [au_column(au, "prob") for au in aus]
    pred_cols = [au_column(au, "pred") for au in aus]
    for row in intervals.itertuples(index=False):
        first, last = np.searchsorted(motion.numbers, [row.onset, row.offset])
        span = slice(int(first), int(last) + 1)
        values = np.array([getattr(row, c) for c in prob_cols], dtype=float)
        decisions = np.array([getattr(row, c) for c in pred_cols], dtype=float)
        probs[span] = np.fmax(probs[span], values)
        preds[span] = np.maximum(preds[span], np.nan_to_num(decisions).astype(np.int64))
        higher = best[span] < row.score
        owner[span][higher] = row.interval
        best[span][higher] = row.score
    confidence = motion.confidence.astype(np.float64)
    table = pd.DataFrame(
        {
            "frame": motion.numbers,
            "face_id": np.zeros(count, dtype=np.int64),
            "timestamp": times,
            "confidence": confidence,
            "success": motion.shown.astype(np.int64),
        }
    )
    table = pd.concat(
        [
            table,
            pd.DataFrame(probs, columns=prob_cols),
            pd.DataFrame(preds, columns=pred_cols),
        ],
        axis=1,
    )
    table["interval"] = pd.Series(owner).where(owner >= 0).astype("Int64")
    for column, kind in enumerate(motion.kinds):
        table[f"motion_{kind}"] = motion.scores[:, column]
    return table


def plot_spotting(
    motion: RecordingMotion,
    times: np.ndarray,
    intervals: pd.DataFrame,
    aus: list[int],
    out_png: Path,
    *,
    title: str,
    annotated: pd.DataFrame | None = None,
) -> Path:
    """PNG of the motion scores, the spotted (and annotated) intervals and the AU decisions.

    Args:
        motion: The recording's motion.
        times: ``[N]`` seconds of each frame.
        intervals: :func:`interval_table`'s rows.
        aus: AU numbers.
        out_png: Where to write.
        title: The plot's title (the recording).
        annotated: Annotated intervals of the recording (``onset, offset, kind``, frame
            numbers), drawn below the spotted ones.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def time_of(number: int) -> float:
        return float(times[min(np.searchsorted(motion.numbers, number), len(times) - 1)])

    height = 2.4 + 0.22 * len(aus)
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, height), sharex=True, height_ratios=[2.4, 0.22 * len(aus) + 0.3]
    )
    for column, kind in enumerate(motion.kinds):
        score = motion.scores[:, column].astype(float)
        peak = np.nanmax(score) if np.isfinite(score).any() else 1.0
        top.plot(times, score / (peak or 1.0), lw=0.8, color=KIND_COLOURS[kind], label=kind)
    for first, last in motion.missing_spans():
        top.axvspan(time_of(first), time_of(last), color="0.85", lw=0)
    for row in intervals.itertuples(index=False):
        colour = KIND_COLOURS[row.kind]
        top.axvspan(row.onset_time, row.offset_time, ymin=0.08, color=colour, alpha=0.2, lw=0)
    if annotated is not None:
        for row in annotated.itertuples(index=False):
            start, end = time_of(int(row.onset)), time_of(int(row.offset))
            top.axvspan(start, end, ymax=0.06, color=KIND_COLOURS.get(row.kind, "k"), lw=0)
    top.set_ylim(0, 1.05)
    top.set_ylabel("motion\n(scaled)")
    top.legend(loc="upper right", fontsize="small")
    shown = "; thin bars: annotated" if annotated is not None else ""
    top.set_title(f"{title}: spotted intervals shaded (red micro, blue macro){shown}", fontsize=9)
    for a, au in enumerate(aus):
        column = au_column(au, "pred")
        for row in intervals.itertuples(index=False):
            if getattr(row, column) == 1:
                bottom.barh(a, row.offset_time - row.onset_time, left=row.onset_time, height=0.7,
                            color=KIND_COLOURS[row.kind])  # fmt: skip
    bottom.set_yticks(range(len(aus)), [f"AU{au}" for au in aus], fontsize=7)
    bottom.set_ylim(-0.6, len(aus) - 0.4)
    bottom.invert_yaxis()
    bottom.set_xlabel("time (s); grey: no face; lower rows: AUs the model finds in each interval")
    fig.tight_layout()
    try:
        with atomic_open(out_png, "wb") as handle:
            fig.savefig(handle, format="png", dpi=100)
    finally:
        plt.close(fig)
    return out_png
