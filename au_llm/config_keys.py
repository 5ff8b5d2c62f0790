"""Config keys of earlier versions: refused in a config a user gives, read in one au-llm saved.

A renamed key (:data:`RENAMED_KEYS`) or a retired one (:data:`RETIRED_KEYS`) set in a YAML file or
on the command line is an error naming the key that replaced it (:func:`check_retired`). Configs
au-llm wrote itself (a run folder's ``config.yaml``, a model folder's ``config.json`` and
``model.json``) are read with each old key moved to its new name, and a retired key turned into
the setting that replaced it (:func:`upgrade_saved`, :func:`upgrade_saved_model`,
:func:`saved_generation`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from au_llm.config_checks import ConfigError

# Keys that were replaced: a config that still sets one gets an error naming the new key.
RETIRED_KEYS = {
    "train.bf16": "train.precision (auto, fp32 or bf16)",
    "model.llm.dtype": "train.precision (auto, fp32 or bf16)",
    "model.explain.weight": "model.explain (true or false) and train.explain_weight",
}
# Keys that were renamed or moved to another section (old -> new). A config a user gives that
# sets the old name gets an error naming the new one; configs au-llm saved itself (run and model
# folders) are read with the old name moved to the new one (:func:`upgrade_saved`). The model
# section holds what the weights are: its training weights and curricula moved to ``train``, its
# decoding settings to ``generation``.
RENAMED_KEYS = {
    "preprocess.mode": "preprocess.align",
    "eval.threshold": "eval.threshold_policy",
    "sampling.train": "sampling.train_strategy",
    "sampling.test": "sampling.test_strategy",
    "model.text.weight": "train.text_weight",
    "model.text.linear_weight": "train.linear_weight",
    "model.text.format_weights": "train.format_weights",
    "model.text.first_format_epochs": "train.first_format_epochs",
    "model.text.max_new_tokens": "generation.max_answer_tokens",
    "model.text.constrained": "generation.constrained",
    "model.explain.max_new_tokens": "generation.max_explanation_tokens",
    "model.explain.stop_repeat": "generation.stop_repeat",
}
# ``train.bf16`` meant bfloat16 where the device computes it natively and float32 elsewhere
# (``train.precision: auto``); false meant float32 everywhere. ``model.llm.dtype`` (the frozen
# base's storage type) is implied by ``train.precision`` and is dropped from saved configs.
_BF16_PRECISION = {True: "auto", False: "fp32"}


def _lookup(data: Any, dotted: str) -> bool:
    """Whether the plain nested mappings ``data`` hold the key ``dotted`` (``section.key``)."""
    for part in dotted.split("."):
        if not isinstance(data, Mapping) or part not in data:
            return False
        data = data[part]
    return True


def _move(data: dict[str, Any], old: str, new: str) -> None:
    """Move the value at dotted key ``old`` of ``data`` to ``new`` (unless ``new`` is set)."""
    *parents, key = old.split(".")
    part: Any = data
    for name in parents:
        part = part.get(name) if isinstance(part, dict) else None
    if not isinstance(part, dict) or key not in part:
        return
    value = part.pop(key)
    *parents, key = new.split(".")
    part = data
    for name in parents:
        part = part.setdefault(name, {})
    part.setdefault(key, value)


def check_retired(data: Any, source: str) -> None:
    """Raise :class:`ConfigError` naming the new key if ``data`` sets an old one.

    Args:
        data: A config as plain nested mappings (a file's or the command line's).
        source: The file (or "command line") named in the error.
    """
    for key, new in {**RETIRED_KEYS, **RENAMED_KEYS}.items():
        if _lookup(data, key):
            raise ConfigError(f"{source}: {key} was replaced by {new}; remove {key}")


def upgrade_saved(data: dict[str, Any]) -> dict[str, Any]:
    """A config au-llm saved (plain data), with every old key read as its replacement.

    Each key of :data:`RENAMED_KEYS` is moved to its new name (a training weight or curriculum
    of ``model`` to ``train``, a decoding setting to ``generation``); ``model.explain``'s
    ``weight`` ``w`` becomes the switch ``model.explain: w > 0`` and, when on,
    ``train.explain_weight: w``; ``train.bf16`` becomes ``train.precision`` (true: ``auto``,
    false: ``fp32``) unless the precision is also given; ``model.llm`` as
    :func:`upgrade_saved_model` says.
    """
    upgraded = copy.deepcopy(data)
    for old, new in RENAMED_KEYS.items():
        _move(upgraded, old, new)
    train = upgraded.get("train")
    if isinstance(train, dict) and isinstance(train.get("bf16"), bool):
        train.setdefault("precision", _BF16_PRECISION[train.pop("bf16")])
    model = upgraded.get("model")
    if not isinstance(model, dict):
        return upgraded
    explain = model.get("explain")
    weight = explain.get("weight", 0.0) if isinstance(explain, dict) else None
    if isinstance(weight, (int, float)) and not isinstance(weight, bool):
        model["explain"] = weight > 0  # anything else stays, for the type check to name
        if weight > 0:
            upgraded.setdefault("train", {}).setdefault("explain_weight", weight)
    llm = model.get("llm")
    if isinstance(llm, dict):
        llm.pop("dtype", None)
        if llm.get("source") == "none":
            model["reader"], llm["source"] = "none", "tiny"
    return upgraded


def upgrade_saved_model(model: dict[str, Any]) -> dict[str, Any]:
    """A saved ``model`` section (plain data) in today's keys: what the weights are.

    ``llm.dtype`` is dropped. ``llm.source: none`` (the model without an LLM, whose token width
    was ``llm.tiny.hidden_size``) becomes ``reader: none`` with ``llm.source: tiny``: the same
    model. Training weights and curricula are dropped (:func:`upgrade_saved` moves them to
    ``train``), decoding settings too (:func:`saved_generation` reads them), and
    ``explain: {weight: w}`` becomes ``explain: w > 0``.
    """
    return upgrade_saved({"model": model})["model"]


def saved_generation(model: dict[str, Any]) -> dict[str, Any]:
    """The decoding settings a saved ``model`` section of an earlier version held.

    Returns:
        The ``generation`` section they make (plain data; empty for today's keys).
    """
    return upgrade_saved({"model": model}).get("generation", {})
