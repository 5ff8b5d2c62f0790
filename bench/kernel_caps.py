"""Which float kernels each instruction-set variable changes on this CPU, measured bitwise.

The model's kernels (3-D and 2-D convolutions with their gradients, matrix products, softmax,
layer norm, attention, elementwise functions, bfloat16 products under autocast) run on fixed
inputs in a fresh process per setting (drawn by numpy, and the gradients fed back fixed too, so
that no input passes through a kernel the setting may change: torch's own ``randn`` is such a
kernel); the SHA-256 of each result is compared with the
process without any variable. A kernel whose bytes change under a setting runs other code
there: that is how ``make test-kernels`` (``KERNEL_CAPS`` in the Makefile) was chosen, so that
its runs exercise other kernels than ``make test`` does (docs/precision.md).

Run: ``.venv/bin/python bench/kernel_caps.py``; writes ``bench/results/kernel_caps.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "kernel_caps.json"
SETTINGS = (
    "ATEN_CPU_CAPABILITY=default",
    "ATEN_CPU_CAPABILITY=avx2",
    "ONEDNN_MAX_CPU_ISA=AVX",
    "ONEDNN_MAX_CPU_ISA=SSE41",
    "MKL_ENABLE_INSTRUCTIONS=SSE4_2",
    "MKL_CBWR=COMPATIBLE",
    "ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_CBWR=COMPATIBLE",
)
"""Each setting as ``NAME=value`` pairs separated by spaces."""


def kernel_hashes() -> dict[str, str]:
    """SHA-256 (first 16 hex digits) of each kernel's result on fixed inputs, 1 thread."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    generator = np.random.default_rng(0)

    def digest(tensor: torch.Tensor) -> str:
        data = tensor.detach().float().contiguous().numpy().tobytes()
        return hashlib.sha256(data).hexdigest()[:16]

    def randn(*shape: int) -> torch.Tensor:
        return torch.from_numpy(generator.standard_normal(shape, dtype=np.float32))

    out = {}
    x = randn(3, 1, 4, 64, 64).requires_grad_()
    weight = randn(32, 1, 1, 5, 5).requires_grad_()
    y = F.conv3d(x, weight)
    y.backward(randn(*y.shape))
    out |= {"conv3d": digest(y), "conv3d weight grad": digest(weight.grad)}
    out["conv3d input grad"] = digest(x.grad)
    frames = randn(12, 1, 64, 64).requires_grad_()
    weight2 = randn(32, 1, 5, 5).requires_grad_()
    y = F.conv2d(frames, weight2)
    y.backward(randn(*y.shape))
    out |= {"conv2d": digest(y), "conv2d weight grad": digest(weight2.grad)}
    a, b = randn(37, 896), randn(896, 600)
    out["matmul 37x896x600"] = digest(a @ b)
    out["matmul 1024x896x600"] = digest(randn(1024, 896) @ b)
    values = randn(1000, 77)
    out |= {"softmax": digest(values.softmax(-1)), "exp": digest(values.exp())}
    out |= {"sum": digest(values.sum(-1)), "layer_norm": digest(F.layer_norm(values, (77,)))}
    out |= {"silu": digest(F.silu(values)), "rsqrt": digest(values.abs().rsqrt())}
    q, k, v = randn(2, 4, 9, 8), randn(2, 4, 9, 8), randn(2, 4, 9, 8)
    out["attention"] = digest(F.scaled_dot_product_attention(q, k, v, is_causal=True))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out["bf16 matmul"] = digest(a @ b)
        out["bf16 conv2d"] = digest(F.conv2d(frames.detach(), weight2.detach()))
    return out


def _in_child(setting: str) -> tuple[str, dict[str, str]]:
    """ATen's CPU capability and :func:`kernel_hashes` in a fresh process under ``setting``."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",)}
    env.update(pair.split("=", 1) for pair in setting.split())
    env["OMP_NUM_THREADS"] = "1"
    code = (
        "import json, torch, kernel_caps; hashes = kernel_caps.kernel_hashes(); "
        "print(json.dumps([torch.backends.cpu.get_cpu_capability(), hashes]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        check=True,
    )
    capability, hashes = json.loads(result.stdout.strip().splitlines()[-1])
    return capability, hashes


def main() -> None:
    from record import cpu_flags

    from au_llm.io_utils import atomic_write_text

    capability, native = _in_child("")
    settings = {}
    for setting in SETTINGS:
        capped, hashes = _in_child(setting)
        changed = [op for op, value in hashes.items() if value != native[op]]
        settings[setting] = {
            "aten_capability": capped,
            "changed": changed,
            "n_changed": len(changed),
            "hashes": hashes,
        }
        print(f"{setting}: {len(changed)} changed: {', '.join(changed) or '-'}")
    import torch

    results = {
        "command": "python bench/kernel_caps.py",
        "platform": platform.platform(),
        "cpu_flags": cpu_flags(),
        "torch": torch.__version__,
        "aten_capability": capability,
        "kernels": sorted(native),
        "native": native,
        "settings": settings,
    }
    atomic_write_text(OUT, json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
