from __future__ import annotations

import copy
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from au_llm.config import BackboneConfig
from au_llm.model.backbones import (
    BACKBONES,
    LED3DCNN,
    FrameConv2d,
    LearnableEulerianDynamics,
    build_backbone,
)
from tests.model import clips, one_torch_thread
from tests.tolerance import assert_as_accurate, assert_near


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def _iir(signal: torch.Tensor, r: float) -> torch.Tensor:
    """Reference first-order low-pass over dim 0: y0 = x0, y_t = (1 - r) y_{t-1} + r x_t."""
    out = [signal[0]]
    for t in range(1, signal.shape[0]):
        out.append((1 - r) * out[-1] + r * signal[t])
    return torch.stack(out)


@pytest.mark.parametrize("add_input", [False, True])
def test_led_equals_recursive_filters_with_normalisation(add_input: bool) -> None:
    led = LearnableEulerianDynamics(add_input=add_input).double()
    x = torch.rand(2, 1, 6, 4, 4, dtype=torch.float64)
    frames = x.permute(2, 0, 1, 3, 4)  # time first
    band = 10.0 * (_iir(frames, 0.4) - _iir(frames, 0.05))
    if add_input:
        band = band + frames
    # the normaliser: the same filters with |weights| applied to |x|
    weights = led.matrix(6).abs()
    norm = torch.einsum("ti,ibchw->tbchw", weights, frames.abs())
    expected = (band / (norm + 1e-8)).permute(1, 2, 0, 3, 4)[:, :, 1:]
    out = led(x)
    assert out.shape == (2, 1, 5, 4, 4)
    torch.testing.assert_close(out, expected)
    assert out.abs().max() <= 1.0


def test_led_parameters_learn_and_reset() -> None:
    led = LearnableEulerianDynamics(add_input=True)
    led(torch.rand(1, 1, 5, 3, 3)).sum().backward()
    assert led.log_r1.grad is not None and led.log_r1.grad.abs() > 0
    with torch.no_grad():
        led.log_r1.add_(1.0)
    led.reset_parameters()
    assert torch.isclose(led.log_r1.exp(), torch.tensor(0.4))


@pytest.mark.parametrize("frames", [3, 4, 6, 8])
@pytest.mark.parametrize("size", [48, 64, 112])
def test_led3dcnn_shapes(frames: int, size: int) -> None:
    backbone = build_backbone(BackboneConfig(high_dim=16), 1, frames, size)
    feats = backbone.get_clip_features(clips(2, frames, size))
    assert feats["mid"].shape == (2, backbone.mid_dim)
    assert feats["high"].shape == (2, 16)
    if (frames, size) == (6, 64):
        assert backbone.mid_dim == 64 * 2 * 9 * 9  # the paper's 10368


def test_led3dcnn_rgb_and_mid_pool() -> None:
    cfg = BackboneConfig(high_dim=16, mid_pool=[1, 3, 3])
    backbone = build_backbone(cfg, 3, 6, 64)
    feats = backbone.get_clip_features(clips(2, channels=3))
    assert backbone.mid_dim == 64 * 9
    assert feats["mid"].shape == (2, 64 * 9)
    assert backbone.fc_high.in_features == 10368  # high reads the full map


def test_led3dcnn_rejects_two_frames() -> None:
    with pytest.raises(ValueError, match="at least 3 frames"):
        build_backbone(BackboneConfig(), 1, 2, 64)


TINY_WIDTHS = {
    "x3d": {"width_factor": 0.5, "depth_factor": 0.5},
    "r2plus1d": {"stem_dim_out": 8},
    "slow": {"stem_dim_out": 8},
    "csn": {"stem_dim_out": 8},
}


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_backbone_trains(name: str) -> None:
    torch.manual_seed(0)
    cfg = BackboneConfig(name=name, high_dim=16, builder_kwargs=TINY_WIDTHS.get(name, {}))
    channels, frames, size = (1, 6, 64) if name == "led3dcnn" else (3, 8, 64)
    backbone = build_backbone(cfg, channels, frames, size)
    head = torch.nn.Linear(backbone.mid_dim + backbone.high_dim, 2)
    params = [*backbone.parameters(), *head.parameters()]
    before = {n: p.detach().clone() for n, p in backbone.named_parameters()}
    optimizer = torch.optim.SGD(params, lr=0.1)
    feats = backbone.get_clip_features(clips(2, frames, size, channels))
    logits = head(torch.cat([feats["mid"], feats["high"]], dim=1))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    changed = {n for n, p in backbone.named_parameters() if not torch.equal(p, before[n])}
    # the first and the last layers learn (the stem / LED convolution, the stage-4 / fc layer)
    first, last = ("conv1.", "fc_high.") if name == "led3dcnn" else ("blocks.0.", "blocks.4.")
    assert any(n.startswith(first) for n in changed), sorted(changed)
    assert any(n.startswith(last) for n in changed), sorted(changed)


def test_backbone_reset_restores_initial_weights() -> None:
    cfg = BackboneConfig(name="x3d", builder_kwargs=TINY_WIDTHS["x3d"])
    torch.manual_seed(3)
    backbone = build_backbone(cfg, 3, 4, 32)
    torch.manual_seed(3)
    backbone.reset_parameters()
    first = {k: v.clone() for k, v in backbone.state_dict().items()}
    backbone.get_clip_features(clips(2, 4, 32, 3))  # updates BatchNorm statistics
    torch.manual_seed(3)
    backbone.reset_parameters()
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(value, first[key], msg=key)


def test_pretrained_path_loads_strictly(tmp_path) -> None:
    cfg = BackboneConfig(name="slow", builder_kwargs=TINY_WIDTHS["slow"])
    source = build_backbone(cfg, 3, 4, 32)
    path = tmp_path / "slow.pt"
    # a pytorchvideo-style file: wrapped, with head keys that the backbone drops
    state = dict(source.state_dict())
    state["blocks.5.proj.weight"] = torch.zeros(3, 3)
    torch.save({"model_state": state}, path)
    cfg.pretrained_path = str(path)
    loaded = build_backbone(cfg, 3, 4, 32).eval()
    x = clips(1, 4, 32, 3)
    torch.testing.assert_close(
        loaded.get_clip_features(x)["high"], source.eval().get_clip_features(x)["high"]
    )
    torch.save({"blocks.0.conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="slow.pt.*missing keys"):
        build_backbone(cfg, 3, 4, 32)


def test_pytorchvideo_shim_leaves_no_fake_torchvision() -> None:
    code = textwrap.dedent(
        """
        import sys
        from au_llm.model.pytorchvideo_compat import _STUB_MARK, import_pytorchvideo_models

        def fake_torchvision_loaded():
            return any(
                getattr(module, _STUB_MARK, False)
                for name, module in list(sys.modules.items())
                if name == "torchvision" or name.startswith("torchvision.")
            )

        builders = import_pytorchvideo_models()
        assert set(builders) == {"x3d", "r2plus1d", "resnet", "csn"}, builders
        assert callable(builders["x3d"].create_x3d)
        assert not fake_torchvision_loaded()
        import transformers
        from transformers import AutoModelForCausalLM
        assert not fake_torchvision_loaded()
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def _conv1_pool1_and_grads(
    net: LED3DCNN, x: torch.Tensor, *, per_frame: bool
) -> list[torch.Tensor]:
    """``pool1(relu(conv1(x)))`` per frame in 2-D or in the 3-D form, and its gradients."""
    x = x.clone().requires_grad_()
    wrt = (x, net.conv1.weight, net.conv1.bias)
    out = net._conv1_pool1(x) if per_frame else net.pool1(F.relu(net.conv1(x)))
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    return [out.detach(), *torch.autograd.grad((out * upstream).sum(), wrt)]


@pytest.mark.parametrize(("channels", "size"), [(1, 64), (3, 50)])
def test_led3dcnn_per_frame_2d_form_equals_the_3d_form(channels: int, size: int) -> None:
    """The per-frame form reorders the 3-D form's arithmetic: equal in float64 to rounding.

    In float64 no rounding can move a max-pooling window's choice (the closest two candidates of
    a window differ by 2e-6 here, rounding by 1e-15), so values and gradients agree within the
    float64 rounding budget; float32 rounding is checked without the pooling below.
    """
    torch.manual_seed(0)
    net = LED3DCNN(channels, 5, size, high_dim=16, dropout=0.0).double()
    x = torch.randn(3, channels, 4, size, size, dtype=torch.float64)
    per_frame = _conv1_pool1_and_grads(net, x, per_frame=True)
    three_d = _conv1_pool1_and_grads(net, x, per_frame=False)
    positions = 3 * 4 * (size - 4) ** 2
    terms = {"out": channels * 25, "x": 32 * 25, "weight": positions, "bias": positions}
    assert per_frame[0].shape == three_d[0].shape
    for (name, count), a, b in zip(terms.items(), per_frame, three_d, strict=True):
        assert_near(a, b, terms=count, name=name)


def _frame_conv_and_grads(
    net: LED3DCNN, x: torch.Tensor, upstream: torch.Tensor, *, per_frame: bool
) -> list[torch.Tensor]:
    """``conv1(x)`` as :class:`FrameConv2d` over the frames or as the 3-D convolution, and the
    gradients of ``sum(conv1(x) * upstream)`` with respect to ``x``, the weight and the bias."""
    x = x.clone().requires_grad_()
    weight, bias = net.conv1.weight, net.conv1.bias
    if per_frame:
        batch, channels, frames, height, width = x.shape
        flat = x.transpose(1, 2).reshape(batch * frames, channels, height, width)
        out = FrameConv2d.apply(flat, weight.squeeze(2), bias)
        out = out.reshape(batch, frames, *out.shape[1:]).transpose(1, 2)
    else:
        out = net.conv1(x)
    grads = torch.autograd.grad((out * upstream.to(out.dtype)).sum(), (x, weight, bias))
    return [out.detach(), *grads]


def _frame_conv_check(channels: int, size: int, slip: str | None = None) -> None:
    """:class:`FrameConv2d` (oneDNN forward, ATen backward) against the 3-D convolution, both in
    float32 and both against float64; ``slip`` changes the float32 fast path as a bug would: one
    of the 800 weights off by 0.1% (``weight``), one input value left out of every sum
    (``term``), one of the 43,200 terms of a weight's gradient left out (``gradient term``)."""
    torch.manual_seed(0)
    net = LED3DCNN(channels, 5, size, high_dim=16, dropout=0.0)
    x = torch.randn(3, channels, 4, size, size)
    upstream = torch.randn(3, 32, 4, size - 4, size - 4, generator=torch.Generator().manual_seed(1))
    exact = _frame_conv_and_grads(
        copy.deepcopy(net).double(), x.double(), upstream, per_frame=False
    )
    reference = _frame_conv_and_grads(net, x, upstream, per_frame=False)
    fast_net, fast_x = net, x
    if slip == "weight":
        fast_net = copy.deepcopy(net)
        with torch.no_grad():
            fast_net.conv1.weight[3, 0, 0, 2, 2] *= 1.001
    if slip == "term":
        fast_x = x.clone()
        fast_x[1, 0, 2, 20, 20] = 0.0
    fast = _frame_conv_and_grads(fast_net, fast_x, upstream, per_frame=True)
    if slip == "gradient term":  # one of the weight gradient's sums misses one term
        fast[2][3, 0, 0, 2, 2] -= upstream[1, 3, 2, 20, 20] * x[1, 0, 2, 22, 22]
    positions = 3 * 4 * (size - 4) ** 2
    terms = {"out": channels * 25, "x": 32 * 25, "weight": positions, "bias": positions}
    for (name, count), a, b, c in zip(terms.items(), fast, reference, exact, strict=True):
        assert_as_accurate(a, b, c, terms=count, name=name)


@pytest.mark.parametrize(("channels", "size"), [(1, 64), (3, 50)])
def test_frame_conv_rounds_like_the_3d_convolution(channels: int, size: int) -> None:
    _frame_conv_check(channels, size)


@pytest.mark.parametrize("slip", ["weight", "term", "gradient term"])
def test_the_frame_conv_check_catches_a_slip(slip: str) -> None:
    with pytest.raises(AssertionError, match="fast path's error"):
        _frame_conv_check(1, 64, slip)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a_damaged_pretrained_file_is_an_error_naming_it(tmp_path, suffix) -> None:
    import os
    import pickle

    cfg = BackboneConfig(name="slow", builder_kwargs=TINY_WIDTHS["slow"])
    path = tmp_path / f"slow{suffix}"
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    damaged = {
        "truncated": b"PK\x03\x04" + b"\x00" * 40,
        "pickled code": pickle.dumps(Payload(), protocol=2),
        "empty": b"",
    }
    cfg.pretrained_path = str(path)
    for kind, data in damaged.items():
        path.write_bytes(data)
        with pytest.raises(ValueError, match=rf"{path}: not a readable weights file"):
            build_backbone(cfg, 3, 4, 32)
        assert not marker.exists(), kind
