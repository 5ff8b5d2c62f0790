"""Batch preprocessing of a manifest into the aligned-clip cache, with a per-clip report.

Clips already cached with the same settings are skipped (status ``cached``), so an interrupted run
resumes where it stopped; every cache file is written atomically, and an unreadable cache file, or
one whose source files were replaced since (:func:`~au_llm.preprocess.readers.source_stamp`), is
preprocessed again; a source that is not there at all (a machine that sees only the cache) is not
compared. A clip whose frames cannot be read is reported ``failed`` and the batch goes on
(unless ``strict``); a failure to write the cache itself (full disk, read-only folder) is not a
problem of the clip and stops the batch with :class:`~au_llm.io_utils.OutputError`, and a cache
folder that cannot be written fails before any clip is read. Work runs in the calling process
(``workers: 0``) or in ``workers`` spawned processes, each with its own landmarker; a worker exits
when its parent process dies.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import cv2
import pandas as pd
from tqdm.auto import tqdm

from au_llm.data.fields import ClipReadError, clip_name, text_field
from au_llm.io_utils import OutputError, atomic_write_csv
from au_llm.preprocess.align import align_source
from au_llm.preprocess.cache import CacheError, ClipCache
from au_llm.preprocess.landmarks import Landmarker
from au_llm.preprocess.readers import HashingSource, is_fingerprint, open_clip, source_stamp

logger = logging.getLogger(__name__)

REPORT_COLUMNS = (
    "dataset",
    "subject",
    "clip",
    "status",
    "landmark_confidence",
    "fallback",
    "frames",
    "seconds",
    "error",
    "fingerprint",
)
STATUSES = ("ok", "fallback", "failed", "cached")
PARENT_CHECK_SECONDS = 1.0


class PreprocessError(RuntimeError):
    """A clip failed in ``strict`` mode; the message names the clip and the cause."""


_worker_cache: ClipCache | None = None
_worker_landmarker: Landmarker | None = None


def _record(row: Mapping[str, Any], status: str, **values: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "dataset": text_field(row, "dataset"),
        "subject": text_field(row, "subject"),
        "clip": text_field(row, "clip"),
        "status": status,
        "landmark_confidence": math.nan,
        "fallback": "",
        "frames": 0,
        "seconds": 0.0,
        "error": "",
        "fingerprint": "",
    }
    record.update(values)
    return record


def process_clip(
    row: Mapping[str, Any], cache: ClipCache, landmarker: Landmarker | None
) -> dict[str, Any]:
    """Read, align and cache one clip; never raises for a bad clip.

    Args:
        row: Manifest row.
        cache: The cache to write into (its ``cfg`` holds the preprocessing settings).
        landmarker: Landmarker (None only for ``mode: none``).

    Returns:
        A report record (keys ``REPORT_COLUMNS``) with status ``ok``, ``fallback`` or ``failed``.

    Raises:
        OutputError: The cache file cannot be written (a problem of the cache, not of the clip).
    """
    start = time.perf_counter()
    try:
        stamp = source_stamp(row)  # before reading: a file replaced meanwhile changes it again
        source = HashingSource(open_clip(row))
        try:
            result = align_source(source, cache.cfg, landmarker)
            fingerprint = source.fingerprint()
        finally:
            source.close()
        info = {
            "fallback": result.fallback,
            "landmark_confidence": result.confidence,
            "detections": result.detections,
            "frames": len(result.numbers),
            "fingerprint": fingerprint,
            "source_stamp": stamp,
        }
        cache.save(row, result.frames, result.numbers, info, result.transforms)
    except OutputError:
        raise
    except ClipReadError as exc:
        logger.warning("%s", exc)
        return _record(row, "failed", error=str(exc), seconds=time.perf_counter() - start)
    except Exception as exc:  # one broken clip must not stop the batch; reported per clip
        message = f"clip {clip_name(row)}: {type(exc).__name__}: {exc}"
        logger.warning("%s", message)
        return _record(row, "failed", error=message, seconds=time.perf_counter() - start)
    if result.fallback:
        logger.warning("clip %s: alignment fallback %s", clip_name(row), result.fallback)
    return _record(
        row,
        "fallback" if result.fallback else "ok",
        landmark_confidence=result.confidence,
        fallback=result.fallback,
        frames=len(result.numbers),
        seconds=time.perf_counter() - start,
        fingerprint=fingerprint,
    )


def watch_parent(parent: int, interval: float = PARENT_CHECK_SECONDS) -> None:
    """End this process at once when its parent ``parent`` is gone (it is reparented).

    Runs forever; start it in a daemon thread.
    """
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


def _init_worker(cache: ClipCache) -> None:
    """Pool initializer: the run's cache and one landmarker per worker, single-threaded OpenCV.

    A daemon thread ends the worker when the parent dies (a killed parent leaves no orphans).
    """
    global _worker_cache, _worker_landmarker
    threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
    cv2.setNumThreads(1)
    _worker_cache = cache
    _worker_landmarker = None if cache.cfg.align == "none" else Landmarker.from_config(cache.cfg)


def _worker_task(row: dict[str, Any]) -> dict[str, Any]:
    """Pool task (top level, so it pickles under ``spawn``)."""
    if _worker_cache is None:
        raise RuntimeError("preprocess worker was not initialised")
    return process_clip(row, _worker_cache, _worker_landmarker)


def _cached_record(row: Mapping[str, Any], cache: ClipCache) -> dict[str, Any]:
    """The report record of a cached clip.

    Raises:
        CacheError: The cache file is unreadable, has no fingerprint, or its source files were
            replaced since it was written (their :func:`source_stamp` differs; a source that is
            not there at all is not compared); the clip is then preprocessed again.
    """
    meta = cache.load(row).meta
    if not is_fingerprint(meta.get("fingerprint")):
        raise CacheError(f"cached clip {cache.path(row)} has no content fingerprint of frames")
    stamp = source_stamp(row)
    if stamp is not None and meta.get("source_stamp") != stamp:
        raise CacheError(
            f"cached clip {cache.path(row)}: the source files of clip {clip_name(row)} changed "
            "since it was cached (or it was cached before sources were stamped)"
        )
    confidence = meta.get("landmark_confidence")
    return _record(
        row,
        "cached",
        landmark_confidence=math.nan if confidence is None else float(confidence),
        fallback=meta.get("fallback", ""),
        frames=int(meta.get("frames", 0)),
        fingerprint=meta["fingerprint"],
    )


def _check_strict(record: dict[str, Any], strict: bool) -> None:
    if strict and record["status"] == "failed":
        raise PreprocessError(
            f"preprocessing failed for clip {record['dataset']}/{record['subject']}/"
            f"{record['clip']}: {record['error']}"
        )


def preprocess_manifest(
    manifest: pd.DataFrame, cache: ClipCache, *, strict: bool = False, progress: bool = True
) -> pd.DataFrame:
    """Align every clip of a manifest into the cache.

    Args:
        manifest: Manifest rows (dataset, subject, clip, frames_dir or video, onset, offset, ...).
        cache: The run's clip cache; its ``cfg`` holds the preprocessing settings
            (``workers`` processes; 0 runs here).
        strict: Raise :class:`PreprocessError` on the first failed clip instead of going on.
        progress: Show a tqdm progress bar.

    Returns:
        One report row per manifest row, in manifest order, with columns ``REPORT_COLUMNS``;
        ``status`` is ``ok``, ``fallback`` (aligned with a fallback, see ``fallback``),
        ``failed`` (not cached; see ``error``) or ``cached`` (already in the cache);
        ``fingerprint`` is the clip's content fingerprint (empty when failed).

    Raises:
        OutputError: The cache cannot be written (checked before any clip is read).
        PreprocessError: A clip failed under ``strict``.
    """
    cfg = cache.cfg
    rows = manifest.to_dict("records")
    records: list[dict[str, Any] | None] = [None] * len(rows)
    todo: list[int] = []
    for i, row in enumerate(rows):
        try:
            cached = cache.has(row)
        except ClipReadError as exc:
            records[i] = _record(row, "failed", error=str(exc))
            logger.warning("%s", exc)
            _check_strict(records[i], strict)
            continue
        if not cached:
            todo.append(i)
            continue
        try:
            records[i] = _cached_record(row, cache)
        except CacheError as exc:
            logger.warning("%s; the clip is preprocessed again", exc)
            todo.append(i)
    if todo:
        cache.prepare_writes()
    with tqdm(
        total=len(rows),
        initial=len(rows) - len(todo),
        disable=not progress,
        desc="preprocess",
        unit="clip",
    ) as bar:
        if cfg.workers == 0 or len(todo) < 2:
            _run_here(rows, todo, records, cache, strict, bar)
        else:
            _run_pool(rows, todo, records, cache, strict, bar)
    if todo:
        cache.write_index()
    return pd.DataFrame(records, columns=list(REPORT_COLUMNS))


def _run_here(
    rows: list[dict[str, Any]],
    todo: list[int],
    records: list[dict[str, Any] | None],
    cache: ClipCache,
    strict: bool,
    bar: tqdm,
) -> None:
    landmarker: Landmarker | None = None
    try:
        for i in todo:
            if landmarker is None and cache.cfg.align != "none":
                landmarker = Landmarker.from_config(cache.cfg)
            records[i] = process_clip(rows[i], cache, landmarker)
            bar.update(1)
            _check_strict(records[i], strict)
    finally:
        if landmarker is not None:
            landmarker.close()


def _run_pool(
    rows: list[dict[str, Any]],
    todo: list[int],
    records: list[dict[str, Any] | None],
    cache: ClipCache,
    strict: bool,
    bar: tqdm,
) -> None:
    executor = ProcessPoolExecutor(
        max_workers=min(cache.cfg.workers, len(todo)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(cache,),
    )
    try:
        futures: dict[Future, int] = {executor.submit(_worker_task, rows[i]): i for i in todo}
        for future in as_completed(futures):
            i = futures[future]
            try:
                records[i] = future.result()
            except OutputError:
                raise
            except Exception as exc:  # a crashed worker process fails its clip, not the batch
                message = f"clip {clip_name(rows[i])}: worker failed: {type(exc).__name__}: {exc}"
                logger.warning("%s", message)
                records[i] = _record(rows[i], "failed", error=message)
            bar.update(1)
            _check_strict(records[i], strict)
    except BaseException:
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def write_preprocess_report(report: pd.DataFrame, path: str | Path) -> Path:
    """Write a preprocessing report as CSV, atomically; returns the path."""
    atomic_write_csv(Path(path), report)
    return Path(path)


def failed_clips(report: pd.DataFrame) -> set[tuple[str, str, str]]:
    """``(dataset, subject, clip)`` of every ``failed`` clip in a report (as strings)."""
    failed = report[report["status"] == "failed"]
    return {
        (str(d), str(s), str(c))
        for d, s, c in zip(failed["dataset"], failed["subject"], failed["clip"], strict=True)
    }


def exclude_failed(manifest: pd.DataFrame, report: pd.DataFrame) -> pd.DataFrame:
    """Manifest rows whose clip did not fail in ``report`` (index reset)."""
    bad = failed_clips(report)
    keep = [
        (text_field(r, "dataset"), text_field(r, "subject"), text_field(r, "clip")) not in bad
        for r in manifest.to_dict("records")
    ]
    return manifest[keep].reset_index(drop=True)
