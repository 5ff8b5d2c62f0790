"""Deployable models: ``au-llm train`` (every labelled clip) and ``au-llm predict`` (new inputs).

A model directory holds the trainable weights, the resolved config and the AU list with the
decision thresholds. :class:`Predictor` applies it to manifests (one row per annotated clip) and
to whole recordings, videos or frame folders, scanned with sliding windows (one row per window).
Every input goes through the same face alignment as training. Inputs that cannot be read or show
no face are listed in ``failures.csv`` beside the predictions; the others go on.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from au_llm.answers import decision_matrix
from au_llm.config import ExperimentConfig, config_from_dict
from au_llm.data.fields import ClipReadError
from au_llm.data.manifest import read_manifest
from au_llm.io_utils import OutputError, atomic_write_csv, probe_writable
from au_llm.metrics import au_column, au_prediction_columns
from au_llm.model.checkpoint import load_checkpoint, save_checkpoint
from au_llm.model.engine import PromptCache
from au_llm.model.modeling_au_llm import AULLM, build_au_llm
from au_llm.model.spec import ModelSpec
from au_llm.prepare import prepare_data
from au_llm.preprocess.align import NO_FACE
from au_llm.preprocess.cache import ClipCache
from au_llm.preprocess.dataset import ClipDataset, to_clip_tensor
from au_llm.preprocess.landmarks import Landmarker
from au_llm.preprocess.run import preprocess_manifest
from au_llm.preprocess.sampling import sample_indices
from au_llm.preprocess.windows import align_window, check_window, recording_frames, window_starts
from au_llm.reports.answers import ANSWER_PREFIX
from au_llm.training import (
    answer_tries,
    clip_answers,
    clip_probs,
    explain_clips,
    fit,
    inference_prompt_cache,
    resolve_device,
    seed_everything,
    set_num_threads,
)

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v"}


@dataclass
class DeployedModel:
    """A trained model with what is needed to apply it.

    Attributes:
        model: The model (eval mode).
        cfg: The resolved configuration it was trained with.
        aus: AU numbers, in output order.
        thresholds: Per-AU decision thresholds.
        clip_seconds: Median duration of the training clips (onset..offset) in seconds: the
            default sliding window of a recording, converted to frames at its own frame rate.
    """

    model: AULLM
    cfg: ExperimentConfig
    aus: list[int]
    thresholds: np.ndarray
    clip_seconds: float


def train_deployable(cfg: ExperimentConfig, out: Path) -> DeployedModel:
    """Train one model on every clip of ``data.manifests`` and save it to ``out``.

    Training is the protocols' (same sampling, loss, schedule; an inner validation split of the
    subjects when ``train.val_fraction > 0``). The threshold policy ``train`` picks per-AU
    thresholds on the training clips' own predictions; ``fixed`` uses ``eval.fixed_threshold``;
    ``test-oracle`` has no test set here and falls back to ``fixed`` with a warning.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    set_num_threads(cfg.train)
    data = prepare_data(cfg, out)
    seed = cfg.seeds[0]
    spec = ModelSpec.from_experiment(cfg, data.aus)
    model = build_au_llm(spec, seed, resolve_device(cfg.train.device))
    seed_everything(seed)
    fitted = fit(model, data.source, cfg, data, seed)
    if cfg.eval.threshold == "test-oracle":
        log.warning("eval.threshold = test-oracle has no test set in `train`: using fixed")
    seconds = (data.source["offset"] - data.source["onset"] + 1) / data.source["fps"]
    clip_seconds = float(np.median(seconds))
    extra = {
        "thresholds": [float(t) for t in fitted.thresholds],
        "clip_seconds": clip_seconds,
        "train_clips": len(fitted.train),
        "train_loss": fitted.result.train_loss,
        "excluded": data.excluded.to_dict("records"),
    }
    save_checkpoint(model, cfg.to_dict(), out, extra=extra)
    return DeployedModel(model.eval(), cfg, data.aus, fitted.thresholds, clip_seconds)


def load_deployed(model_dir: Path) -> DeployedModel:
    """Load a model directory written by :func:`train_deployable` (the base LLM must match)."""
    model, info = load_checkpoint(Path(model_dir))
    cfg = config_from_dict(info["config"])
    extra = info["extra"]
    return DeployedModel(
        model.place(resolve_device(cfg.train.device)),
        cfg,
        list(model.spec.aus),
        np.asarray(extra["thresholds"], dtype=np.float64),
        float(extra["clip_seconds"]),
    )


def input_kind(path: Path) -> str:
    """``manifest`` (a .csv), ``frames`` (a folder) or ``video`` (a video file).

    Raises:
        ClipReadError: If the path does not exist or is of no known kind.
    """
    if path.is_dir():
        return "frames"
    if not path.exists():
        raise ClipReadError(f"input not found: {path}", path)
    if path.suffix.lower() == ".csv":
        return "manifest"
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return "video"
    raise ClipReadError(
        f"input {path}: expected a manifest .csv, a frame folder or a video "
        f"({', '.join(sorted(VIDEO_SUFFIXES))})",
        path,
    )


@dataclass
class _Window:
    source: str
    start: int
    end: int
    time_start: float
    time_end: float
    clip: torch.Tensor


@dataclass
class Predictor:
    """Applies a deployed model to manifests and recordings.

    Args:
        deployed: The model and its settings.
        window: Sliding-window length in frames (default: the model's median training clip
            duration at the recording's frame rate).
        stride: Window stride in frames (default: half the window).
        fps: Frame rate of frame folders (videos use their own).
        strict: Raise on the first input or window that fails instead of reporting it.
        cache_dir: Aligned-clip cache for manifest inputs (default: the model config's
            ``data.cache_dir``; :func:`predict_inputs` always passes one under its output).
        constrained: Constrained decoding of text answers (default: the model's
            ``model.text.constrained``).
        explain: Add an ``explanation`` column (greedy, deterministic); the model must have been
            trained with ``model.explain.weight > 0``.
    """

    deployed: DeployedModel
    window: int | None = None
    stride: int | None = None
    fps: float = 200.0
    strict: bool = False
    cache_dir: Path | None = None
    constrained: bool | None = None
    explain: bool = False
    failures: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.explain and self.deployed.cfg.model.explain.weight <= 0:
            raise ValueError(
                "--explain: this model was not trained with explanations "
                "(train it with model.explain.weight > 0)"
            )
        if self.window is not None:
            check_window(self.window, self.stride or max(1, self.window // 2))
        self._landmarker: Landmarker | None = None
        train = self.deployed.cfg.train
        model = self.deployed.model.eval()
        self._prompt_cache: PromptCache | None = inference_prompt_cache(model, train.bf16)
        self._text = model.cfg.head != "linear"
        self._tries = answer_tries(model, self.constrained) if self._text else {}

    def window_for(self, fps: float) -> tuple[int, int]:
        """``(window, stride)`` in frames for a recording at ``fps`` frames per second."""
        window = self.window or max(2, round(self.deployed.clip_seconds * fps))
        stride = self.stride or max(1, window // 2)
        check_window(window, stride)
        return window, stride

    @property
    def landmarker(self) -> Landmarker | None:
        """The face landmarker, created on first use (None for ``preprocess.mode: none``)."""
        pre = self.deployed.cfg.preprocess
        if self._landmarker is None and pre.mode != "none":
            self._landmarker = Landmarker.from_config(pre)
        return self._landmarker

    def _fail(self, source: Path | str, reason: str, clip: str = "") -> None:
        if self.strict:
            raise ValueError(f"{source} {clip}: {reason}")
        log.warning("%s %s: %s", source, clip, reason)
        self.failures.append({"input": str(source), "clip": clip, "reason": reason})

    def _au_columns(
        self, probs: np.ndarray, answers: dict[str, list[str]], labels: np.ndarray | None = None
    ) -> dict[str, Any]:
        """AU columns (``AUxx_true`` with labels) and one ``answer_<format>`` column per format.

        With ``head: text`` the probabilities are the first format's parsed 0/1 decisions.
        """
        if self.deployed.model.cfg.head == "text":
            first = self.deployed.model.cfg.text.formats[0]
            probs = decision_matrix(first, self.deployed.aus, answers[first])
        columns: dict[str, Any] = dict(
            au_prediction_columns(self.deployed.aus, probs, self.deployed.thresholds, labels)
        )
        columns.update({f"{ANSWER_PREFIX}{fmt}": texts for fmt, texts in answers.items()})
        return columns

    def _scores(self, clips: torch.Tensor) -> tuple[np.ndarray, dict[str, list[str]]]:
        """AU probabilities ``[B, n_aus]`` and text answers of aligned clips ``[B, C, T, H, W]``."""
        model = self.deployed.model.eval()
        train = self.deployed.cfg.train
        probs, answers = [], {}
        for batch in torch.split(clips, train.batch_size):
            probs.append(clip_probs(model, batch, train.bf16, self._prompt_cache))
            if self._text:
                texts = clip_answers(model, batch, train.bf16, self._prompt_cache, self._tries)
                for fmt, values in texts.items():
                    answers.setdefault(fmt, []).extend(values)
        return np.concatenate(probs), answers

    def predict_manifest(self, path: Path) -> pd.DataFrame:
        """One row per annotated clip: ``source, dataset, subject, clip, onset, offset``, AUs.

        ``dataset`` and ``subject`` are kept because CASME II reuses clip names across subjects.
        """
        cfg = self.deployed.cfg
        manifest = read_manifest(path)
        cache = ClipCache(Path(self.cache_dir or cfg.data.cache_dir), cfg.preprocess)
        report = preprocess_manifest(manifest, cache, progress=False)
        usable = []
        for row, rec in zip(manifest.to_dict("records"), report.to_dict("records"), strict=True):
            if rec["status"] == "failed":
                self._fail(path, rec["error"], row["clip"])
            elif rec["fallback"] == NO_FACE:
                self._fail(path, "no face found", row["clip"])
            else:
                usable.append(row)
        rows = pd.DataFrame(usable, columns=manifest.columns)
        if rows.empty:
            return pd.DataFrame()
        data = ClipDataset(
            rows, cache, self.deployed.aus, cfg.sampling.frames_per_clip, cfg.sampling.test
        )
        clips = torch.stack([data[i][0] for i in range(len(data))])
        probs, answers = self._scores(clips)
        labelled = rows["aus"].fillna("").astype(str).str.strip().ne("").any()
        frame = pd.DataFrame(
            {
                "source": str(path),
                "dataset": rows["dataset"],
                "subject": rows["subject"],
                "clip": rows["clip"],
                "onset": rows["onset"],
                "offset": rows["offset"],
            }
        )
        labels = data.labels.numpy() if labelled else None
        if self.explain:
            frame = frame.assign(explanation=self._explanations(clips))
        return frame.assign(**self._au_columns(probs, answers, labels))

    def _windows(self, path: Path, kind: str) -> list[_Window]:
        """Aligned, sampled windows of a recording (windows without a face are reported)."""
        cfg = self.deployed.cfg
        numbers, own_fps = recording_frames(path, kind)
        fps = own_fps or self.fps
        window, stride = self.window_for(fps)
        sampling = cfg.sampling.test
        rng = np.random.default_rng(0)
        windows = []
        for start in window_starts(len(numbers), window, stride):
            first, last = numbers[start], numbers[min(start + window, len(numbers)) - 1]
            aligned = align_window(path, kind, first, last, cfg.preprocess, self.landmarker)
            if aligned.fallback == NO_FACE:
                self._fail(path, "no face found", f"frames {first}-{last}")
                continue
            idx = sample_indices(
                aligned.numbers, first, None, last, cfg.sampling.frames_per_clip, sampling, rng
            )
            clip = to_clip_tensor(aligned.frames[idx])
            t0, t1 = (first - numbers[0]) / fps, (last - numbers[0]) / fps
            windows.append(_Window(str(path), first, last, t0, t1, clip))
        return windows

    def predict_recording(self, path: Path, kind: str) -> pd.DataFrame:
        """One row per window: ``source, clip, frame_start, frame_end, time_start, time_end``.

        Frame numbers are the files' numbers for frame folders and 0-based indices for videos;
        times are seconds from the recording's first frame to the window's first and last frame.
        """
        windows = self._windows(path, kind)
        if not windows:
            return pd.DataFrame()
        clips = torch.stack([w.clip for w in windows])
        probs, answers = self._scores(clips)
        frame = pd.DataFrame(
            {
                "source": str(path),
                "clip": path.stem if kind == "video" else path.name,
                "frame_start": [w.start for w in windows],
                "frame_end": [w.end for w in windows],
                "time_start": [w.time_start for w in windows],
                "time_end": [w.time_end for w in windows],
            }
        )
        if self.explain:
            frame = frame.assign(explanation=self._explanations(clips))
        return frame.assign(**self._au_columns(probs, answers))

    def _explanations(self, clips: torch.Tensor) -> list[str]:
        """Generated explanations of aligned clips ``[B, C, T, H, W]``, in batches."""
        model, train = self.deployed.model.eval(), self.deployed.cfg.train
        return [
            text
            for batch in torch.split(clips, train.batch_size)
            for text in explain_clips(model, batch, train.bf16, self._prompt_cache)
        ]

    def predict(self, path: Path) -> pd.DataFrame:
        """Predictions for one input; a failure is recorded and gives an empty frame."""
        try:
            kind = input_kind(path)
            if kind == "manifest":
                return self.predict_manifest(path)
            return self.predict_recording(path, kind)
        except OutputError:
            raise
        except (ClipReadError, ValueError, RuntimeError) as exc:
            self._fail(path, str(exc))
            return pd.DataFrame()


def plot_recording(frame: pd.DataFrame, aus: list[int], out_png: Path) -> Path:
    """PNG of each AU's probability over time (window centres) for one recording."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres = (frame["time_start"] + frame["time_end"]) / 2
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for au in aus:
        ax.plot(centres, frame[au_column(au, "prob")], marker=".", label=f"AU{au}")
    ax.set(xlabel="time (s)", ylabel="probability", ylim=(0, 1), title=str(frame["source"].iloc[0]))
    ax.legend(ncol=min(len(aus), 8), fontsize="small", loc="upper right")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def prediction_files(out: Path, overwrite: bool = False) -> tuple[Path, Path]:
    """The predictions CSV and its ``failures.csv``, checked before any work.

    Raises:
        ValueError: ``out`` is named ``failures.csv`` (the failure table would replace the
            predictions), or ``out`` exists and ``overwrite`` is false.
        OutputError: The folder of ``out`` cannot be written.
    """
    out = Path(out)
    failures = out.with_name("failures.csv")
    if out.name == failures.name:
        raise ValueError(
            f"--out {out}: failures.csv is the failure table written beside the predictions; "
            "choose another file name"
        )
    if out.exists() and not overwrite:
        raise ValueError(f"--out {out} exists; choose another file or pass --overwrite")
    probe_writable(out.parent)
    return out, failures


def predict_inputs(
    model_dir: Path,
    inputs: list[Path],
    out: Path,
    window: int | None = None,
    stride: int | None = None,
    fps: float = 200.0,
    plot: bool = False,
    strict: bool = False,
    cache_dir: Path | None = None,
    overwrite: bool = False,
    explain: bool = False,
) -> Path:
    """Predict AUs for many inputs and write one CSV (plus ``failures.csv`` beside it).

    Everything is written under the folder of ``out`` (or into ``cache_dir`` when given), never
    where the model's config points.

    Args:
        model_dir: A model directory from ``au-llm train``.
        inputs: Manifests, video files and frame folders.
        out: Predictions CSV.
        window: Sliding-window length for recordings (default: the model's clip length).
        stride: Window stride (default: half the window).
        fps: Frame rate of frame folders.
        plot: Also write ``<out stem>_<recording>.png`` per recording.
        strict: Stop at the first input that cannot be read or shows no face.
        cache_dir: Aligned-clip cache for manifest inputs (default: ``cache`` beside ``out``).
        overwrite: Replace an existing ``out``.
        explain: Add a generated ``explanation`` column (see :class:`Predictor`).

    Returns:
        The predictions CSV path.

    Raises:
        ValueError: See :func:`prediction_files`.
        OutputError: The output folder (checked first) or the cache cannot be written.
    """
    out, failures = prediction_files(Path(out), overwrite)
    cache = Path(cache_dir) if cache_dir is not None else out.parent / "cache"
    seed_everything(0)
    deployed = load_deployed(model_dir)
    predictor = Predictor(deployed, window, stride, fps, strict, cache, explain=explain)
    frames = []
    for path in tqdm(inputs, desc="predict", unit="input"):
        frame = predictor.predict(Path(path))
        if frame.empty:
            continue
        frames.append(frame)
        if plot and "time_start" in frame:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).name)
            plot_recording(frame, predictor.deployed.aus, out.with_name(f"{out.stem}_{name}.png"))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    atomic_write_csv(out, _ordered(table, predictor.deployed.aus))
    atomic_write_csv(
        failures, pd.DataFrame(predictor.failures, columns=["input", "clip", "reason"])
    )
    return out


def _ordered(table: pd.DataFrame, aus: list[int]) -> pd.DataFrame:
    """Key columns, ``AUxx_prob, AUxx_pred`` (``AUxx_true`` when labelled), answers, explanation."""
    keys = ["source", "dataset", "subject", "clip", "onset", "offset", "frame_start", "frame_end"]
    keys += ["time_start", "time_end"]
    if table.empty:
        cols = [au_column(au, kind) for au in aus for kind in ("prob", "pred")]
        return pd.DataFrame(columns=["source", "clip", *cols])
    kinds = ("prob", "pred", "true")
    au_cols = [au_column(au, k) for au in aus for k in kinds if au_column(au, k) in table]
    answers = [c for c in table.columns if c.startswith(ANSWER_PREFIX)]
    answers += ["explanation"] if "explanation" in table.columns else []
    return table[[k for k in keys if k in table.columns] + au_cols + answers]
