"""Optical-flow input: TV-L1 flow from the onset to every frame of an aligned clip, cached.

With ``preprocess.input: flow`` (or ``both``) the model reads, for each sampled frame, three
channels computed on the aligned gray frames (``both``: after the frame's own channels):

* ``u``, ``v``: the TV-L1 optical flow (Zach et al., 2007) from the onset frame to that frame, in
  pixels of the aligned crop (OpenCV contrib's ``cv2.optflow.DualTVL1OpticalFlow``, with the
  settings of :data:`TVL1_SETTINGS`); the onset frame's own flow is zero;
* ``strain``: the optical strain magnitude ``sqrt(du/dx^2 + dv/dy^2 + (du/dy + dv/dx)^2 / 2)``
  (finite differences of the flow), as used by micro-expression work after Shreve et al.

OpenCV's implementation was measured against scikit-image's ``optical_flow_tvl1`` on 64x64 faces
(``bench/flow_tvl1.py``, ``docs/datasets.md``). Flows are computed once per clip, when first
needed, and cached next to the aligned frames in a folder keyed by the frame cache's settings and
:data:`TVL1_SETTINGS` (``flow-<hash>``); each file is keyed like the frames (the clip's source),
records the digest of the aligned frames it was computed from (a flow of other frames is computed
again) and is written atomically, as float16 ``[T, H, W, 3]``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from au_llm.data.fields import text_field
from au_llm.io_utils import atomic_write_bytes, safe_component
from au_llm.preprocess.cache import CacheError, ClipCache

log = logging.getLogger(__name__)

FLOW_CHANNELS = 3
TVL1_SETTINGS: dict[str, float | int] = {
    "tau": 0.25,
    "lambda": 0.15,
    "theta": 0.3,
    "scales": 5,
    "warps": 5,
    "epsilon": 0.01,
    "inner_iterations": 30,
    "outer_iterations": 10,
    "scale_step": 0.8,
    "median_filtering": 5,
}


def _tvl1() -> Any:
    """A TV-L1 solver with :data:`TVL1_SETTINGS` (OpenCV contrib)."""
    s = TVL1_SETTINGS
    return cv2.optflow.DualTVL1OpticalFlow_create(
        tau=s["tau"],
        lambda_=s["lambda"],
        theta=s["theta"],
        nscales=int(s["scales"]),
        warps=int(s["warps"]),
        epsilon=s["epsilon"],
        innnerIterations=int(s["inner_iterations"]),
        outerIterations=int(s["outer_iterations"]),
        scaleStep=s["scale_step"],
        medianFiltering=int(s["median_filtering"]),
    )


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """Optical strain magnitude of a flow field.

    Args:
        flow: ``[H, W, 2]`` float (u, v) in pixels.

    Returns:
        ``[H, W]`` float32 ``sqrt(u_x^2 + v_y^2 + (u_y + v_x)^2 / 2)``.
    """
    u_y, u_x = np.gradient(flow[..., 0].astype(np.float32))
    v_y, v_x = np.gradient(flow[..., 1].astype(np.float32))
    return np.sqrt(u_x**2 + v_y**2 + 0.5 * (u_y + v_x) ** 2).astype(np.float32)


def _gray(frame: np.ndarray) -> np.ndarray:
    """``[H, W, C]`` uint8 (C = 1 or 3, RGB) -> ``[H, W]`` uint8."""
    return frame[..., 0] if frame.shape[-1] == 1 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def clip_flow(frames: np.ndarray) -> np.ndarray:
    """u, v and strain from the first (onset) frame to every frame of a clip.

    Args:
        frames: ``[T, H, W, C]`` uint8 aligned frames, onset first (C = 1 gray or 3 RGB).

    Returns:
        ``[T, H, W, 3]`` float32; row 0 (the onset to itself) is zero.
    """
    count, height, width = frames.shape[:3]
    out = np.zeros((count, height, width, FLOW_CHANNELS), dtype=np.float32)
    if count < 2:
        return out
    solver = _tvl1()
    onset = _gray(frames[0])
    for t in range(1, count):
        flow = solver.calc(onset, _gray(frames[t]), None)
        out[t, ..., :2] = flow
        out[t, ..., 2] = optical_strain(flow)
    return out


def onset_flow(frames: np.ndarray, onset: np.ndarray) -> np.ndarray:
    """Flow from an onset frame to each of some frames, as :class:`FlowCache` stores it.

    Training computes the flow from the clip's onset to every frame and samples it; prediction
    over a window computes it from the window's first frame to the sampled frames only. Each
    frame's flow depends on the onset and that frame alone, so both give the same values.

    Args:
        frames: ``[T, H, W, C]`` uint8 aligned frames.
        onset: ``[H, W, C]`` uint8 aligned onset frame.

    Returns:
        ``[T, H, W, 3]`` float16 (a frame equal to the onset has zero flow).
    """
    return clip_flow(np.concatenate([onset[None], frames]))[1:].astype(np.float16)


def frames_digest(frames: np.ndarray) -> str:
    """SHA-256 of aligned frames (shape and pixels): what a cached flow was computed from."""
    frames = np.ascontiguousarray(frames)
    digest = hashlib.sha256(str((frames.shape, frames.dtype.str)).encode())
    digest.update(frames.tobytes())
    return digest.hexdigest()


class FlowCache:
    """Flows of the clips of one :class:`~au_llm.preprocess.cache.ClipCache`.

    Args:
        cache: The aligned-frame cache the flows are computed from.
    """

    def __init__(self, cache: ClipCache) -> None:
        self.cache = cache
        digest = json.dumps({"frames": cache.settings, "tvl1": TVL1_SETTINGS}, sort_keys=True)
        self.folder = cache.folder / f"flow-{hashlib.sha256(digest.encode()).hexdigest()[:12]}"

    def path(self, row: Mapping[str, Any]) -> Path:
        """The flow file of a manifest row (it may not exist yet)."""
        name = f"{text_field(row, 'subject')}_{text_field(row, 'clip')}_{self.cache.key(row)[:16]}"
        dataset = safe_component(text_field(row, "dataset"))
        return self.folder / dataset / f"{safe_component(name)}.npz"

    def load_or_compute(self, row: Mapping[str, Any], frames: np.ndarray) -> np.ndarray:
        """The clip's ``[T, H, W, 3]`` float16 flow, computed and cached on first use.

        Args:
            row: The clip's manifest row.
            frames: Its cached aligned frames ``[T, H, W, C]`` uint8.

        A cached flow computed from other frames (the clip's source replaced, so its aligned
        frames were cached again) is computed again: each file records the
        :func:`frames_digest` of the frames it came from.

        Raises:
            CacheError: A cached file is unreadable.
        """
        path, digest = self.path(row), frames_digest(frames)
        if path.is_file():
            try:
                with np.load(path) as data:
                    flow = data["flow"]
                    source = str(data["frames"]) if "frames" in data.files else ""
            except (OSError, ValueError, KeyError) as exc:
                raise CacheError(f"{path}: unreadable flow file ({exc}); delete it") from exc
            if source == digest and flow.shape[:3] == frames.shape[:3]:
                return flow
            log.info("%s: computed from other aligned frames; computed again", path)
        flow = clip_flow(frames).astype(np.float16)
        buffer = io.BytesIO()
        np.savez(buffer, flow=flow, frames=np.array(digest))
        atomic_write_bytes(path, buffer.getvalue())
        return flow
