"""Manifests -> aligned-clip cache -> the clips a run can use (the step before any training).

:func:`prepare_data` reads the experiment's manifests, aligns every clip into the run's one
:class:`~au_llm.preprocess.cache.ClipCache`, excludes the clips that failed and resolves the AU
list. Its first step, :func:`read_inputs`, writes nothing: manifests are validated (ids, a clip
listed twice, even across files) and the AUs resolved before anything else, so a bad manifest or
a missing ``data.aus`` fails before any file is written, preprocessing or training. A dataset
whose every clip failed is named in a warning and in :attr:`PreparedData.lost_datasets`.
Protocols (LOSO, cross-domain) and ``au-llm train`` start from its :class:`PreparedData`; its
clips carry a ``fingerprint`` column (see
:meth:`~au_llm.preprocess.readers.HashingSource.fingerprint`) for the protocols' content guard.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from au_llm.config import DATASET_AUS, DataConfig, PreprocessConfig
from au_llm.data.au_sets import (
    UNKNOWN_COLUMN,
    unknown_aus_column,
    unknown_positives,
)
from au_llm.data.manifest import ManifestError, read_manifest, similar_subjects
from au_llm.preprocess.cache import ClipCache
from au_llm.preprocess.run import exclude_failed, preprocess_manifest, write_preprocess_report
from au_llm.protocols import PROTOCOLS, check_long_videos

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """Clips ready for a protocol.

    Attributes:
        source: Clips of ``data.manifests`` whose preprocessing succeeded, with their content
            ``fingerprint`` column.
        target: Clips of ``data.target_manifests`` (cross-domain), else None; same columns.
        aus: AU numbers the run detects.
        cache: The aligned-clip cache holding every clip above.
        excluded: Clips left out (dataset, subject, clip, reason).
        lost_datasets: Datasets of the manifests none of whose clips is left -> how many clips
            they listed (all failed preprocessing).
    """

    source: pd.DataFrame
    target: pd.DataFrame | None
    aus: list[int]
    cache: ClipCache
    excluded: pd.DataFrame
    lost_datasets: dict[str, int]


@dataclass(frozen=True)
class DataInputs:
    """The experiment's manifests, read and validated, and the AUs to detect (nothing written).

    Attributes:
        source: The rows of ``data.manifests``.
        target: The rows of ``data.target_manifests`` (cross-domain), else None.
        aus: AU numbers the run detects.
    """

    source: pd.DataFrame
    target: pd.DataFrame | None
    aus: list[int]


def resolve_aus(data: DataConfig, protocol: str, datasets: list[str]) -> list[int]:
    """The AUs to detect: ``data.aus`` if set, else the protocol's own, else the datasets' shared.

    A protocol may name its own default (``lodo``: the composite benchmark's 12 AUs,
    :data:`~au_llm.data.au_sets.COMPOSITE_AUS`); otherwise the default is the AUs that the
    datasets' published sets share.

    Args:
        data: The ``data`` section.
        protocol: The experiment's protocol (a name of :data:`~au_llm.protocols.PROTOCOLS`;
            ``au-llm train`` passes its config's).
        datasets: The datasets of the run's clips.

    Raises:
        ValueError: If no AU is left, or a dataset has no published set and ``data.aus`` is empty.
    """
    if data.aus:
        return sorted(set(data.aus))
    if PROTOCOLS[protocol].aus:
        return list(PROTOCOLS[protocol].aus)
    unknown = sorted(set(datasets) - set(DATASET_AUS))
    if unknown:
        raise ValueError(
            f"datasets {unknown} have no default AU set; set data.aus in the config "
            f"(known defaults: {sorted(DATASET_AUS)})"
        )
    shared = set.intersection(*(set(DATASET_AUS[d]) for d in datasets))
    if not shared:
        raise ValueError(f"datasets {datasets} share no AU; set data.aus")
    return sorted(shared)


def read_manifests(paths: list[str]) -> pd.DataFrame:
    """The rows of several manifest CSVs, concatenated and validated.

    Raises:
        ManifestError: A manifest is invalid (see :func:`~au_llm.data.manifest.read_manifest`)
            or a clip appears in two of the files (both are named).
    """
    frames = [read_manifest(Path(p)) for p in paths]
    first: dict[tuple[str, str, str], str] = {}
    for path, frame in zip(paths, frames, strict=True):
        for identity in zip(frame["dataset"], frame["subject"], frame["clip"], strict=True):
            if identity in first:
                raise ManifestError(
                    f"{path}: clip {'/'.join(identity)} is also listed in {first[identity]}; "
                    "each clip must appear once"
                )
            first[identity] = path
    everything = pd.concat(frames, ignore_index=True)
    if len(frames) > 1:
        for warning in similar_subjects(everything):
            logger.warning("%s: %s", ", ".join(paths), warning)
    return everything


def _with_fingerprints(frame: pd.DataFrame, report: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the ``fingerprint`` of each clip from a preprocessing report."""
    keys = ["dataset", "subject", "clip"]
    prints = report[[*keys, "fingerprint"]].drop_duplicates(subset=keys)
    return frame.drop(columns=["fingerprint"], errors="ignore").merge(prints, on=keys, how="left")


def read_inputs(data: DataConfig, protocol: str) -> DataInputs:
    """Read and validate the manifests and resolve the AUs; writes nothing.

    Raises:
        ValueError: No manifest, an invalid manifest (:class:`ManifestError`), no AU set
            (:func:`resolve_aus`), or a manifest of short clips under a spotting protocol.
    """
    if not data.manifests:
        raise ValueError("data.manifests is empty: give at least one manifest CSV")
    source = read_manifests(data.manifests)
    if PROTOCOLS[protocol].spotting:
        check_long_videos(source)
    target = read_manifests(data.target_manifests) if data.target_manifests else None
    datasets = set(source["dataset"]) | (set(target["dataset"]) if target is not None else set())
    return DataInputs(source, target, resolve_aus(data, protocol, sorted(datasets)))


def _lost_datasets(listed: pd.DataFrame, usable: pd.DataFrame, report: Path) -> dict[str, int]:
    """Datasets of ``listed`` without a row in ``usable`` -> their rows in ``listed`` (warned)."""
    counts = listed["dataset"].value_counts()
    lost = {str(d): int(n) for d, n in sorted(counts.items()) if d not in set(usable["dataset"])}
    for dataset, n in lost.items():
        logger.warning(
            "dataset %s: all %d of its clips failed preprocessing, so the run has none of its "
            "clips (see %s)",
            dataset,
            n,
            report.name,
        )
    return lost


def prepare_data(
    data: DataConfig,
    preprocess: PreprocessConfig,
    report: Path,
    protocol: str,
    *,
    strict: bool = False,
    progress: bool = True,
    inputs: DataInputs | None = None,
) -> PreparedData:
    """Read manifests, align and cache every clip, and exclude the clips that failed.

    Args:
        data: The ``data`` section (manifests, cache folder, AUs).
        preprocess: The ``preprocess`` section (face alignment of the cached clips).
        report: The per-clip preprocessing report to write (a run's
            :attr:`~au_llm.runs.layout.RunLayout.preprocess_report`).
        protocol: The run's protocol (see :func:`resolve_aus`).
        strict: Raise on the first clip that fails instead of excluding it.
        progress: Show a progress bar.
        inputs: The manifests and AUs, when the caller has read them already
            (:func:`read_inputs`, e.g. to validate them before writing anything).

    Raises:
        ValueError: Every clip of ``data.manifests``, or of ``data.target_manifests``, failed
            preprocessing (nothing to train on, or nothing to test).
    """
    inputs = inputs or read_inputs(data, protocol)
    source, target, aus = inputs.source, inputs.target, inputs.aus
    everything = pd.concat([source, target], ignore_index=True) if target is not None else source
    everything = everything.drop_duplicates(subset=["dataset", "subject", "clip"])
    cache = ClipCache(Path(data.cache_dir), preprocess)
    outcome = preprocess_manifest(everything, cache, strict=strict, progress=progress)
    write_preprocess_report(outcome, report)
    failed = outcome[outcome["status"] == "failed"]
    excluded = failed[["dataset", "subject", "clip", "error"]].rename(columns={"error": "reason"})
    usable = _with_fingerprints(exclude_failed(source, outcome), outcome)
    if usable.empty:
        raise ValueError(
            f"no usable clip: all {len(source)} clips of data.manifests failed preprocessing "
            f"(see {report})"
        )
    kept = (
        _with_fingerprints(exclude_failed(target, outcome), outcome) if target is not None else None
    )
    if kept is not None and kept.empty:
        raise ValueError(
            f"no usable test clip: all {len(target)} clips of data.target_manifests failed "
            f"preprocessing (see {report})"
        )
    left = pd.concat([usable, kept]) if kept is not None else usable
    lost = _lost_datasets(everything, left, report)
    if data.uncoded_aus == "unknown":
        usable = usable.assign(**{UNKNOWN_COLUMN: unknown_aus_column(usable, aus)})
        if kept is not None:
            kept = kept.assign(**{UNKNOWN_COLUMN: unknown_aus_column(kept, aus)})
        warn_unknown_positives(pd.concat([usable, kept]) if kept is not None else usable, aus)
    return PreparedData(usable, kept, aus, cache, excluded.reset_index(drop=True), lost)


def warn_unknown_positives(frame: pd.DataFrame, aus: list[int]) -> None:
    """Say how many coded positives ``data.uncoded_aus: unknown`` turns into unknown labels.

    A clip whose cell names an AU outside its dataset's set is not scored for that AU; the
    manifest builders note it per clip, and this warning counts them for the run.
    """
    counts = unknown_positives(frame, aus)
    if counts:
        listed = ", ".join(f"{dataset} AU{au} ({n} clips)" for (dataset, au), n in counts.items())
        logger.warning(
            "data.uncoded_aus=unknown: %d coded positive labels lie outside their dataset's AU "
            "set and are unknown, not positive: %s",
            sum(counts.values()),
            listed,
        )
