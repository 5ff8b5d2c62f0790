"""Save and load AU-LLM checkpoints: trainable weights only, plus what is needed to rebuild.

A checkpoint folder holds:

* ``weights.safetensors``: backbone (with BatchNorm statistics), projector, heads, a control
  reader or readout mix, and the LLM's trainable weights (LoRA adapters, or its norm weights); the
  frozen base LLM is never saved (a re-initialised base is rebuilt from its seed).
* ``config.json``: the resolved experiment configuration, as given by the caller (a record;
  rebuilding the model needs only ``model.json``).
* ``model.json``: the :class:`~au_llm.model.spec.ModelSpec` (model configuration, AUs, clip shape),
  the base LLM's identity (source, path, config hash, seed of a tiny base) and the caller's
  ``extra`` (e.g. decision thresholds), the precision it was trained in (``fp32`` or
  ``bf16``; :func:`load_checkpoint` returns it), the text processor's ids (prompt and
  instructions, :meth:`~au_llm.model.processing_au_llm.AULLMProcessor.to_dict`) and the sha256
  of ``weights.safetensors`` (``files_sha256``). It is written last, so a folder with
  ``model.json`` is complete.

Loading refuses weights whose sha256 differs from the recorded one, naming the file (a damaged
or replaced file would give NaN or wrong scores); folders saved before the hash was recorded load
with a warning that their weights cannot be verified. Weights holding NaN or infinite values are
refused either way.

The tokenizer is not copied: like the base LLM, it is loaded again from its source, and the
processor rebuilt with it must give the recorded ids.

Every file is written atomically. Version 4 is written; version 3 folders (whose callers kept
their settings in ``config.json``) are read too, and :func:`load_checkpoint` says which it read.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_safetensors

from au_llm.io_utils import atomic_write_bytes, atomic_write_text, read_json
from au_llm.model.modeling_au_llm import AULLM, build_au_llm
from au_llm.model.processing_au_llm import AULLMProcessor
from au_llm.model.spec import ModelSpec
from au_llm.model.weights import nonfinite_tensors, read_state_dict

logger = logging.getLogger(__name__)

FORMAT = "au-llm-checkpoint"
VERSION = 4
READABLE_VERSIONS = (3, VERSION)
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
MODEL_FILE = "model.json"
_IDENTITY_KEYS = ("source", "config_sha256", "seed")


def _json_text(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"


def build_model(
    spec: ModelSpec, seed: int, device: Any = "cpu", precision: str = "fp32"
) -> tuple[AULLM, AULLMProcessor]:
    """A fresh model and its text processor (see :func:`~au_llm.model.build_au_llm`).

    Args:
        spec: What to build.
        seed: Seed of the trainable weights.
        device: Where to place the model.
        precision: ``auto``, ``fp32`` or ``bf16``.

    Returns:
        ``(model, processor)``: the model in training mode, built on the processor's prompt ids.
    """
    processor = AULLMProcessor.from_spec(spec)
    ids = processor.prompt_ids, processor.query_ids
    return build_au_llm(spec, seed, device, precision, *ids), processor


def save_checkpoint(
    model: AULLM,
    processor: AULLMProcessor,
    cfg_dict: dict,
    out_dir: Path,
    extra: dict | None = None,
) -> None:
    """Save the trainable weights of ``model`` and what is needed to rebuild it.

    Args:
        model: The trained model.
        processor: Its text processor (its ids are recorded).
        cfg_dict: The resolved experiment configuration (plain dicts/lists), saved as given.
        out_dir: Checkpoint folder (created if needed; existing files are replaced).
        extra: JSON-serialisable extras, e.g. ``{"thresholds": [0.5, 0.5]}``; returned by
            :func:`load_checkpoint`.
    """
    out_dir = Path(out_dir)
    tensors = {
        key: value.detach().to("cpu").contiguous().clone()
        for key, value in model.trainable_state_dict().items()
    }
    weights = save_safetensors(tensors)
    atomic_write_bytes(out_dir / WEIGHTS_FILE, weights)
    atomic_write_text(out_dir / CONFIG_FILE, _json_text(cfg_dict))
    info = {
        "format": FORMAT,
        "version": VERSION,
        "spec": model.spec.to_dict(),
        "base_identity": model.base_identity,
        "precision": model.precision,
        "processor": processor.to_dict(),
        "files_sha256": {WEIGHTS_FILE: hashlib.sha256(weights).hexdigest()},
        "extra": extra or {},
    }
    atomic_write_text(out_dir / MODEL_FILE, _json_text(info))


def _verified_state(weights_path: Path, recorded: Any) -> dict[str, torch.Tensor]:
    """The tensors of a model folder's weights file, checked against its recorded sha256.

    Args:
        weights_path: The weights file.
        recorded: The sha256 ``model.json`` records for it (None for folders saved before it
            was recorded: loaded with a warning).

    Raises:
        ValueError: The file is unreadable (:func:`~au_llm.model.weights.read_state_dict`), its
            sha256 differs from the recorded one, or a tensor holds NaN or infinite values; the
            message names the file.
    """
    state = read_state_dict(weights_path)
    if recorded is None:
        logger.warning(
            "%s: its model folder records no sha256 of it (saved by an older au-llm), so the "
            "weights cannot be verified; train or save the model again to record it",
            weights_path,
        )
    else:
        with open(weights_path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        if digest != recorded:
            raise ValueError(
                f"{weights_path}: sha256 {digest} differs from the {recorded} recorded in "
                f"{MODEL_FILE}: the file was damaged or replaced after training; restore it or "
                "train the model again"
            )
    bad = nonfinite_tensors(state.items())
    if bad:
        raise ValueError(
            f"{weights_path}: {len(bad)} tensor(s) hold NaN or infinite values ({bad[0]}, ...); "
            "the weights are damaged, or their training diverged"
        )
    return state


def _field(data: Any, key: str) -> Any:
    return data.get(key) if isinstance(data, dict) else None


def _check_identity(saved: dict | None, current: dict | None, model_dir: Path) -> None:
    """Raise if the base LLM available now is not the one the checkpoint was trained on.

    The weights fingerprint is compared when the checkpoint recorded one (weights replaced at
    the same path with the same config are refused).
    """
    if saved is None or current is None:
        if saved != current:
            raise ValueError(
                f"{model_dir}: checkpoint base LLM {saved} does not match the current {current}"
            )
        return
    keys = [*_IDENTITY_KEYS, *(["weights_sha256"] if saved.get("weights_sha256") else [])]
    if any(saved.get(key) != current.get(key) for key in keys):
        raise ValueError(
            f"{model_dir}: the checkpoint was trained on base LLM {saved}, but the base LLM "
            f"loaded now is {current}; the LoRA adapters only fit the original base"
        )
    if saved.get("path") != current.get("path"):
        logger.warning(
            "base LLM moved from %s to %s (same config hash)", saved["path"], current["path"]
        )


def load_checkpoint(model_dir: Path) -> tuple[AULLM, AULLMProcessor, dict]:
    """Rebuild a model saved by :func:`save_checkpoint` (base LLM and tokenizer loaded again).

    Args:
        model_dir: Checkpoint folder.

    Returns:
        ``(model, processor, info)``: the model in eval mode on the CPU in float32 (place it with
        ``model.place(device, info["precision"])`` to run it as trained), and ``info`` with keys
        ``config`` (the saved experiment configuration), ``extra``, ``base_identity``,
        ``precision`` (``fp32`` or ``bf16``), ``version`` (the folder's format version) and
        ``saved_model`` (the model section as saved, in the keys of the version that saved it);
        the model's ``spec`` holds the rest.

    Raises:
        FileNotFoundError: If the folder is not a complete checkpoint.
        ValueError: If the files are invalid, or the base LLM or its tokenizer differs from the
            one trained on.
    """
    model_dir = Path(model_dir)
    meta_path = model_dir / MODEL_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{model_dir}: not an au-llm checkpoint ({MODEL_FILE} missing)")
    meta = read_json(meta_path)
    if (
        not isinstance(meta, dict)
        or meta.get("format") != FORMAT
        or meta.get("version") not in READABLE_VERSIONS
    ):
        raise ValueError(
            f"{meta_path}: expected format {FORMAT!r} version {VERSION} (or 3), got "
            f"{_field(meta, 'format')!r} version {_field(meta, 'version')!r}"
        )
    try:
        saved_model = copy.deepcopy(meta["spec"]["model"])
        # Models saved before model.llm.chat_template existed were trained without a template.
        meta["spec"]["model"].setdefault("llm", {}).setdefault("chat_template", "off")
        spec = ModelSpec.from_dict(meta["spec"])
        saved_identity = meta["base_identity"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{meta_path}: {type(exc).__name__}: {exc}") from exc
    weights_path = model_dir / WEIGHTS_FILE
    if not weights_path.is_file():
        raise FileNotFoundError(f"{model_dir}: {WEIGHTS_FILE} missing")
    state = _verified_state(weights_path, _field(meta.get("files_sha256"), WEIGHTS_FILE))
    model, processor = build_model(spec, seed=0)
    _check_identity(saved_identity, model.base_identity, model_dir)
    if meta.get("processor", processor.to_dict()) != processor.to_dict():
        raise ValueError(
            f"{model_dir}: the tokenizer loaded now gives other prompt or instruction ids than "
            "the one the model was trained with"
        )
    try:
        model.load_trainable_state_dict(state)
    except ValueError as exc:
        raise ValueError(f"{weights_path}: {exc}") from exc
    model.eval()
    config_path = model_dir / CONFIG_FILE
    info = {
        "config": read_json(config_path) if config_path.is_file() else {},
        "extra": meta.get("extra", {}),
        "base_identity": saved_identity,
        "precision": meta.get("precision", "fp32"),
        "version": meta["version"],
        "saved_model": saved_model,
    }
    return model, processor, info
