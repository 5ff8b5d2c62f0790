"""TV-L1 optical-flow input: the flow, the strain, its cache, and models reading it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import skimage.data

from au_llm.config import PreprocessConfig
from au_llm.data.manifest import read_manifest
from au_llm.preprocess.cache import CacheError, ClipCache
from au_llm.preprocess.flow import FlowCache, clip_flow, optical_strain
from au_llm.protocols import loso_folds
from au_llm.recipes.experiment import run_protocol
from tests.conftest import tiny_config


def _face(size: int = 48) -> np.ndarray:
    gray = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)[40:240, 140:340]
    return cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)


def _shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    size = image.shape[::-1]
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def test_flow_recovers_a_known_shift_in_u_and_v() -> None:
    face = _face()
    frames = np.stack([face, _shifted(face, 1.0, 0.0), _shifted(face, 0.0, -0.8)])[..., None]
    flow = clip_flow(frames)
    assert flow.shape == (3, 48, 48, 3) and flow.dtype == np.float32
    assert not flow[0].any()
    inner = (slice(8, 40), slice(8, 40))
    assert flow[1][inner][..., 0].mean() == pytest.approx(1.0, abs=0.15)
    assert abs(flow[1][inner][..., 1].mean()) < 0.15
    assert flow[2][inner][..., 1].mean() == pytest.approx(-0.8, abs=0.15)
    assert flow[1][inner][..., 2].mean() < 0.2  # a translation has (almost) no strain


def test_rgb_frames_are_read_as_gray() -> None:
    face = _face()
    rgb = np.stack([face, _shifted(face, 1.0, 0.0)])[..., None].repeat(3, axis=-1)
    gray = np.stack([face, _shifted(face, 1.0, 0.0)])[..., None]
    np.testing.assert_array_equal(clip_flow(rgb), clip_flow(gray))


def test_strain_of_a_linear_stretch() -> None:
    ys, xs = np.mgrid[0:16, 0:16].astype(np.float32)
    flow = np.stack([0.1 * xs, np.zeros_like(xs)], axis=-1)
    np.testing.assert_allclose(optical_strain(flow), 0.1, rtol=1e-5)
    shear = np.stack([0.2 * ys, np.zeros_like(xs)], axis=-1)
    np.testing.assert_allclose(optical_strain(shear), np.sqrt(0.5) * 0.2, rtol=1e-5)


def test_flow_cache_writes_once_and_recomputes_for_other_frames(tmp_path: Path) -> None:
    cache = ClipCache(tmp_path, PreprocessConfig(size=48, input="flow"))
    flows = FlowCache(cache)
    assert flows.folder.parent == cache.folder and flows.folder.name.startswith("flow-")
    row = {"dataset": "d", "subject": "s", "clip": "c", "frames_dir": str(tmp_path), "video": ""}
    row.update(onset=1, apex=2, offset=2)
    face = _face()
    frames = np.stack([face, _shifted(face, 1.0, 0.0)])[..., None]
    first = flows.load_or_compute(row, frames)
    assert first.dtype == np.float16 and flows.path(row).is_file()
    stamp = flows.path(row).stat().st_mtime_ns
    np.testing.assert_array_equal(flows.load_or_compute(row, frames), first)
    assert flows.path(row).stat().st_mtime_ns == stamp
    # the clip's source replaced, so its aligned frames were cached again: the flow follows
    other = np.stack([face, _shifted(face, 0.0, 1.0)])[..., None]
    expected = clip_flow(other).astype(np.float16)  # the same kernels: exact
    np.testing.assert_array_equal(flows.load_or_compute(row, other), expected)
    assert flows.load_or_compute(row, frames[:1]).shape == (1, 48, 48, 3)
    flows.path(row).write_bytes(b"not a flow file")
    with pytest.raises(CacheError, match="unreadable flow file"):
        flows.load_or_compute(row, frames)


@pytest.mark.parametrize(("mode", "channels"), [("flow", 3), ("both", 4)])
def test_models_train_on_flow_input(tiny_data, tmp_path: Path, mode: str, channels: int) -> None:
    first = loso_folds(read_manifest(tiny_data.casme2))[0].name
    cfg = tiny_config(tiny_data, tmp_path, mode, "loso", f"preprocess.input={mode}")
    assert cfg.preprocess.input_channels == channels
    run_dir, _ = run_protocol(cfg, fold_names=[first], progress=False)
    preds = pd.read_csv(run_dir / "predictions.csv")
    assert len(preds) == 3 and preds.filter(like="_prob").notna().all().all()
    assert any((Path(tiny_data.cache_dir)).glob("*/flow-*/*/*.npz"))
