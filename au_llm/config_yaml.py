"""Config text as data: YAML files and ``key=value`` overrides, read the same way.

Both are read with OmegaConf's YAML rules except one: only ``true`` and ``false`` are booleans
(YAML 1.2). Under YAML 1.1 ``on``, ``off``, ``yes``, ``no``, ``y`` and ``n`` are booleans too, so
``chat_template: off`` reached a text setting as the string ``'False'``; a boolean setting still
takes them (OmegaConf converts the text). A file must hold a mapping of sections and no anchors,
aliases or tags beyond the standard ones; an override must be ``key=value`` without control
characters (an escape sequence pasted into a shell is named, not shown).
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf._utils import get_yaml_loader
from omegaconf.errors import OmegaConfBaseException

from au_llm.config_checks import ConfigError
from au_llm.config_keys import check_retired

_BOOL_TAG = "tag:yaml.org,2002:bool"


class _Loader(get_yaml_loader()):  # type: ignore[misc]
    """OmegaConf's YAML loader (duplicate keys refused, ``1e-4`` a float) with YAML 1.2 booleans."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile("^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _load(text: str) -> Any:
    """Plain values of YAML ``text`` (``_Loader`` is a SafeLoader: no Python objects)."""
    return yaml.load(text, Loader=_Loader)


def read_yaml(path: Path) -> DictConfig:
    """Read a config file: a mapping of sections, plain YAML without anchors or aliases.

    Aliases are refused (an alias bomb expands a few lines into gigabytes), and so is any
    ``!!python/...`` tag (the loader constructs plain values only). An empty file is an empty
    mapping.

    Raises:
        ConfigError: The file is not UTF-8, not valid YAML, uses an anchor or alias, or does not
            hold a mapping.
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
        data = _load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            "expected a mapping of sections (data:, model:, train:, ...), not a "
            f"{type(data).__name__}"
        )
    return OmegaConf.create(data)


def _control_character(text: str) -> str | None:
    """The first control character of ``text`` as ``U+XXXX``, or None."""
    for char in text:
        if unicodedata.category(char) == "Cc":
            return f"U+{ord(char):04X}"
    return None


def parse_overrides(overrides: list[str]) -> DictConfig:
    """``key=value`` overrides as one config; each value is read as YAML (``seeds=[1,2]``).

    Raises:
        ConfigError: An override without ``=``, with a control character (escape, tab, newline:
            write such text in a YAML file), or whose value is not valid YAML; the message
            shows the override with its control characters escaped.
    """
    conf = OmegaConf.create()
    for item in overrides:
        key, found, value = item.partition("=")
        if not found:
            raise ConfigError(f"override {item!r}: expected key=value")
        control = _control_character(item)
        if control is not None:
            raise ConfigError(
                f"override {item!r} holds the control character {control}; retype it, or "
                "write the value in the YAML file"
            )
        try:
            parsed = _load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"override {item!r}: the value is not valid YAML: {' '.join(str(exc).split())}"
            ) from None
        OmegaConf.update(conf, key, parsed)
    return conf


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


def merge_overrides(merged: Any, overrides: list[str]) -> Any:
    """``merged`` (an OmegaConf config) with dotted ``key=value`` overrides applied.

    Raises:
        ConfigError: A malformed override, a retired key or one OmegaConf refuses, named as given
            on the command line.
    """
    source = "command line"
    with blame_errors(source):
        dotlist = parse_overrides(list(overrides))
    check_retired(OmegaConf.to_container(dotlist), source)
    with blame_errors(source):
        return OmegaConf.merge(merged, dotlist)
