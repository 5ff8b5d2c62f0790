"""A local Hugging Face model (a folder, or a ``.gguf`` file) read with transformers, checked.

Everything transformers reads from a user's model passes through here, so a model that is not
what it claims is an error naming its folder or file, never a traceback or a model that silently
differs from it:

* no code shipped with the model runs (:func:`refuse_remote_code`, ``trust_remote_code=False``);
* nothing is downloaded (``local_files_only``);
* every weight of the architecture comes from the files, finite, and every tensor in the files is
  used (:func:`load_causal_lm`): transformers otherwise initialises missing weights at random and
  says so only in a report on stderr (that report is kept quiet while au-llm loads: its
  own error names the folder and the weights);
* the tokenizer's ids fit the model's vocabulary (:func:`check_vocabulary`);
* whatever a damaged file makes transformers raise (``struct.error`` from a truncated GGUF,
  ``KeyError`` from a ``tokenizer.json`` without its keys, ...) is reported with the file named
  (:func:`from_folder`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from au_llm.model.weights import nonfinite_tensors

T = TypeVar("T")

LOCAL = {"local_files_only": True, "trust_remote_code": False}
"""Keyword arguments of every transformers load: no download, no shipped code."""
# Files of a Hugging Face folder that may name Python code of the folder to run (``auto_map``).
_REMOTE_CODE_FILES = ("config.json", "tokenizer_config.json")
# Weight names shown in an error (the count of the rest follows).
_NAMES_SHOWN = 5


def error_line(exc: BaseException) -> str:
    """``Type: first line of the message``, the type with its package unless a built-in one."""
    kind = type(exc)
    name = kind.__name__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__.split('.')[0]}.{name}"
    text = str(exc).strip()
    return f"{name}: {text.splitlines()[0]}" if text else name


def refuse_remote_code(folder: Path) -> None:
    """Raise unless ``folder`` loads without running code it ships (no ``auto_map``).

    A model folder whose ``config.json`` or ``tokenizer_config.json`` has an ``auto_map`` needs
    its own Python files to load; au-llm never runs them (every load passes
    ``trust_remote_code=False``, and this check refuses such a folder before transformers reads
    it, so nothing is ever asked at a terminal).

    Raises:
        ValueError: A file holds ``auto_map``, or is not a JSON object; the message names it.
    """
    for name in _REMOTE_CODE_FILES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"model.llm.path: {path} is not readable JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"model.llm.path: {path} is not a JSON object")
        if "auto_map" in data:
            raise ValueError(
                f"model.llm.path: {folder} needs code shipped with the model ({name} has "
                "auto_map); au-llm never runs model code: use a model that transformers "
                "supports natively"
            )


def checked_folder(path: Path) -> Path:
    """``path`` if it is a local model folder that runs no shipped code (else raise)."""
    if not path.is_dir():
        raise FileNotFoundError(f"model.llm.path: {path} is not a directory (a local HF model)")
    refuse_remote_code(path)
    return path


def from_folder(what: str, where: Path, load: Callable[[], T]) -> T:
    """``load()``, a transformers reader of the model at ``where``, with its failures named.

    Transformers' readers raise whatever the damaged file makes the parser raise (``KeyError``,
    ``TypeError``, ``struct.error``, ``RuntimeError``, ...), so every exception becomes one
    :class:`ValueError` that names the model and keeps the original as its cause.

    Args:
        what: What is loaded, e.g. ``"a tokenizer"``.
        where: The folder or file read.
        load: The reader.

    Raises:
        ValueError: ``load`` failed; the message names ``where`` and the original error.
    """
    try:
        return load()
    except Exception as exc:  # a third-party parser on a user's file: any error is the file's
        raise ValueError(
            f"model.llm.path: cannot load {what} from {where} (damaged, truncated or not a "
            f"model file?): {error_line(exc)}"
        ) from exc


def _names(keys: Any) -> str:
    names = sorted(str(k) for k in keys)
    more = f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else ""
    return ", ".join(names[:_NAMES_SHOWN]) + more


def check_loading_info(info: dict[str, Any], where: Path) -> None:
    """Raise unless transformers' loading report says every weight came from the files.

    Tied weights (an LM head that shares the embedding) count as loaded when either one is in
    the files; transformers leaves them out of the report.

    Args:
        info: ``from_pretrained(..., output_loading_info=True)``'s second value.
        where: The folder or file loaded (named in the error).

    Raises:
        ValueError: Weights are missing (they would be random), unused or of another shape.
    """
    problems = [
        f"{len(info[key])} {label}: {_names(info[key])}"
        for key, label in (
            ("missing_keys", "weights missing from its files (they would be random)"),
            ("unexpected_keys", "tensors in its files that the architecture does not have"),
            ("mismatched_keys", "weights of another shape than its config gives"),
        )
        if info.get(key)
    ]
    problems += [f"load error: {str(m).splitlines()[0]}" for m in info.get("error_msgs", []) if m]
    if problems:
        raise ValueError(f"model.llm.path: {where} is not a complete model: {'; '.join(problems)}")


@contextmanager
def _quiet_load_report() -> Iterator[None]:
    """Keep transformers' warnings (its weight-loading report) quiet for the block."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def load_causal_lm(folder: Path, where: Path, **kwargs: Any) -> nn.Module:
    """A causal LM read from ``folder`` in float32, every weight from its files.

    Args:
        folder: The folder transformers reads.
        where: What errors name (the folder, or the ``.gguf`` file inside it).
        **kwargs: More arguments of ``from_pretrained`` (``gguf_file=...``).

    Raises:
        ValueError: The files cannot be read, do not hold exactly the model's weights, or a
            weight holds NaN or infinite values.
    """
    from transformers import AutoModelForCausalLM

    with _quiet_load_report():
        model, info = from_folder(
            "a causal LM",
            where,
            lambda: AutoModelForCausalLM.from_pretrained(
                str(folder), dtype=torch.float32, output_loading_info=True, **LOCAL, **kwargs
            ),
        )
    check_loading_info(info, where)
    damaged = nonfinite_tensors(model.named_parameters())
    if damaged:
        raise ValueError(
            f"model.llm.path: {where}: {len(damaged)} weights hold NaN or infinite values "
            f"({_names(damaged)}): its files are damaged"
        )
    return model


def check_vocabulary(folder: Path, tokenizer: Any) -> None:
    """Raise unless every id of ``tokenizer`` has a row in the embedding of ``folder``'s model.

    Args:
        folder: The model folder (its ``config.json`` gives the vocabulary size).
        tokenizer: A Hugging Face tokenizer (``len`` counts its tokens, added ones included).

    Raises:
        ValueError: The model's vocabulary is smaller than the tokenizer's; names both sizes.
    """
    from transformers import AutoConfig

    config = from_folder(
        "a model config", folder, lambda: AutoConfig.from_pretrained(str(folder), **LOCAL)
    )
    vocab_size = getattr(config.get_text_config(), "vocab_size", None)
    if isinstance(vocab_size, int) and len(tokenizer) > vocab_size:
        raise ValueError(
            f"model.llm.path: {folder}: the tokenizer has {len(tokenizer)} tokens but the "
            f"model's vocabulary (config.json vocab_size) has {vocab_size}; ids from "
            f"{vocab_size} up have no embedding: the tokenizer belongs to another model"
        )
