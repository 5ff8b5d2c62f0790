"""Evaluation protocols: the table of protocols, their folds and the leakage guards.

:data:`PROTOCOLS` names every protocol (``au-llm loso``, ``lodo``, ``cross``, ``megc``;
``protocol:`` in a config): how it splits the run's clips into folds, the leakage checks each
fold passes, and what it needs. The configs and the command line read the table, so a protocol
added here is one the ``protocol`` check accepts and ``au-llm --help`` lists. A fold is one
train/test split (:class:`Fold`); a fold whose two sides share a subject, a clip or the same
pixels is refused (:class:`LeakageError`). The run lifecycle that trains the folds is the recipe
:mod:`au_llm.recipes.experiment`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from au_llm.data.au_sets import COMPOSITE_AUS
from au_llm.preprocess.readers import fingerprint_hashes


class LeakageError(RuntimeError):
    """A subject, a clip or a clip's pixels appear on both the training and the test side."""


@dataclass(frozen=True)
class Fold:
    """One train/test split.

    Attributes:
        name: Held-out subject id (LOSO) or ``<sources>_to_<target>`` (cross-domain).
        train: Manifest rows to train on.
        test: Manifest rows to test on.
    """

    name: str
    train: pd.DataFrame
    test: pd.DataFrame


_ID_KEYS = ("dataset", "subject", "clip")


def _subject_ids(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["dataset"], frame["subject"], strict=True))


def _clip_ids(frame: pd.DataFrame) -> set[tuple[str, str, str]]:
    """Clip identities: CASME II reuses clip names across subjects, so the subject is part of it."""
    return set(zip(frame["dataset"], frame["subject"], frame["clip"], strict=True))


def check_no_subject_leak(fold: Fold) -> None:
    """Raise :class:`LeakageError` if a subject is on both sides of ``fold``."""
    shared = _subject_ids(fold.train) & _subject_ids(fold.test)
    if shared:
        names = ", ".join(f"{d}/{s}" for d, s in sorted(shared))
        raise LeakageError(f"fold {fold.name}: subjects in both train and test: {names}")


def check_no_clip_leak(fold: Fold) -> None:
    """Raise :class:`LeakageError` if a clip is on both sides of ``fold``."""
    shared = _clip_ids(fold.train) & _clip_ids(fold.test)
    if shared:
        names = ", ".join("/".join(key) for key in sorted(shared))
        raise LeakageError(f"fold {fold.name}: clips in both train and test: {names}")


def check_no_content_leak(fold: Fold) -> None:
    """Raise :class:`LeakageError` if a train clip and a test clip have the same pixels.

    Compares the ``fingerprint`` columns (content fingerprints from preprocessing: hashes of
    frames, see :meth:`~au_llm.preprocess.readers.HashingSource.fingerprint`; sides without one
    are not compared). Two clips sharing a frame hash hold a frame with identical pixels, so a
    clip copied under another dataset, subject or clip name is found, also when the copy starts
    or ends a few frames later or holds a single frame of the clip; the message names both clips.
    A copy with other pixels (re-encoded as JPEG) is not found (``data_manifests/README.md``).
    """
    if "fingerprint" not in fold.train.columns or "fingerprint" not in fold.test.columns:
        return
    train: dict[str, str] = {}
    for row in fold.train.to_dict("records"):
        for frame in fingerprint_hashes(row["fingerprint"]):
            train.setdefault(frame, "/".join(str(row[k]) for k in _ID_KEYS))
    pairs = []
    for row in fold.test.to_dict("records"):
        shared = sorted(train[f] for f in fingerprint_hashes(row["fingerprint"]) if f in train)
        if shared:
            pairs.append(f"{shared[0]} (train) = {'/'.join(str(row[k]) for k in _ID_KEYS)} (test)")
    if pairs:
        raise LeakageError(
            f"fold {fold.name}: clips with identical source frames on both sides: "
            f"{'; '.join(pairs)}; remove the copies from the manifests"
        )


Guard = Callable[[Fold], None]
# The checks of a fold that holds out subjects (a shared clip implies a shared subject) and of one
# that holds out a dataset or tests on other manifests (a clip copied under another subject).
SUBJECT_GUARDS: tuple[Guard, ...] = (check_no_subject_leak, check_no_content_leak)
SPLIT_GUARDS: tuple[Guard, ...] = (check_no_clip_leak, check_no_subject_leak, check_no_content_leak)


def check_fold(fold: Fold, guards: tuple[Guard, ...]) -> None:
    """Run every leakage check of ``guards`` on ``fold``.

    Raises:
        LeakageError: From the first check that fails.
    """
    for guard in guards:
        guard(fold)


def loso_folds(manifest: pd.DataFrame) -> list[Fold]:
    """One fold per subject: that subject's clips are the test side, all others train.

    Fold names are the subject ids; with several datasets they are ``<dataset>/<subject>``
    (ids hold no ``/``, so two folds never share a name).
    """
    several = manifest["dataset"].nunique() > 1
    folds = []
    for (dataset, subject), test in manifest.groupby(["dataset", "subject"], sort=True):
        train = manifest[(manifest["dataset"] != dataset) | (manifest["subject"] != subject)]
        name = f"{dataset}/{subject}" if several else str(subject)
        fold = Fold(name, train.reset_index(drop=True), test.reset_index(drop=True))
        check_fold(fold, SUBJECT_GUARDS)
        folds.append(fold)
    return folds


def check_long_videos(manifest: pd.DataFrame) -> None:
    """Raise unless every row is an expression of a long recording, named by one source.

    Raises:
        ValueError: A row without a ``recording`` (a manifest of short clips), or a recording
            whose rows name several frame folders or videos; the message names it.
    """
    recordings = manifest.get("recording", pd.Series("", index=manifest.index))
    missing = manifest[recordings.fillna("").astype(str).str.strip() == ""]
    if not missing.empty:
        first = missing.iloc[0]
        raise ValueError(
            f"protocol megc needs long-video manifests (au-llm manifest samm-lv, casme-sq-lv or "
            f"casme3-lv): {len(missing)} rows name no recording, e.g. "
            f"{first['dataset']}/{first['subject']}/{first['clip']}"
        )
    sources = manifest["frames_dir"].fillna("").astype(str) + manifest["video"].fillna("").astype(
        str
    )
    keys = ["dataset", "subject", "recording"]
    counts = manifest.assign(source=sources).groupby(keys)["source"].nunique()
    several = counts[counts > 1]
    if not several.empty:
        dataset, subject, recording = several.index[0]
        raise ValueError(
            f"{dataset}/{subject} recording {recording}: its rows name {several.iloc[0]} "
            "frame folders or videos, expected one (the whole recording)"
        )


def spot_folds(manifest: pd.DataFrame) -> list[Fold]:
    """Leave one subject out over long-video manifests (MEGC): one fold per subject.

    The rows are the annotated expressions of long recordings (``recording`` names each one's
    recording); a fold trains on the other subjects' expressions and tests on the held-out
    subject's, whose recordings the spotter reads whole (:mod:`au_llm.spot.protocol`).

    Raises:
        ValueError: A row without a ``recording`` (:func:`check_long_videos`).
    """
    check_long_videos(manifest)
    return loso_folds(manifest)


def lodo_folds(manifest: pd.DataFrame) -> list[Fold]:
    """Leave one dataset out: one fold per dataset, tested on its clips, trained on all others.

    Fold names are the dataset names. Subjects are told apart by dataset (``casme2/sub01`` and
    ``casme/sub01`` are two people); a clip copied into another dataset's manifest is refused by
    the content fingerprint guard (:func:`check_no_content_leak`).

    Raises:
        ValueError: Fewer than two datasets.
        LeakageError: A clip or a clip's pixels on both sides of a fold.
    """
    datasets = sorted(manifest["dataset"].unique())
    if len(datasets) < 2:
        raise ValueError(
            f"protocol lodo needs clips of at least two datasets, got {datasets}; "
            "give one manifest per dataset in data.manifests"
        )
    folds = []
    for dataset in datasets:
        held = manifest["dataset"] == dataset
        fold = Fold(
            dataset,
            manifest[~held].reset_index(drop=True),
            manifest[held].reset_index(drop=True),
        )
        check_fold(fold, SPLIT_GUARDS)
        folds.append(fold)
    return folds


def cross_folds(source: pd.DataFrame, target: pd.DataFrame) -> list[Fold]:
    """The single cross-domain fold: train on every source clip, test on every target clip."""
    name = "+".join(sorted(source["dataset"].unique())) + "_to_"
    name += "+".join(sorted(target["dataset"].unique()))
    fold = Fold(name, source.reset_index(drop=True), target.reset_index(drop=True))
    check_fold(fold, SPLIT_GUARDS)
    return [fold]


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol: how a run's clips are split into folds.

    Attributes:
        title: What it is, for ``au-llm --help`` (``leave-one-subject-out``).
        folds: Every fold of the prepared clips, ``folds(source, target)``: ``source`` holds the
            clips of ``data.manifests``, ``target`` those of ``data.target_manifests`` (None when
            the protocol has no target).
        guards: The leakage checks every fold passes when it is made and again before it trains.
        target: Whether it tests on ``data.target_manifests`` (a config must then give them).
        aus: The AUs detected when ``data.aus`` is empty; empty: the AUs that the published sets
            of the run's datasets share (:func:`~au_llm.prepare.resolve_aus`).
        per_dataset: Whether it makes one fold per dataset (a dataset all of whose clips failed
            preprocessing then has no fold; the report says so).
        spotting: Whether each fold also spots the held-out recordings and scores the spotted
            intervals by the MEGC rules (:mod:`au_llm.spot.protocol`).
    """

    title: str
    folds: Callable[[pd.DataFrame, pd.DataFrame | None], list[Fold]]
    guards: tuple[Guard, ...] = SPLIT_GUARDS
    target: bool = False
    aus: tuple[int, ...] = ()
    per_dataset: bool = False
    spotting: bool = False


def _cross(source: pd.DataFrame, target: pd.DataFrame | None) -> list[Fold]:
    if target is None:
        raise ValueError("protocol cross needs the clips of data.target_manifests")
    return cross_folds(source, target)


PROTOCOLS: dict[str, Protocol] = {
    "loso": Protocol(
        "leave-one-subject-out", lambda source, _: loso_folds(source), guards=SUBJECT_GUARDS
    ),
    "lodo": Protocol(
        "leave-one-dataset-out",
        lambda source, _: lodo_folds(source),
        aus=COMPOSITE_AUS,
        per_dataset=True,
    ),
    "cross": Protocol("cross-domain transfer", _cross, target=True),
    "megc": Protocol(
        "spot-then-recognise (MEGC)",
        lambda source, _: spot_folds(source),
        guards=SUBJECT_GUARDS,
        spotting=True,
    ),
}
"""Every protocol by name: the config's ``protocol`` and the ``au-llm`` sub-command."""


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``K/N`` (1 <= K <= N) into ``(K, N)``."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected K/N, e.g. 2/4") from None
    if not 1 <= k <= n:
        raise ValueError(f"--shard {text!r}: expected 1 <= K <= N")
    return k, n


def select_folds(
    folds: list[Fold], names: list[str] | None = None, shard: tuple[int, int] | None = None
) -> list[Fold]:
    """Restrict folds to the named ones and/or to shard K of N (folds K, K+N, ... by name)."""
    if names:
        known = {fold.name for fold in folds}
        unknown = sorted(set(names) - known)
        if unknown:
            raise ValueError(f"--folds: unknown fold(s) {unknown}; known: {sorted(known)}")
        folds = [fold for fold in folds if fold.name in names]
    if shard:
        k, n = shard
        folds = [fold for i, fold in enumerate(folds) if i % n == k - 1]
    return folds


def fold_seed(seed: int, fold_name: str) -> int:
    """A seed that depends only on the run seed and the fold's name (stable across processes)."""
    return (seed * 1_000_003 + zlib.crc32(fold_name.encode())) % 2**31


def fold_keys(metas: list[dict], fold: str, seed: int) -> pd.DataFrame:
    """The key columns of a fold's rows: ``dataset, subject, clip, fold, seed``."""
    return pd.DataFrame(
        {
            "dataset": [m["dataset"] for m in metas],
            "subject": [str(m["subject"]) for m in metas],
            "clip": [m["clip"] for m in metas],
            "fold": fold,
            "seed": seed,
        }
    )
