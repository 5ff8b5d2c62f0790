"""Many inputs predicted into one CSV, with ``failures.csv`` beside it and an exit status.

Every input goes through the same face alignment as training. Inputs that cannot be read or show
no face are listed in ``failures.csv`` beside the predictions; the others go on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from au_llm.deployed import load_deployed
from au_llm.device import seed_everything
from au_llm.io_utils import atomic_write_csv
from au_llm.metrics import au_column
from au_llm.predict.config import PredictConfig
from au_llm.predict.failures import SUMMARY_COLUMNS, FailureLog
from au_llm.predict.inputs import is_manifest
from au_llm.predict.manifests import ManifestPredictor
from au_llm.predict.outputs import input_paths, per_frame_path, prediction_files
from au_llm.predict.recordings import RecordingScanner
from au_llm.predict.scorer import ClipScorer
from au_llm.prediction_rows import VISION_SUFFIX
from au_llm.preprocess.windows import recording_names
from au_llm.reports.answers import ANSWER_PREFIX
from au_llm.reports.recording import per_frame_table, plot_recording

# Exit statuses of ``au-llm predict`` (0: every input gave rows; 2: usage or output error).
EXIT_SOME_FAILED = 3
EXIT_ALL_FAILED = 4
INT_COLUMNS = ("onset", "offset", "frame_start", "frame_end", "face_id")


@dataclass
class PredictionRun:
    """What :func:`predict_inputs` wrote and how it went.

    Attributes:
        out: The predictions CSV.
        failures: The failure table beside it.
        summary: One row per input: ``input, frames, windows, failed_windows, fps,
            variable_fps, reason`` (the frame rate columns for recordings only).
        status: 0 when every input gave rows, :data:`EXIT_SOME_FAILED` when some gave none,
            :data:`EXIT_ALL_FAILED` when none did.
        precision: The precision the model ran in (``fp32`` or ``bf16``).
    """

    out: Path
    failures: Path
    summary: pd.DataFrame
    status: int
    precision: str = "fp32"


def predict_inputs(
    model_dir: Path, inputs: list[Path], out: Path, options: PredictConfig | None = None
) -> PredictionRun:
    """Predict AUs for many inputs and write one CSV (plus ``failures.csv`` beside it).

    Manifests go to a :class:`~au_llm.predict.manifests.ManifestPredictor`, videos and frame
    folders to a :class:`~au_llm.predict.recordings.RecordingScanner`. Everything is written
    under the folder of ``out`` (the clip cache into ``options.cache_dir`` when given, else
    ``cache`` beside ``out``), never where the model was trained. ``options.plot`` also writes
    ``<out stem>_<nn>_<recording>.png`` per recording (``nn``: input position);
    ``options.per_frame`` writes ``<out stem>_per_frame.csv``.

    Raises:
        ValueError: See :func:`~au_llm.predict.outputs.prediction_files`, or an option the model
            does not allow.
        OutputError: The output folder (checked first) or the cache cannot be written.
    """
    options = options or PredictConfig()
    out = Path(out)
    cache = Path(options.cache_dir) if options.cache_dir is not None else out.parent / "cache"
    sources = input_paths(Path(model_dir), [Path(p) for p in inputs])
    out, failures = prediction_files(
        out, overwrite=options.overwrite, inputs=sources, per_frame=options.per_frame, cache=cache
    )
    seed_everything(0)
    deployed = load_deployed(model_dir, options.precision)
    scorer = ClipScorer(deployed, options)
    failure_log = FailureLog(options.strict)
    manifests = ManifestPredictor(scorer, cache, failure_log)
    scanner = RecordingScanner(scorer, options, failure_log)
    frames, produced = [], 0
    try:
        for index, (path, clip) in enumerate(zip(inputs, recording_names(inputs), strict=True)):
            path = Path(path)
            frame = manifests.predict(path) if is_manifest(path) else scanner.predict(path, clip)
            if frame.empty:
                continue
            produced += 1
            frames.append(frame)
            if options.plot and "time_start" in frame:
                name = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name)
                png = out.with_name(f"{out.stem}_{index:02d}_{name}.png")
                plot_recording(frame, deployed.aus, png, failure_log.failure_table(path))
    finally:
        scanner.close()
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    atomic_write_csv(out, _ordered(table, deployed.aus))
    if options.per_frame:
        frames_table = per_frame_table(table, deployed.aus, scanner.times)
        atomic_write_csv(per_frame_path(out), _integers(frames_table))
    atomic_write_csv(failures, _integers(failure_log.failure_table()))
    status = 0
    if produced < len(inputs):
        status = EXIT_SOME_FAILED if produced else EXIT_ALL_FAILED
    summary = _integers(pd.DataFrame(failure_log.summary, columns=SUMMARY_COLUMNS))
    return PredictionRun(out, failures, summary, status, deployed.model.precision)


def _integers(table: pd.DataFrame) -> pd.DataFrame:
    """Integer-valued columns as nullable integers (empty cells where a kind of row has none)."""
    names = [*INT_COLUMNS, "frame", "frames", "windows", "failed_windows"]
    return table.astype({c: "Int64" for c in names if c in table.columns})


def _ordered(table: pd.DataFrame, aus: list[int]) -> pd.DataFrame:
    """Keys, coverage, face box, AU columns (and the vision head's), then answers."""
    keys = ["source", "dataset", "subject", "clip", "onset", "offset", "face_id", "frame_start"]
    keys += ["frame_end", "time_start", "time_end", "face_frames", "face_confidence"]
    keys += ["face_x", "face_y", "face_w", "face_h"]
    if table.empty:
        cols = [au_column(au, kind) for au in aus for kind in ("prob", "pred")]
        return pd.DataFrame(columns=["source", "clip", *cols])
    kinds = ("prob", "pred", "true")
    au_cols = [au_column(au, k) for au in aus for k in kinds if au_column(au, k) in table]
    au_cols += [c for c in table.columns if c.endswith(VISION_SUFFIX)]
    answers = [c for c in table.columns if c.startswith(ANSWER_PREFIX)]
    answers += [c for c in ("au_raw", "aus", "explanation") if c in table.columns]
    return _integers(table[[k for k in keys if k in table.columns] + au_cols + answers])
