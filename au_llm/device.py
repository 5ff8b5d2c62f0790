"""Where a model computes: the device, its determinism, the precision there, threads and seeds.

The recipes call these with the ``train`` section's settings (``train.device``,
``train.deterministic``, ``train.precision``, ``train.num_threads``); a model folder applies the
settings it was trained with (:mod:`au_llm.deployed`).
"""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

from au_llm.model.precision import bf16_native, resolve_precision

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) random generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """Map ``auto``/``cpu``/``cuda`` to a torch device (``auto`` picks CUDA when available).

    The choice of ``auto`` is logged (with the GPU's name), so a run that falls back to the CPU
    says so.
    """
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        where = torch.cuda.get_device_name(0) if device.type == "cuda" else "no CUDA device seen"
        log.info("train.device = auto: using %s (%s)", device, where)
        return device
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device = 'cuda' but no CUDA device is available")
    return torch.device(name)


# cuBLAS needs a fixed workspace for deterministic results (set before its first use).
CUBLAS_WORKSPACE = ":4096:8"


def set_determinism(device: torch.device, *, deterministic: bool) -> None:
    """Deterministic CUDA kernels when ``deterministic`` (``train.deterministic``).

    On CUDA: ``torch.use_deterministic_algorithms`` (a warning, not an error, for an operation
    without a deterministic kernel), cuDNN deterministic without benchmarking, and
    ``CUBLAS_WORKSPACE_CONFIG`` unless already set. CPU kernels are deterministic for a fixed
    thread count either way, so nothing changes there.
    """
    if device.type != "cuda":
        return
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def select_device(*, device: str, deterministic: bool, precision: str) -> tuple[torch.device, str]:
    """The device ``device`` with ``deterministic`` applied, and ``precision`` resolved there.

    Args:
        device: ``auto``, ``cpu`` or ``cuda`` (``train.device``).
        deterministic: Deterministic CUDA kernels (``train.deterministic``).
        precision: ``auto``, ``fp32`` or ``bf16`` (``train.precision``).

    Returns:
        ``(device, precision)`` with the precision resolved (``fp32`` or ``bf16``); both are
        logged.
    """
    chosen = resolve_device(device)
    set_determinism(chosen, deterministic=deterministic)
    resolved = resolve_precision(precision, chosen)
    log.info(
        "precision: %s (train.precision = %s; bfloat16 native on %s: %s)",
        resolved,
        precision,
        chosen,
        bf16_native(chosen),
    )
    return chosen, resolved


def set_num_threads(num_threads: int) -> int:
    """Apply ``train.num_threads`` to torch (0 keeps torch's default); returns the count in use."""
    if num_threads:
        torch.set_num_threads(num_threads)
    return torch.get_num_threads()
