"""A contact sheet of aligned clips to check the alignment by eye.

One row per clip, labelled ``dataset/subject/clip`` (and the alignment fallback, if any): the
aligned onset, apex and offset frames, then ``|apex - onset|`` multiplied by ``gain`` (a still face
gives a black panel; the micro-movement shows up bright). Drawn with matplotlib's Agg canvas
directly (pyplot and the global backend are not touched).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from au_llm.data.fields import ClipReadError, clip_name, int_field, text_field
from au_llm.io_utils import atomic_write_bytes
from au_llm.preprocess.cache import ClipCache
from au_llm.preprocess.sampling import nearest_position


def _apex_or_middle(row: dict, numbers: np.ndarray) -> int:
    try:
        apex = float(text_field(row, "apex"))
    except ValueError:
        apex = math.nan
    if math.isnan(apex):
        return len(numbers) // 2
    return nearest_position(numbers, apex)


def write_contact_sheet(
    manifest: pd.DataFrame,
    cache: ClipCache,
    n: int,
    out_png: str | Path,
    gain: float = 8.0,
) -> Path:
    """Write a PNG with up to ``n`` cached clips, spread evenly over the manifest.

    Args:
        manifest: Manifest rows; rows whose clip is not cached are skipped.
        cache: The cache holding the aligned clips.
        n: Number of clips (rows of the sheet).
        out_png: Output file (written atomically).
        gain: Amplification of the apex-onset absolute difference.

    Returns:
        ``out_png``.

    Raises:
        ValueError: When ``n < 1`` or no clip of the manifest is cached.
    """
    if n < 1:
        raise ValueError(f"contact sheet: n = {n}, expected at least 1 clip")
    rows = []
    for row in manifest.to_dict("records"):
        try:
            if cache.has(row):
                rows.append(row)
        except ClipReadError:
            continue
    if not rows:
        raise ValueError(f"contact sheet: none of the {len(manifest)} clips is in {cache.folder}")
    picks = np.unique(np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int))
    fig = Figure(figsize=(8.0, 2.1 * len(picks)), dpi=100)
    axes = fig.subplots(len(picks), 4, squeeze=False)
    for line, pick in zip(axes, picks, strict=True):
        row = rows[pick]
        clip = cache.load(row)
        numbers = clip.numbers
        positions = {
            "onset": nearest_position(numbers, int_field(row, "onset")),
            "apex": _apex_or_middle(row, numbers),
            "offset": nearest_position(numbers, int_field(row, "offset")),
        }
        for ax, (name, pos) in zip(line[:3], positions.items(), strict=True):
            _show(ax, clip.frames[pos], f"{name} {int(numbers[pos])}")
        onset = clip.frames[positions["onset"]].astype(np.float32)
        apex = clip.frames[positions["apex"]].astype(np.float32)
        diff = np.clip(np.abs(apex - onset).mean(axis=2) * gain, 0, 255)
        line[3].imshow(diff, cmap="magma", vmin=0, vmax=255)
        line[3].set_title(f"|apex-onset| x{gain:g}", fontsize=7)
        line[3].set_axis_off()
        line[0].set_axis_on()
        line[0].set_xticks([])
        line[0].set_yticks([])
        fallback = clip.meta.get("fallback", "")
        label = f"{clip_name(row)}\n({fallback})" if fallback else clip_name(row)
        line[0].set_ylabel(label, fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    out_png = Path(out_png)
    atomic_write_bytes(out_png, buffer.getvalue())
    return out_png


def _show(ax: Axes, frame: np.ndarray, title: str) -> None:
    image = frame[:, :, 0] if frame.shape[2] == 1 else frame
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
    ax.set_title(title, fontsize=7)
    ax.set_axis_off()
