"""Config keys of earlier versions: refused in a config a user gives, read in one au-llm saved.

A renamed key (:data:`RENAMED_KEYS`) or a retired one (:data:`RETIRED_KEYS`) set in a YAML file or
on the command line is an error naming the key that replaced it (:func:`check_retired`). Configs
au-llm wrote itself (a run folder's ``config.yaml``, a model folder's ``config.json``) are read
with each old key moved to its new name, and a retired key turned into the setting that replaced
it (:func:`upgrade_saved`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from au_llm.config_checks import ConfigError

# Keys that were replaced: a config that still sets one gets an error naming the new key.
RETIRED_KEYS = {
    "train.bf16": "train.precision (auto, fp32 or bf16)",
    "model.llm.dtype": "train.precision (auto, fp32 or bf16)",
}
# Keys that were renamed (section.old -> section.new). A config a user gives that sets the old
# name gets an error naming the new one; configs au-llm saved itself (run and model folders) are
# read with the old name moved to the new one (:func:`upgrade_saved`).
RENAMED_KEYS = {
    "preprocess.mode": "preprocess.align",
    "eval.threshold": "eval.threshold_policy",
    "sampling.train": "sampling.train_strategy",
    "sampling.test": "sampling.test_strategy",
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

    Each key of :data:`RENAMED_KEYS` is moved to its new name; ``train.bf16`` becomes
    ``train.precision`` (true: ``auto``, false: ``fp32``) unless the precision is also given;
    the ``model`` section as :func:`upgrade_saved_model` says.
    """
    upgraded = {name: dict(part) if isinstance(part, dict) else part for name, part in data.items()}
    for old, new in RENAMED_KEYS.items():
        section, old_key = old.split(".")
        part, new_key = upgraded.get(section), new.split(".")[1]
        if isinstance(part, dict) and old_key in part:
            part.setdefault(new_key, part.pop(old_key))
    train = upgraded.get("train")
    if isinstance(train, dict) and isinstance(train.get("bf16"), bool):
        train.setdefault("precision", _BF16_PRECISION[train.pop("bf16")])
    if isinstance(upgraded.get("model"), dict):
        upgraded["model"] = upgrade_saved_model(upgraded["model"])
    return upgraded


def upgrade_saved_model(model: dict[str, Any]) -> dict[str, Any]:
    """A saved ``model`` section (plain data) in today's keys.

    ``llm.dtype`` is dropped. ``llm.source: none`` (the model without an LLM, whose token width
    was ``llm.tiny.hidden_size``) becomes ``reader: none`` with ``llm.source: tiny``: the same
    model.
    """
    llm = model.get("llm")
    if not isinstance(llm, dict):
        return model
    llm = {key: value for key, value in llm.items() if key != "dtype"}
    if llm.get("source") == "none":
        return {**model, "reader": "none", "llm": {**llm, "source": "tiny"}}
    return {**model, "llm": llm}
