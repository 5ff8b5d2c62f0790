"""Where ``au-llm predict`` writes, checked against everything it reads before any work.

The predictions CSV, ``failures.csv`` and the per-frame table beside it, and the clip cache, must
not be (nor lie inside) an input: the ``--input`` manifests and recordings, the videos and frame
folders a manifest names, the model folder (symlinks resolved, ``--overwrite`` or not).
"""

from __future__ import annotations

from pathlib import Path

from au_llm.data.manifest import ManifestError, read_manifest
from au_llm.io_utils import check_not_input, check_output_file


def per_frame_path(out: Path) -> Path:
    """The per-frame table written beside the predictions ``out``."""
    return out.with_name(f"{out.stem}_per_frame.csv")


def input_paths(model_dir: Path, inputs: list[Path]) -> list[Path]:
    """Every file and folder a prediction reads: the model, the inputs, a manifest's sources."""
    paths = [Path(model_dir), *(Path(p) for p in inputs)]
    for path in inputs:
        if Path(path).suffix.lower() != ".csv" or not Path(path).is_file():
            continue
        try:
            manifest = read_manifest(Path(path))
        except ManifestError:
            continue  # reported as a failed input when it is predicted
        for column in ("frames_dir", "video"):
            paths.extend(Path(text) for text in manifest[column] if text)
    return paths


def prediction_files(
    out: Path,
    *,
    overwrite: bool = False,
    inputs: list[Path] | None = None,
    per_frame: bool = False,
    cache: Path | None = None,
) -> tuple[Path, Path]:
    """The predictions CSV and its ``failures.csv``, checked before any work.

    Args:
        out: The predictions CSV.
        overwrite: Whether an existing ``out`` may be replaced (``failures.csv`` and the
            per-frame table beside it always are).
        inputs: Everything the prediction reads (:func:`input_paths`): no output may be one of
            them or lie inside one, even with ``overwrite``.
        per_frame: Whether the per-frame table is written too.
        cache: The aligned-clip cache folder.

    Raises:
        ValueError: ``out`` is named ``failures.csv`` (the failure table would replace the
            predictions), is a folder, exists and ``overwrite`` is false, or an output is an
            input.
        OutputError: The folder of ``out`` cannot be written.
    """
    out = Path(out)
    failures = out.with_name("failures.csv")
    if out.name == failures.name:
        raise ValueError(
            f"--out {out}: failures.csv is the failure table written beside the predictions; "
            "choose another file name"
        )
    sources = inputs or []
    check_output_file(out, overwrite=overwrite, inputs=sources)
    for side in [failures, *([per_frame_path(out)] if per_frame else [])]:
        check_output_file(
            side, overwrite=True, inputs=sources, option=f"{side.name} (beside --out)"
        )
    if cache is not None:
        check_not_input(cache, sources, "the cache folder (--cache-dir)")
    return out, failures
