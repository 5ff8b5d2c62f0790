"""Every kernel under every precision: native detection, FrameConv2d, LED, logits, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from au_llm.device import set_determinism
from au_llm.inference import clip_outputs, inference_prompt_cache
from au_llm.losses import build_loss
from au_llm.model import precision as P
from au_llm.model.backbones import FrameConv2d, LearnableEulerianDynamics
from au_llm.model.checkpoint import build_model, load_checkpoint, save_checkpoint
from au_llm.training import batch_loss, make_optimizer
from tests.model import clips, one_torch_thread, tiny_model_config, tiny_spec
from tests.tolerance import assert_near

CPU = torch.device("cpu")
X86 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {extra}\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd {extra}\n"


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


@pytest.mark.parametrize(
    ("cpuinfo", "isa", "native"),
    [
        (X86.format(extra="avx512_bf16"), None, True),
        (X86.format(extra="amx_bf16 amx_tile"), None, True),
        (X86.format(extra="avx512_vnni"), None, False),  # AVX512 alone: oneDNN's flag says yes
        (X86.format(extra=""), None, False),
        (X86.format(extra="avx512_bf16"), "AVX2", False),  # ONEDNN_MAX_CPU_ISA below bf16
        (X86.format(extra="avx512_bf16"), "avx512_core", False),
        (X86.format(extra="avx512_bf16"), "AVX512_CORE_BF16", True),
        (ARM.format(extra="bf16 i8mm"), None, True),
        (ARM.format(extra="sve"), None, False),
    ],
)
def test_cpu_bf16_native_reads_the_cpu_flags(cpuinfo: str, isa: str | None, native: bool) -> None:
    assert P.cpu_bf16_native(cpuinfo, isa) is native


def test_cuda_bf16_native_checks_the_device_asked_for(monkeypatch) -> None:
    capability = {0: (7, 5), 1: (8, 0)}  # a T4 (bf16 emulated) and an A100
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i: capability[i])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert P.bf16_native(torch.device("cuda", 1))
    assert not P.bf16_native(torch.device("cuda", 0))
    assert not P.bf16_native(torch.device("cuda"))  # the current device: 0
    assert P.resolve_precision("auto", torch.device("cuda", 1)) == "bf16"
    assert P.resolve_precision("auto", torch.device("cuda", 0)) == "fp32"
    assert P.resolve_precision("bf16", torch.device("cuda", 0)) == "bf16"


def test_frame_conv_forward_backward_under_bf16_autocast_matches_fp32(device) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 20, 20, generator=generator)
    weight = torch.randn(4, 1, 5, 5, generator=generator) * 0.2
    bias = torch.randn(4, generator=generator) * 0.1
    results = {}
    for precision in ("fp32", "bf16", "exact"):
        dtype = torch.float64 if precision == "exact" else torch.float32
        leaves = [t.to(device, dtype, copy=True).requires_grad_() for t in (x, weight, bias)]
        with P.autocast(device, "bf16" if precision == "bf16" else "fp32"):
            out = FrameConv2d.apply(*leaves)
            loss = (out.to(dtype) ** 2).mean()
        loss.backward()
        assert out.dtype == (torch.bfloat16 if precision == "bf16" else dtype)
        assert all(t.grad.dtype == dtype for t in leaves)
        results[precision] = (out.detach(), *(t.grad for t in leaves))
    names = ("out", "x", "weight", "bias")
    # float32: the longest sums (kernel; 4 filters x kernel; 6 frames of 16x16 positions);
    # bfloat16 accumulates in float32: its error is the rounding of operands and results to
    # bfloat16, four of them in a row on the gradients' path
    sums = (25, 4 * 25, 6 * 16 * 16, 6 * 16 * 16)
    for name, terms, fp32, bf16, exact in zip(names, sums, *results.values(), strict=True):
        assert_near(fp32, exact, terms=terms, name=f"fp32 {name}")
        assert_near(bf16, exact, terms=4, dtype=torch.bfloat16, name=f"bf16 {name}")


def test_led_filter_stays_fp32_under_autocast(device) -> None:
    led = LearnableEulerianDynamics().to(device)
    generator = torch.Generator().manual_seed(0)
    static = torch.rand(2, 1, 1, 16, 16, generator=generator).expand(2, 1, 8, 16, 16)
    with P.autocast(device, "bf16"):
        out = led(static.contiguous().to(device))
    assert out.dtype == torch.float32
    # a static clip has no motion: the float32 filter leaves rounding, bfloat16 coefficients 5e-4
    assert_near(out.detach().cpu(), torch.zeros(out.shape, dtype=torch.float64), terms=8, scale=1.0)


def test_fp32_linear_gives_fp32_logits_under_autocast(device) -> None:
    layer = torch.nn.Linear(16, 50).to(device, torch.bfloat16)  # a frozen bf16 LM head
    hidden = torch.randn(3, 16, device=device)
    with P.autocast(device, "bf16"):
        logits = P.fp32_linear(layer, hidden)
    assert logits.dtype == torch.float32
    exact = hidden.double() @ layer.weight.double().T + layer.bias.double()
    assert_near(logits, exact, terms=16)


def _train_steps(model, processor, device, steps: int = 2) -> list[float]:
    """A few AdamW steps of ``batch_loss`` under the model's autocast; the losses."""
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], device=device)
    loss_fn = build_loss(labels.cpu()).to(device)
    params = list(model.trainable_parameters())
    optimizer = make_optimizer(params, name="adamw", lr=1e-3, weight_decay=0.01)
    losses = []
    for step in range(steps):
        optimizer.zero_grad()
        with P.autocast(device, model.precision):
            x = clips(2, seed=step).to(device)
            loss = batch_loss(model, processor, x, labels, loss_fn, step)
        loss.backward()
        optimizer.step()
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        losses.append(float(loss.detach()))
    return losses


def test_model_trains_and_generates_in_each_precision(precision: str, device) -> None:
    cfg = tiny_model_config()
    cfg.head = "both"
    cfg.text.formats = ["list"]
    model, processor = build_model(tiny_spec(cfg, 3), 0, device, precision)
    assert model.precision == precision
    expected_base = torch.bfloat16 if precision == "bf16" else torch.float32
    assert model.llm.get_input_embeddings().weight.dtype == expected_base
    _train_steps(model, processor, device)
    assert all(p.dtype == torch.float32 for p in model.trainable_parameters())
    model.eval()
    cache = inference_prompt_cache(model)
    outputs = clip_outputs(model, processor, clips(2, seed=1), prompt_cache=cache, answers=True)
    assert outputs.probs.shape == (2, 3) and ((outputs.probs >= 0) & (outputs.probs <= 1)).all()
    assert len(outputs.answers["list"]) == 2
    again = clip_outputs(model, processor, clips(2, seed=1), prompt_cache=cache, answers=True)
    assert again.answers == outputs.answers and (again.probs == outputs.probs).all()


def test_checkpoint_records_and_restores_the_precision(tmp_path: Path, precision, device) -> None:
    model, processor = build_model(tiny_spec(tiny_model_config(), 3), 2, device, precision)
    model.eval()
    x = clips(2, seed=3).to(device)
    with torch.no_grad(), P.autocast(device, precision):
        expected = model(x)
    assert expected.dtype == torch.float32
    save_checkpoint(model, processor, {}, tmp_path / "ckpt")
    loaded, _, info = load_checkpoint(tmp_path / "ckpt")
    assert info["precision"] == precision
    loaded.place(device, info["precision"])
    assert loaded.precision == precision
    with torch.no_grad(), P.autocast(device, loaded.precision):
        torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)


def test_training_repeats_exactly_under_determinism(precision: str, device) -> None:
    """Byte-identical reruns on the device (on CUDA through ``train.deterministic``)."""
    set_determinism(device, deterministic=True)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model, processor = build_model(tiny_spec(tiny_model_config(), 3), 0, device, precision)
        losses = _train_steps(model, processor, device, steps=3)
        runs.append((losses, {k: v.cpu() for k, v in model.trainable_state_dict().items()}))
    assert runs[0][0] == runs[1][0]
    for key, value in runs[0][1].items():
        assert torch.equal(value, runs[1][1][key]), key
