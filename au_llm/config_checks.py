"""Shared pieces of the typed configuration: the error type, value checks and fixed vocabularies."""

from __future__ import annotations

from au_llm.data.au_sets import DATASET_AU_SETS

DEFAULT_PROMPT = "Analyse the following fused facial video features for action unit classification."

# AU sets of the MEB benchmark (``dataset_aus``), used by AU-LLM (see au_llm.data.au_sets).
DATASET_AUS: dict[str, list[int]] = {name: list(aus) for name, aus in DATASET_AU_SETS.items()}


# Text-answer formats (see au_llm.answers).
ANSWER_FORMAT_NAMES = ("list", "yesno", "json", "names")

# Temporal sampling strategies (see au_llm.preprocess.sampling).
SAMPLING_STRATEGIES = ("uniform", "onset_apex", "random_end")


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key and the file."""


def check_choice(section: str, key: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` naming ``section.key`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{section}.{key} = {value!r}: expected one of {', '.join(choices)}")


def check_positive(section: str, key: str, value: float, allow_zero: bool = False) -> None:
    """Raise :class:`ConfigError` naming ``section.key`` unless ``value > 0`` (or ``>= 0``)."""
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{section}.{key} = {value!r}: expected a value {bound}")
