"""Where bfloat16 arithmetic is native: the frozen LLM base and autocast use it only there.

On a CPU without native bfloat16 dot products (AVX2-only x86, for example) oneDNN emulates
bfloat16 matrix products, which were measured 7-8x slower than float32 on such a machine; there
float32 is both faster and exact.
"""

from __future__ import annotations

import torch


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 matrix products natively.

    CUDA: ``torch.cuda.is_bf16_supported()``. CPU: oneDNN's bfloat16 support (AVX512-BF16/AMX
    class x86 CPUs, or Arm CPUs with BF16 instructions). Other devices: False.
    """
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False
