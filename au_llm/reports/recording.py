"""Plot of one recording's AU probabilities over time (``au-llm predict --plot``)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from au_llm.io_utils import atomic_write_bytes
from au_llm.metrics import au_column


def plot_recording(
    frame: pd.DataFrame, aus: list[int], out_png: Path, gaps: pd.DataFrame | None = None
) -> Path:
    """PNG with one panel per AU: probability over time (window centres), one line per face.

    Args:
        frame: The recording's rows (``time_start``, ``time_end``, ``face_id``, AU columns).
        aus: AU numbers.
        out_png: Where to write.
        gaps: Failed windows of the recording (``time_start``, ``time_end``), shaded.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(aus), 1, figsize=(9, 1.1 * len(aus) + 1), sharex=True)
    axes = np.atleast_1d(axes)
    faces = frame["face_id"].fillna(-1) if "face_id" in frame else pd.Series(-1, frame.index)
    for ax, au in zip(axes, aus, strict=True):
        for face_id, rows in frame.groupby(faces, sort=True):
            centres = (rows["time_start"] + rows["time_end"]) / 2
            label = f"face {int(face_id)}" if face_id >= 0 else None
            ax.plot(centres, rows[au_column(au, "prob")], marker=".", lw=1, label=label)
        for start, end in (
            gaps[["time_start", "time_end"]].dropna().to_numpy()
            if gaps is not None and len(gaps)
            else []
        ):
            ax.axvspan(start, end, color="0.85", lw=0)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"AU{au}", rotation=0, ha="right", va="center")
    axes[-1].set_xlabel("time (s); grey: windows without a usable face")
    axes[0].set_title(str(frame["source"].iloc[0]), fontsize="small")
    if faces.nunique() > 1:
        axes[0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(out_png, buffer.getvalue())
    plt.close(fig)
    return out_png


def per_frame_table(
    windows: pd.DataFrame, aus: list[int], times: Mapping[str, pd.Series]
) -> pd.DataFrame:
    """One row per frame of each recording and face: each AU's probability averaged over windows.

    Args:
        windows: Window rows of ``au-llm predict`` (``source, face_id, frame_start, frame_end``
            and ``AUxx_prob``); rows without a frame span (manifest clips) are ignored.
        aus: AU numbers.
        times: Each recording's frame times in seconds indexed by frame number, by ``source``
            (:meth:`~au_llm.preprocess.windows.RecordingReader.frame_times`).

    Returns:
        ``source, face_id, frame, time, windows`` (how many windows cover the frame), then
        ``AUxx_prob`` per AU; frames of a span covered by no successful window are left out.
    """
    probs = [au_column(au, "prob") for au in aus]
    rows = windows.dropna(subset=["frame_start", "frame_end"]) if "frame_start" in windows else None
    if rows is None or rows.empty:
        return pd.DataFrame(columns=["source", "face_id", "frame", "time", "windows", *probs])
    spans = []
    for _, row in rows.iterrows():
        source = row["source"]
        recording = times[source]
        frames = recording.index[
            (recording.index >= row["frame_start"]) & (recording.index <= row["frame_end"])
        ]
        spans.append(
            pd.DataFrame(
                {
                    "source": source,
                    "face_id": row.get("face_id", 0),
                    "frame": frames.to_numpy(),
                    "time": recording.loc[frames].to_numpy(),
                    **{column: row[column] for column in probs},
                }
            )
        )
    keys = ["source", "face_id", "frame"]
    stacked = pd.concat(spans, ignore_index=True)
    grouped = stacked.groupby(keys, sort=True, dropna=False)  # face_id is empty under --align none
    table = grouped[probs].mean().reset_index()
    table.insert(3, "time", grouped["time"].first().to_numpy())
    table.insert(4, "windows", grouped.size().to_numpy())
    return table
