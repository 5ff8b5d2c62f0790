"""``au-llm spot``: recordings -> spotted intervals -> the AUs of each, written per recording.

A recording (a video or a frame folder, read as ``au-llm predict`` reads them) is read once,
front to back: every frame is aligned and measured (:func:`~au_llm.spot.scan.measure_motion`),
then the peak rule spots intervals (:func:`~au_llm.spot.scan.spot_intervals`). Each interval's
clip ``onset..offset`` then goes through the model exactly as a manifest's clip does in
``au-llm predict`` (:class:`~au_llm.predict.manifests.ManifestPredictor`: aligned and cached as
in training, sampled with the model's test strategy, scored by the
:class:`~au_llm.predict.scorer.ClipScorer`). The outputs are described in
:mod:`au_llm.spot.outputs`; stretches without a face, intervals whose clip fails and recordings
that cannot be read go to ``failures.csv`` with their frames, and the other recordings go on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from au_llm.config_checks import AlignMode, Precision
from au_llm.data.fields import ClipReadError
from au_llm.data.manifest import read_manifest
from au_llm.deployed import load_deployed
from au_llm.io_utils import (
    atomic_open,
    atomic_write_csv,
    check_output_file,
    check_output_folder,
    safe_component,
)
from au_llm.metrics import au_column
from au_llm.predict.config import PredictConfig
from au_llm.predict.failures import FailureLog
from au_llm.predict.inputs import input_kind
from au_llm.predict.manifests import ManifestPredictor
from au_llm.predict.recordings import FACES_SEARCHED
from au_llm.predict.run import EXIT_ALL_FAILED, EXIT_SOME_FAILED
from au_llm.predict.scorer import ClipScorer
from au_llm.preprocess.landmarks import Landmarker
from au_llm.preprocess.windows import RecordingReader, recording_names
from au_llm.spot.config import SpotConfig
from au_llm.spot.evaluate import SpotEvaluation, evaluate_spotting
from au_llm.spot.intervals import interval_clips, interval_seconds, kind_of
from au_llm.spot.outputs import interval_table, plot_spotting, timeline_table
from au_llm.spot.scan import RecordingMotion, measure_motion, spot_intervals

log = logging.getLogger(__name__)

SPOT_SUMMARY_COLUMNS = ["input", "frames", "seconds", "intervals", "micro", "macro"]
SPOT_SUMMARY_COLUMNS += ["failed_intervals", "frames_without_face", "reason"]
EVALUATION_FILE = "evaluation.json"
OUTPUT_SUFFIXES = ("_intervals.csv", "_timeline.csv", "_timeline.png")


@dataclass(frozen=True)
class SpotOptions:
    """How ``au-llm spot`` reads recordings and applies the model.

    Attributes:
        fps: Frame rate of frame folders without an ``fps.txt`` and of videos that report none.
        align: Alignment of the interval clips replacing the model's (``clip``, ``frame``,
            ``none``); None keeps the model's.
        precision: ``auto``, ``fp32`` or ``bf16`` replacing the model's; None keeps it.
        batch_size: Clips per model batch (default: the model's).
        annotations: A manifest of annotated intervals (a long-video manifest: ``onset,
            offset``, ``kind``, ``aus``, and ``frames_dir`` or ``video`` naming the recording);
            the rows of the inputs are drawn on the plots and scored (``evaluation.json``).
        strict: Stop at the first failure instead of reporting it.
        overwrite: Replace the outputs of a previous run.
        cache_dir: The interval clips' cache (default: ``cache`` inside the output folder).
    """

    fps: float | None = None
    align: AlignMode | None = None
    precision: Precision | None = None
    batch_size: int | None = None
    annotations: Path | None = None
    strict: bool = False
    overwrite: bool = False
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        self.predict_config()  # the options shared with predict are checked there

    def predict_config(self) -> PredictConfig:
        """The options the model's :class:`~au_llm.predict.scorer.ClipScorer` takes.

        Raises:
            ValueError: An option is out of range (named as on the command line).
        """
        return PredictConfig(
            fps=self.fps,
            align=self.align,
            precision=self.precision,
            batch_size=self.batch_size,
            strict=self.strict,
        )


@dataclass
class SpotRun:
    """What :func:`spot_inputs` wrote and how it went.

    Attributes:
        out: The output folder.
        summary: One row per input (``SPOT_SUMMARY_COLUMNS``).
        status: 0 when every input's outputs were written, else ``EXIT_SOME_FAILED`` (some
            were) or ``EXIT_ALL_FAILED`` (none was).
        evaluation: The scores against ``--annotations`` (None without).
    """

    out: Path
    summary: pd.DataFrame
    status: int
    evaluation: SpotEvaluation | None = None


def output_files(out: Path, name: str) -> list[Path]:
    """The interval CSV, timeline CSV and plot of the recording called ``name``."""
    return [out / f"{safe_component(name)}{suffix}" for suffix in OUTPUT_SUFFIXES]


def spot_inputs(
    model_dir: Path,
    inputs: list[Path],
    out: Path,
    options: SpotOptions | None = None,
    cfg: SpotConfig | None = None,
) -> SpotRun:
    """Spot expressions in recordings and name their AUs; write the outputs under ``out``.

    Raises:
        ValueError: An output is an input, or exists without ``overwrite``; a bad option.
        OutputError: The output folder cannot be written.
    """
    options, cfg = options or SpotOptions(), cfg or SpotConfig()
    inputs, out = [Path(p) for p in inputs], Path(out)
    sources = [Path(model_dir), *inputs, *([options.annotations] if options.annotations else [])]
    check_output_folder(out, True, sources)
    names = recording_names(inputs)
    for name in names:
        for path in output_files(out, name):
            check_output_file(path, options.overwrite, sources)
    cache = Path(options.cache_dir) if options.cache_dir else out / "cache"
    annotated = _annotations(options.annotations, inputs, names)
    deployed = load_deployed(model_dir, options.precision)
    scorer = ClipScorer(deployed, options.predict_config())
    failures = FailureLog(options.strict)
    spotter = _RecordingSpotter(scorer, cfg, options, failures, cache)
    spotted = []
    try:
        for path, name in zip(inputs, names, strict=True):
            mine = annotated[annotated["recording"] == name] if annotated is not None else None
            done = spotter.written
            table = failures.attempt(
                path, lambda p=path, n=name, a=mine: spotter.spot(p, n, out, a)
            )
            if spotter.written == done:
                reason = failures.failures[-1]["reason"]
                spotter.summary.append({"input": str(path), "reason": reason})
            elif not table.empty:
                spotted.append(table.assign(recording=name))
    finally:
        spotter.close()
    atomic_write_csv(out / "failures.csv", failures.failure_table())
    summary = pd.DataFrame(spotter.summary, columns=SPOT_SUMMARY_COLUMNS)
    done = spotter.written
    status = 0 if done == len(inputs) else EXIT_SOME_FAILED if done else EXIT_ALL_FAILED
    evaluation = None
    if annotated is not None:
        found = pd.concat(spotted, ignore_index=True) if spotted else None
        evaluation = evaluate_spotting(
            found if found is not None else _empty_spots(deployed.aus),
            annotated,
            aus=deployed.aus,
        )
        with atomic_open(out / EVALUATION_FILE) as handle:
            json.dump(evaluation.to_dict(), handle, indent=2, allow_nan=False)
    return SpotRun(out, summary, status, evaluation)


def _empty_spots(aus: list[int]) -> pd.DataFrame:
    columns = ["recording", "onset", "offset", "kind"]
    columns += [au_column(au, kind) for au in aus for kind in ("prob", "pred")]
    return pd.DataFrame(columns=columns)


def _annotations(path: Path | None, inputs: list[Path], names: list[str]) -> pd.DataFrame | None:
    """The annotated intervals of the inputs (``recording`` = the input's name), or None.

    Rows are matched to an input by their ``frames_dir`` or ``video`` (symlinks resolved);
    rows of other recordings are ignored. A row without a ``kind`` gets it from its duration at
    its ``fps``.

    Raises:
        ManifestError: The manifest cannot be read.
    """
    if path is None:
        return None
    manifest = read_manifest(Path(path))
    by_source = {Path(p).resolve(): name for p, name in zip(inputs, names, strict=True)}
    recordings = [
        by_source.get(Path(row["frames_dir"] or row["video"]).resolve(), "")
        for row in manifest.to_dict("records")
    ]
    manifest = manifest.assign(recording=recordings)
    manifest = manifest[manifest["recording"] != ""].reset_index(drop=True)
    given = manifest["kind"] if "kind" in manifest.columns else pd.Series("", manifest.index)
    manifest["kind"] = [
        kind if kind else kind_of(interval_seconds(int(on), int(off), float(fps)))
        for kind, on, off, fps in zip(
            given.fillna("").astype(str).str.strip(),
            manifest["onset"],
            manifest["offset"],
            manifest["fps"],
            strict=True,
        )
    ]
    if manifest.empty:
        log.warning(
            "%s: no annotated interval of the inputs (matched by frames_dir or video)", path
        )
    return manifest


class _RecordingSpotter:
    """Spots one recording at a time with a shared landmarker and model."""

    def __init__(
        self,
        scorer: ClipScorer,
        cfg: SpotConfig,
        options: SpotOptions,
        failures: FailureLog,
        cache: Path,
    ) -> None:
        self.scorer, self.cfg, self.options, self.failures = scorer, cfg, options, failures
        self.clips = ManifestPredictor(scorer, cache, FailureLog(options.strict))
        self.summary: list[dict[str, object]] = []
        self.written = 0
        self._landmarker: Landmarker | None = None

    def close(self) -> None:
        """Release the landmarker."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    @property
    def landmarker(self) -> Landmarker:
        """The face landmarker of the spotting pass, created on first use."""
        if self._landmarker is None:
            model = self.scorer.preprocess.landmarker_model
            self._landmarker = Landmarker(model=model, num_faces=FACES_SEARCHED)
        return self._landmarker

    def spot(
        self, path: Path, name: str, out: Path, annotated: pd.DataFrame | None
    ) -> pd.DataFrame:
        """Spot one recording and write its outputs; returns its interval rows.

        Raises:
            ClipReadError: The recording cannot be read (recorded by the caller).
        """
        kind = input_kind(path)
        if kind == "manifest":
            raise ClipReadError(f"input {path}: expected a video or a frame folder", path)
        reader = RecordingReader(path, kind, self.options.fps)
        with tqdm(total=reader.reported, desc=name, unit="frame", leave=False) as bar:
            motion = measure_motion(
                reader, reader.fps, self.landmarker, self.cfg, lambda done: bar.update(1)
            )
        if not len(motion.numbers):
            raise ClipReadError(f"no frame decodes ({reader.stop_reason})", path)
        times = reader.times[np.searchsorted(reader.numbers, motion.numbers)]
        missing = self._report_missing(path, motion, times)
        intervals = spot_intervals(motion, self.cfg, times)
        au_columns, failed = self._score(path, name, kind, reader.fps, intervals)
        table = interval_table(intervals, motion, times, au_columns)
        aus = self.scorer.aus
        interval_csv, timeline_csv, png = output_files(out, name)
        atomic_write_csv(interval_csv, table)
        atomic_write_csv(timeline_csv, timeline_table(motion, times, table, aus))
        plot_spotting(motion, times, table, aus, png, title=name, annotated=annotated)
        self.written += 1
        reasons = [reader.stop_reason] if reader.stop_reason else []
        reasons += [f"{failed} interval clips failed"] if failed else []
        self.summary.append(
            dict(
                input=str(path),
                frames=len(motion.numbers),
                seconds=round(float(times[-1] - times[0]) + 1 / reader.fps, 3),
                intervals=len(table),
                micro=int((table["kind"] == "micro").sum()),
                macro=int((table["kind"] == "macro").sum()),
                failed_intervals=failed,
                frames_without_face=missing,
                reason="; ".join(reasons),
            )
        )
        return table

    def _report_missing(self, path: Path, motion: RecordingMotion, times: np.ndarray) -> int:
        """Record each stretch without a face in the failures; return its frame count."""
        count = 0
        for first, last in motion.missing_spans():
            positions = np.searchsorted(motion.numbers, [first, last])
            count += int(positions[1] - positions[0] + 1)
            self.failures.fail(
                path,
                "no face found",
                f"frames {first}-{last}",
                warn=False,
                frame_start=first,
                frame_end=last,
                time_start=float(times[positions[0]]),
                time_end=float(times[positions[1]]),
            )
        if count:
            log.warning("%s: no face on %d frames (see failures.csv)", path, count)
        return count

    def _score(
        self, path: Path, name: str, kind: str, fps: float, intervals: pd.DataFrame
    ) -> tuple[pd.DataFrame, int]:
        """The AU columns of each interval's clip (empty where the clip failed), failures."""
        aus = self.scorer.aus
        columns = [au_column(au, k) for au in aus for k in ("prob", "pred")]
        empty = pd.DataFrame(np.nan, index=range(len(intervals)), columns=columns)
        if intervals.empty:
            return empty, 0
        clips = [
            f"i{i:04d}_{on}-{off}"
            for i, (on, off) in enumerate(zip(intervals["onset"], intervals["offset"], strict=True))
        ]
        manifest = interval_clips(
            intervals,
            clips,
            dataset="spot",
            subject=safe_component(name),
            source=(kind, path),
            fps=fps,
        )
        log_before = len(self.clips.log.failures)
        scored = self.clips.predict_rows(path, manifest)
        spans = dict(
            zip(clips, zip(intervals["onset"], intervals["offset"], strict=True), strict=True)
        )
        for failure in self.clips.log.failures[log_before:]:
            first, last = spans.get(failure["clip"], (None, None))
            self.failures.fail(
                path,
                failure["reason"],
                failure["clip"],
                warn=False,
                frame_start=first,
                frame_end=last,
            )
        if scored.empty:
            return empty, len(intervals)
        by_clip = scored.set_index("clip")[columns]
        result = by_clip.reindex(clips).reset_index(drop=True)
        return result, int(result[columns[0]].isna().sum())
