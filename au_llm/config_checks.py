"""Shared pieces of the typed configuration: the error type, value checks and fixed vocabularies.

A choice is spelled once. Where a module of the library owns a table of the choices (protocols in
:mod:`au_llm.protocols`, backbones in :mod:`au_llm.model.backbones`, answer formats in
:mod:`au_llm.answers`), the config checks read that table. The choices below have no table of
their own: they are named here once, as ``Literal`` types (or tuples, where one set builds on
another, as the readers do), which the config checks and the command line's ``choices=`` read.
The model's own choice sets (LLM sources, tunings, readouts) are tuples in
:mod:`au_llm.config_model`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from typing import Any, Literal, get_args, get_origin, get_type_hints

from au_llm.data.au_sets import DATASET_AU_SETS

DEFAULT_PROMPT = "Analyse the following fused facial video features for action unit classification."

# AU sets of the MEB benchmark (``dataset_aus``), used by AU-LLM (see au_llm.data.au_sets).
DATASET_AUS: dict[str, list[int]] = {name: list(aus) for name, aus in DATASET_AU_SETS.items()}

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
TinyArch = Literal["qwen2", "llama"]
"""``model.llm.tiny.arch``: the architecture of the tiny random LLM (see au_llm.model.llm)."""
Activation = Literal["gelu", "relu"]
"""``model.projector.activation`` (see au_llm.model.projector)."""
Head = Literal["linear", "text", "both"]
"""``model.head``: the linear AU head, answers in words, or both."""
ClipInput = Literal["frames", "flow", "both"]
"""``preprocess.input``: what the backbone sees (see au_llm.preprocess.flow)."""
Color = Literal["gray", "rgb"]
"""``preprocess.color``: the channels of the aligned frames."""
Optimizer = Literal["adamw", "adam"]
"""``train.optimizer`` (see au_llm.training)."""
Scheduler = Literal["constant", "cosine", "linear"]
"""``train.scheduler``: the learning-rate schedule (see au_llm.training)."""
Loss = Literal["asl", "bce", "focal"]
"""``train.loss`` (see au_llm.losses)."""
LossReduction = Literal["mean", "sum"]
"""``train.loss_reduction`` (see au_llm.losses)."""
Device = Literal["auto", "cpu", "cuda"]
"""``train.device``."""
ThresholdPolicy = Literal["fixed", "train", "val", "test-oracle"]
"""``eval.threshold_policy``: how per-AU decision thresholds are chosen (see au_llm.fitting)."""
DeployedThresholdPolicy = Literal["fixed", "train", "val"]
"""The threshold policies a model folder can hold (a deployed model has no test labels)."""

# What reads the visual token(s) (``model.reader``, see au_llm.model.readers): the configured LLM
# and its controls.
LLM_READERS = ("llm", "llm_reinit", "llm_random_prompt")
"""Readers that run the configured LLM's decoder (with its prompt, LoRA and text heads)."""
PROMPT_READERS = (*LLM_READERS, "attention", "transformer")
"""Readers that read the prompt's token embeddings beside the visual token(s)."""
READERS = (*PROMPT_READERS, "none", "mlp", "resmlp")
"""Every value of ``model.reader``."""


def choices(literal: Any) -> tuple[str, ...]:
    """The values of a ``Literal`` type, in order."""
    return get_args(literal)


PRECISIONS = choices(Precision)


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key and the file."""


def check_choice(section: str, key: str, value: str, allowed: Collection[str] | Any) -> None:
    """Raise :class:`ConfigError` naming ``section.key`` unless ``value`` is allowed.

    Args:
        section: The config section.
        key: The key in it.
        value: The value given.
        allowed: The allowed values: a ``Literal`` type, or a table keyed by them (a dict, in
            its order) or a tuple of them.
    """
    names = choices(allowed) if get_origin(allowed) is Literal else tuple(allowed)
    if value not in names:
        raise ConfigError(f"{section}.{key} = {value!r}: expected one of {', '.join(names)}")


def check_positive(section: str, key: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise :class:`ConfigError` naming ``section.key`` unless ``value > 0`` (or ``>= 0``)."""
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{section}.{key} = {value!r}: expected a value {bound}")


def _check_value(value: Any, hint: Any, key: str) -> None:
    """Raise unless ``value`` fits the type ``hint`` (numbers finite, items of their type).

    OmegaConf checks scalars but leaves ``seeds=[[1]]`` a nested list and takes NaN as a float.
    """
    if dataclasses.is_dataclass(value):
        check_values(value, key)
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} = {value}: expected a finite number")
    origin, args = get_origin(hint), get_args(hint)
    if origin is list and isinstance(value, list):
        for index, item in enumerate(value):
            _check_value(item, args[0], f"{key}[{index}]")
    elif origin is dict and isinstance(value, dict):
        for name, item in value.items():
            _check_value(item, args[1], f"{key}.{name}")
    elif hint in (int, float, str) and not isinstance(value, hint):
        raise ConfigError(f"{key} = {value!r}: expected a value of type {hint.__name__}")


def check_values(config: Any, key: str = "") -> None:
    """Raise :class:`ConfigError` naming the first value of a config that does not fit.

    Numbers must be finite (``nan`` or ``inf`` as a learning rate trains nothing, silently), and
    the items of list and dict settings must have the type the field declares.

    Args:
        config: A config dataclass.
        key: Its dotted key (empty at the top).
    """
    hints = get_type_hints(type(config))
    for field in dataclasses.fields(config):
        name = f"{key}.{field.name}" if key else field.name
        _check_value(getattr(config, field.name), hints[field.name], name)
