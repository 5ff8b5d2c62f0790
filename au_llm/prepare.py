"""Manifests -> aligned-clip cache -> the clips a run can use (the step before any training).

:func:`prepare_data` reads the experiment's manifests, aligns every clip into the run's one
:class:`~au_llm.preprocess.cache.ClipCache`, excludes the clips that failed and resolves the AU
list. Protocols (LOSO, cross-domain) and ``au-llm train`` start from its :class:`PreparedData`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from au_llm.config import DATASET_AUS, ExperimentConfig
from au_llm.data.manifest import read_manifest
from au_llm.preprocess.cache import ClipCache
from au_llm.preprocess.run import exclude_failed, preprocess_manifest, write_preprocess_report


@dataclass
class PreparedData:
    """Clips ready for a protocol.

    Attributes:
        source: Clips of ``data.manifests`` whose preprocessing succeeded.
        target: Clips of ``data.target_manifests`` (cross-domain), else None.
        aus: AU numbers the run detects.
        cache: The aligned-clip cache holding every clip above.
        excluded: Clips left out (dataset, subject, clip, reason).
    """

    source: pd.DataFrame
    target: pd.DataFrame | None
    aus: list[int]
    cache: ClipCache
    excluded: pd.DataFrame


def resolve_aus(cfg: ExperimentConfig, datasets: list[str]) -> list[int]:
    """The AUs to detect: ``data.aus`` if set, else the AUs shared by the datasets' published sets.

    Raises:
        ValueError: If no AU is left, or a dataset has no published set and ``data.aus`` is empty.
    """
    if cfg.data.aus:
        return sorted(set(cfg.data.aus))
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
    """The rows of several manifest CSVs, concatenated."""
    return pd.concat([read_manifest(Path(p)) for p in paths], ignore_index=True)


def prepare_data(cfg: ExperimentConfig, run_dir: Path, progress: bool = True) -> PreparedData:
    """Read manifests, align and cache every clip, and exclude the clips that failed.

    The per-clip preprocessing report is written to ``run_dir/preprocess_report.csv``.
    """
    if not cfg.data.manifests:
        raise ValueError("data.manifests is empty: give at least one manifest CSV")
    source = read_manifests(cfg.data.manifests)
    target = read_manifests(cfg.data.target_manifests) if cfg.data.target_manifests else None
    everything = pd.concat([source, target], ignore_index=True) if target is not None else source
    everything = everything.drop_duplicates(subset=["dataset", "subject", "clip"])
    cache = ClipCache(Path(cfg.data.cache_dir), cfg.preprocess)
    report = preprocess_manifest(everything, cache, strict=cfg.strict, progress=progress)
    write_preprocess_report(report, run_dir / "preprocess_report.csv")
    failed = report[report["status"] == "failed"]
    excluded = failed[["dataset", "subject", "clip", "error"]].rename(columns={"error": "reason"})
    usable = exclude_failed(source, report)
    if usable.empty:
        raise ValueError(
            f"no usable clip: all {len(source)} clips of data.manifests failed preprocessing "
            f"(see {run_dir / 'preprocess_report.csv'})"
        )
    return PreparedData(
        usable,
        exclude_failed(target, report) if target is not None else None,
        resolve_aus(cfg, sorted(everything["dataset"].unique())),
        cache,
        excluded.reset_index(drop=True),
    )
