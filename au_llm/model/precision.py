"""Numeric precision of training and inference: ``train.precision`` (``auto|fp32|bf16``).

``auto`` is bfloat16 where the device computes it natively and float32 elsewhere; ``bf16`` forces
bfloat16 (emulated, slowly, where it is not native); ``fp32`` is exact and reproducible everywhere.
Under ``bf16`` the frozen LLM base is stored in bfloat16 and the forward runs under bfloat16
autocast; trainable weights, optimiser state, the LED temporal filter, logits, probabilities and
losses stay float32 (see ``docs/precision.md``).

Native means native: a CPU counts only when its flags list AVX512_BF16 or AMX_BF16 (x86) or BF16
(Arm), and oneDNN is not limited below AVX512 (``ONEDNN_MAX_CPU_ISA``); oneDNN's own bfloat16 flag
is also true on AVX512 CPUs without AVX512_BF16, where bfloat16 products are slower than float32.
A CUDA device counts from compute capability 8.0 (Ampere) on, checked for the device asked for;
older GPUs only emulate bfloat16.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from au_llm.config_checks import PRECISIONS

CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
# oneDNN ISA limits below which AVX512_BF16 / AMX instructions are not used.
ONEDNN_ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE")
CUDA_BF16_CAPABILITY = (8, 0)


def cpu_flags(cpuinfo: str) -> set[str]:
    """CPU feature flags in ``/proc/cpuinfo`` text (``flags`` on x86, ``Features`` on Arm)."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return flags


def cpu_bf16_native(cpuinfo: str, onednn_max_isa: str | None) -> bool:
    """Whether a CPU with this ``/proc/cpuinfo`` computes bfloat16 natively.

    Args:
        cpuinfo: Text of ``/proc/cpuinfo``.
        onednn_max_isa: Value of ``ONEDNN_MAX_CPU_ISA`` (None when unset); a limit below the
            bfloat16 instructions makes them unused.
    """
    if onednn_max_isa and onednn_max_isa.strip().upper() in ONEDNN_ISAS_WITHOUT_BF16:
        return False
    return bool(cpu_flags(cpuinfo) & CPU_BF16_FLAGS)


def _read_cpuinfo() -> str:
    path = Path("/proc/cpuinfo")
    return path.read_text(errors="replace") if path.is_file() else ""


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (never counting emulation).

    CUDA: compute capability >= 8.0 of the device asked for (index None: the current one). CPU:
    the CPU flags (:func:`cpu_bf16_native`). Other devices: False.
    """
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_capability(index) >= CUDA_BF16_CAPABILITY
    if device.type == "cpu":
        return cpu_bf16_native(_read_cpuinfo(), os.environ.get("ONEDNN_MAX_CPU_ISA"))
    return False


def check_precision(name: str, value: str) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a precision setting."""
    if value not in PRECISIONS:
        raise ValueError(f"{name} = {value!r}: expected one of {', '.join(PRECISIONS)}")


def resolve_precision(setting: str, device: torch.device) -> str:
    """``fp32`` or ``bf16``: ``setting`` with ``auto`` decided for ``device``."""
    check_precision("precision", setting)
    if setting == "auto":
        return "bf16" if bf16_native(device) else "fp32"
    return setting


def base_dtype(precision: str) -> torch.dtype:
    """Dtype of the frozen LLM base under a resolved precision (``fp32`` or ``bf16``)."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """bfloat16 autocast on ``device`` under ``bf16``; a disabled context under ``fp32``."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def model_autocast(model: torch.nn.Module) -> torch.autocast:
    """:func:`autocast` for ``model``'s precision (``model.precision``) on its device."""
    return autocast(next(model.parameters()).device, model.precision)


def autocast_off(device_type: str) -> torch.autocast:
    """A context with autocast disabled on ``device_type`` (for kernels kept in float32)."""
    return torch.autocast(device_type, enabled=False)


def fp32_linear(layer: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """``layer``'s linear map of ``hidden [..., H]`` computed in float32, autocast or not.

    Logits feed probabilities, losses and greedy choices: computed from bfloat16 values they lose
    ties and change answers, so heads (``nn.Linear``-like: ``weight [O, H]``, optional ``bias``)
    run through this instead of autocast.

    Returns:
        ``[..., O]`` float32 (float64 for a float64 ``hidden``: the tests' exact references).
    """
    bias = getattr(layer, "bias", None)
    dtype = torch.promote_types(hidden.dtype, torch.float32)
    with autocast_off(hidden.device.type):
        return torch.nn.functional.linear(
            hidden.to(dtype), layer.weight.to(dtype), None if bias is None else bias.to(dtype)
        )
