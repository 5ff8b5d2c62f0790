"""Shared pieces of the typed configuration: errors, value checks, vocabularies, safe file reading.

A config file is read as plain YAML (:func:`read_yaml`); errors raised while it is read or merged
name their source (:func:`blame_errors`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from au_llm.data.au_sets import DATASET_AU_SETS

DEFAULT_PROMPT = "Analyse the following fused facial video features for action unit classification."

# AU sets of the MEB benchmark (``dataset_aus``), used by AU-LLM (see au_llm.data.au_sets).
DATASET_AUS: dict[str, list[int]] = {name: list(aus) for name, aus in DATASET_AU_SETS.items()}


# Text-answer formats (see au_llm.answers).
ANSWER_FORMAT_NAMES = ("list", "yesno", "json", "names")

# Temporal sampling strategies (see au_llm.preprocess.sampling).
SAMPLING_STRATEGIES = ("uniform", "onset_apex", "random_end")

# Choices given both in configs and on the command line, each listed once. Config fields stay
# ``str`` (OmegaConf's structured configs do not take Literal types) and are checked with
# :func:`check_choice`; the CLI offers ``choices(...)`` of the same Literal.
AlignMode = Literal["clip", "frame", "none"]
"""``preprocess.align`` and ``au-llm predict --align`` (see au_llm.preprocess.align)."""
LaunchMode = Literal["none", "local", "slurm"]
"""``launch.mode`` and ``--launch``: where the folds of a run are trained."""
FacePolicy = Literal["largest", "all", "center"]
"""``au-llm predict --face``: which faces of a recording are scored (au_llm.preprocess.tracks)."""
Precision = Literal["auto", "fp32", "bf16"]
"""``train.precision`` and ``au-llm predict --precision`` (see au_llm.model.precision)."""
ChatTemplate = Literal["auto", "on", "off"]
"""``model.llm.chat_template``: whether prompts go through the tokenizer's chat template."""


def choices(literal: Any) -> tuple[str, ...]:
    """The values of a ``Literal`` type, in order."""
    return get_args(literal)


PRECISIONS = choices(Precision)


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key and the file."""


def check_choice(section: str, key: str, value: str, allowed: tuple[str, ...] | Any) -> None:
    """Raise :class:`ConfigError` naming ``section.key`` unless ``value`` is allowed.

    Args:
        section: The config section.
        key: The key in it.
        value: The value given.
        allowed: The allowed values, or a ``Literal`` type of them.
    """
    names = allowed if isinstance(allowed, tuple) else choices(allowed)
    if value not in names:
        raise ConfigError(f"{section}.{key} = {value!r}: expected one of {', '.join(names)}")


def check_positive(section: str, key: str, value: float, allow_zero: bool = False) -> None:
    """Raise :class:`ConfigError` naming ``section.key`` unless ``value > 0`` (or ``>= 0``)."""
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{section}.{key} = {value!r}: expected a value {bound}")


@contextlib.contextmanager
def blame_errors(source: str) -> Iterator[None]:
    """Turn any configuration error raised inside into a :class:`ConfigError` naming ``source``."""
    try:
        yield
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        msg = str(exc).splitlines()[0]
        raise ConfigError(f"{source}: key {key!r}: {msg}") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read config file: {exc}") from None


def read_yaml(path: Path) -> Any:
    """Read a config file as plain YAML: no tags beyond the standard ones, no anchors or aliases.

    Aliases are refused (an alias bomb expands a few lines into gigabytes), and so is any
    ``!!python/...`` tag (the safe loader constructs plain values only).

    Raises:
        ConfigError: The file is unreadable, not UTF-8, not valid YAML, or uses an anchor or alias.
        OSError: The file cannot be read.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not a UTF-8 text file: {exc}") from None
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise ConfigError(
                    f"line {event.start_mark.line + 1}: YAML anchors and aliases (& and *) are "
                    "not accepted in a config; write the values out"
                )
        return OmegaConf.create(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {' '.join(str(exc).split())}") from None
