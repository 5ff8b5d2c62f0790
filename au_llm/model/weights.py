"""Reading weight files: a damaged or foreign file is an error naming it, never a raw traceback.

Weights are read without running code: ``.safetensors`` holds tensors only, and any other file is
read with ``torch.load(weights_only=True)`` (tensors and plain containers, no pickled objects).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors

# What a truncated, damaged or foreign weights file raises while it is read.
_DAMAGED = (OSError, EOFError, ValueError, RuntimeError, KeyError, SafetensorError)


def read_state_dict(path: Path) -> Any:
    """Read a ``.safetensors`` file (a dict of tensors) or a ``torch.save`` file (weights only).

    Raises:
        ValueError: The file is unreadable, truncated, damaged or holds pickled objects; the
            message names the file.
    """
    try:
        if path.suffix == ".safetensors":
            return load_safetensors(path.read_bytes())
        return torch.load(path, map_location="cpu", weights_only=True)
    except (*_DAMAGED, pickle.UnpicklingError) as exc:
        raise ValueError(
            f"{path}: not a readable weights file (damaged or truncated?): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc


def nonfinite_tensors(tensors: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """The names of the floating-point tensors holding a NaN or infinite value.

    Args:
        tensors: ``(name, tensor)`` pairs, e.g. ``state.items()`` or ``model.named_parameters()``.
    """
    return [
        name
        for name, tensor in tensors
        if tensor.is_floating_point() and not torch.isfinite(tensor).all()
    ]
