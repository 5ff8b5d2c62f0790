"""3D-CNN backbones that turn a clip into mid- and high-level features.

Every backbone takes clips ``[B, C, T, H, W]`` (float32 in [0, 1]) and implements
``get_clip_features(x) -> {"mid": [B, mid_dim], "high": [B, high_dim]}`` and
``reset_parameters()``.

* ``led3dcnn`` (:class:`LED3DCNN`): AU-LLM's backbone, a learnable temporal filter (LED) followed
  by a small 3D-CNN. ``mid`` is the final feature map flattened, ``high`` a fully connected layer
  on it.
* ``x3d``, ``r2plus1d``, ``slow``, ``csn`` (:class:`PyTorchVideoBackbone`): pytorchvideo networks
  built without pretrained weights; ``mid`` is the stage-3 output, ``high`` the stage-4 output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from au_llm.config import BackboneConfig
from au_llm.model.pytorchvideo_compat import import_pytorchvideo_models
from au_llm.model.weights import read_state_dict

PYTORCHVIDEO_BACKBONES = ("x3d", "r2plus1d", "slow", "csn")


class FrameConv2d(torch.autograd.Function):
    """A stride-1, unpadded 2-D convolution: oneDNN forward, ATen's own backward on CPU.

    For the first convolution of :class:`LED3DCNN` (one to three input channels, 5x5 kernel)
    oneDNN's backward is about 2x slower than ATen's im2col + GEMM backward on CPU, while its
    forward is faster (1 thread, 640 frames of 64x64: forward+backward 1.95 s -> about 1.0 s).
    The forward is the ordinary ``F.conv2d``; the gradients equal it up to float rounding.

    Under autocast (any device) the forward does autocast's own cast of input, weight and bias
    to the autocast dtype, runs the convolution with autocast off and saves the cast tensors, so
    the backward sees one dtype; the gradients are returned in each input's own dtype.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """``[N, C, H, W]`` -> ``[N, C_out, H - k + 1, W - k + 1]``."""
        device_type = x.device.type
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        if torch.is_autocast_enabled(device_type):
            dtype = torch.get_autocast_dtype(device_type)
            x, weight = x.to(dtype), weight.to(dtype)
            bias = None if bias is None else bias.to(dtype)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        with torch.autocast(device_type, enabled=False):
            return F.conv2d(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        """Gradients of ``x``, ``weight`` and ``bias`` (those that are needed)."""
        x, weight = ctx.saved_tensors
        needs = [*ctx.needs_input_grad[:2], ctx.has_bias and ctx.needs_input_grad[2]]
        # only oneDNN's switch: mkldnn.flags() would also reset the TF32 and determinism flags
        onednn = torch.backends.mkldnn.set_flags(False, None, None, None)[0]
        try:
            grads = torch.ops.aten.convolution_backward(
                grad.to(x.dtype),
                x,
                weight,
                [weight.shape[0]],
                [1, 1],
                [0, 0],
                [1, 1],
                False,
                [0, 0],
                1,
                needs,
            )
        finally:
            torch.backends.mkldnn.set_flags(onednn, None, None, None)
        return tuple(
            g.to(dtype) if need else None
            for g, need, dtype in zip(grads, needs, ctx.dtypes, strict=True)
        )


def reset_submodules(module: nn.Module) -> None:
    """Call ``reset_parameters`` on every submodule of ``module`` that has one (not on itself)."""
    for sub in module.modules():
        if sub is not module and hasattr(sub, "reset_parameters"):
            sub.reset_parameters()


def _lowpass_matrix(r: Tensor, n_frames: int) -> Tensor:
    """First-order IIR low-pass filter as a lower-triangular matrix.

    The filter is ``y_0 = x_0``, ``y_t = (1 - r) * y_{t-1} + r * x_t``, so
    ``y_t = sum_i M[t, i] x_i`` with ``M[t, i] = (1 - r)^(t - i) * (r if i > 0 else 1)`` for
    ``i <= t`` and 0 otherwise. Powers are built with ``cumprod`` (no ``pow``), so the gradient
    stays finite for any r.

    Args:
        r: Scalar filter factor.
        n_frames: Number of frames T.

    Returns:
        ``[T, T]`` matrix, ``M[output frame, input frame]``.
    """
    decay = (1 - r).reshape(1).expand(n_frames - 1)
    powers = torch.cumprod(torch.cat([torch.ones_like(decay[:1]), decay]), dim=0)  # (1-r)^k
    t = torch.arange(n_frames, device=r.device)
    lag = (t[:, None] - t[None, :]).clamp(min=0)
    input_gain = torch.where(t > 0, r, torch.ones_like(r))
    return torch.tril(powers[lag] * input_gain[None, :])


class LearnableEulerianDynamics(nn.Module):
    """LED: learnable, linearised Eulerian temporal filtering of a clip (Varanka et al.).

    With ``L_r`` the low-pass matrix of :func:`_lowpass_matrix` and ``alpha, r1, r2`` learnable
    (stored as logs, initialised to 10, 0.4 and 0.05), the temporal matrix is
    ``W = alpha * (L_r1 - L_r2)`` (the AU-LLM reference: motion only, a band-pass) or, with
    ``add_input``, ``W = I + alpha * (L_r1 - L_r2)`` (Eulerian video magnification's form). The
    output is normalised per pixel as in the reference:
    ``out[t] = (sum_i W[t, i] x[i]) / (sum_i |W[t, i]| |x[i]| + 1e-8)``, which lies in [-1, 1].
    The first output frame (which carries no motion) is dropped, so T frames give T - 1.
    In the motion-only form alpha cancels in that ratio (it keeps a near-zero gradient); it matters
    only with ``add_input``.
    """

    def __init__(
        self,
        alpha: float = 10.0,
        r1: float = 0.4,
        r2: float = 0.05,
        *,
        add_input: bool = False,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        self.init_values = (alpha, r1, r2)
        self.add_input = add_input
        self.eps = eps
        self.log_alpha = nn.Parameter(torch.zeros(()))
        self.log_r1 = nn.Parameter(torch.zeros(()))
        self.log_r2 = nn.Parameter(torch.zeros(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Set alpha, r1 and r2 back to their initial values."""
        with torch.no_grad():
            for param, value in zip(
                (self.log_alpha, self.log_r1, self.log_r2), self.init_values, strict=True
            ):
                param.fill_(math.log(value))

    def matrix(self, n_frames: int) -> Tensor:
        """Return the ``[T, T]`` temporal matrix ``W[output frame, input frame]``."""
        alpha, r1, r2 = self.log_alpha.exp(), self.log_r1.exp(), self.log_r2.exp()
        weights = alpha * (_lowpass_matrix(r1, n_frames) - _lowpass_matrix(r2, n_frames))
        if self.add_input:
            weights = weights + torch.eye(n_frames, device=weights.device, dtype=weights.dtype)
        return weights

    def forward(self, x: Tensor) -> Tensor:
        """Filter a clip over time.

        Args:
            x: ``[B, C, T, H, W]`` clip.

        Returns:
            ``[B, C, T - 1, H, W]`` normalised filtered clip, at least float32. The filter
            always runs in float32 or wider (autocast off): in bfloat16 its coefficients no
            longer sum to zero and static pixels get a spurious response near the size of a
            1-2 px micro-movement's.
        """
        with torch.autocast(x.device.type, enabled=False):
            x = x.to(torch.promote_types(x.dtype, torch.float32))
            weights = self.matrix(x.shape[2]).to(x.dtype)
            out = torch.einsum("ti,bcihw->bcthw", weights, x)
            norm = torch.einsum("ti,bcihw->bcthw", weights.abs(), x.abs())
            return (out / (norm + self.eps))[:, :, 1:]


class FrameSqueezeExcitation(nn.Module):
    """Squeeze-excitation applied to each frame of a ``[B, C, T, H, W]`` map separately."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Rescale the channels of every frame by weights from its spatial mean."""
        squeezed = x.mean(dim=(3, 4)).transpose(1, 2)  # [B, T, C]
        scale = self.fc(squeezed).transpose(1, 2)  # [B, C, T]
        return x * scale[..., None, None]


class LED3DCNN(nn.Module):
    """AU-LLM's backbone: LED, then a two-layer 3D-CNN with per-frame squeeze-excitation.

    Layout (for 6 gray 64x64 frames): LED (6 -> 5 frames) -> Conv3d(C, 32, (1, 5, 5)) -> ReLU ->
    MaxPool3d((1, 3, 3)) -> BatchNorm3d -> Dropout3d -> Conv3d(32, 64, (2, 3, 3)) -> ReLU ->
    BatchNorm3d -> squeeze-excitation per frame (reduction 16) -> MaxPool3d((2, 2, 2)) ->
    Dropout3d gives the mid map ``[B, 64, 2, 9, 9]`` (10368 values). ``high`` is
    Linear(10368 -> high_dim) -> ReLU -> Dropout on the full mid map. RGB (C = 3) clips go through
    LED per channel and the first convolution takes C input channels. The last max-pool uses
    ``ceil_mode`` so that clips of 3 frames (1 frame left after the second convolution) and odd
    sizes work; for 6 frames of 64x64 it equals the reference's floor pooling. ``mid_pool`` (if
    given) adaptive-average-pools only the ``mid`` output; ``high`` always reads the full map.
    """

    def __init__(
        self,
        in_channels: int,
        n_frames: int,
        size: int,
        high_dim: int = 256,
        dropout: float = 0.3,
        mid_pool: tuple[int, int, int] | None = None,
        *,
        add_input: bool = False,
    ) -> None:
        super().__init__()
        if n_frames < 3:
            raise ValueError(
                f"led3dcnn needs at least 3 frames per clip (LED drops one and the second "
                f"convolution spans two), got n_frames={n_frames}"
            )
        self.led = LearnableEulerianDynamics(add_input=add_input)
        self.conv1 = nn.Conv3d(in_channels, 32, kernel_size=(1, 5, 5))
        self.pool1 = nn.MaxPool3d((1, 3, 3))
        self.bn1 = nn.BatchNorm3d(32)
        self.drop1 = nn.Dropout3d(dropout)
        self.conv2 = nn.Conv3d(32, 64, kernel_size=(2, 3, 3))
        self.bn2 = nn.BatchNorm3d(64)
        self.se = FrameSqueezeExcitation(64, reduction=16)
        self.pool2 = nn.MaxPool3d((2, 2, 2), ceil_mode=True)
        self.drop2 = nn.Dropout3d(dropout)
        self.mid_pool = tuple(mid_pool) if mid_pool else None
        map_shape = self._mid_map_shape(in_channels, n_frames, size)
        full_dim = math.prod(map_shape)
        self.fc_high = nn.Linear(full_dim, high_dim)
        self.drop_high = nn.Dropout(dropout)
        self.mid_dim = map_shape[0] * math.prod(self.mid_pool) if self.mid_pool else full_dim
        self.high_dim = high_dim

    def _mid_map_shape(self, in_channels: int, n_frames: int, size: int) -> tuple[int, ...]:
        dummy = torch.zeros(1, in_channels, n_frames, size, size)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                shape = tuple(self.mid_map(dummy).shape[1:])
        except RuntimeError as exc:
            raise ValueError(
                f"led3dcnn cannot process {n_frames} frames of {size}x{size}: {exc}"
            ) from exc
        finally:
            self.train(was_training)
        return shape

    def mid_map(self, x: Tensor) -> Tensor:
        """Return the mid-level map ``[B, 64, T', H', W']`` of clips ``[B, C, T, H, W]``."""
        x = self.led(x)
        x = self.drop1(self.bn1(self._conv1_pool1(x)))
        x = self.bn2(F.relu(self.conv2(x)))
        x = self.se(x)
        return self.drop2(self.pool2(x))

    def _conv1_pool1(self, x: Tensor) -> Tensor:
        """``pool1(relu(conv1(x)))`` computed per frame in 2-D, pooling before the ReLU.

        ``conv1`` and ``pool1`` span one frame, so both run as 2-D operations on the ``B * T``
        frames; max-pooling and ReLU commute, and pooling first applies the ReLU to 9x fewer
        values. The result equals the 3-D form up to float rounding (about 1.2-1.5x faster
        forward+backward on CPU), and the convolution's backward is ATen's own
        (:class:`FrameConv2d`).

        Args:
            x: ``[B, C, T, H, W]`` filtered clip.

        Returns:
            ``[B, 32, T, H', W']`` pooled feature map.
        """
        batch, channels, frames, height, width = x.shape
        frames_2d = x.transpose(1, 2).reshape(batch * frames, channels, height, width)
        out = FrameConv2d.apply(frames_2d, self.conv1.weight.squeeze(2), self.conv1.bias)
        out = F.relu(F.max_pool2d(out, self.pool1.kernel_size[1:], self.pool1.stride[1:]))
        return out.reshape(batch, frames, *out.shape[1:]).transpose(1, 2)

    def get_clip_features(self, x: Tensor) -> dict[str, Tensor]:
        """Return ``{"mid": [B, mid_dim], "high": [B, high_dim]}`` for clips ``[B, C, T, H, W]``."""
        mid_map = self.mid_map(x)
        full = mid_map.flatten(1)
        high = self.drop_high(F.relu(self.fc_high(full)))
        mid = F.adaptive_avg_pool3d(mid_map, self.mid_pool).flatten(1) if self.mid_pool else full
        return {"mid": mid, "high": high}

    def reset_parameters(self) -> None:
        """Re-initialise every layer (and the BatchNorm statistics) in place."""
        reset_submodules(self)


def _pytorchvideo_net(
    name: str, in_channels: int, n_frames: int, size: int, depth: int, kwargs: dict[str, Any]
) -> nn.Module:
    """Build a pytorchvideo network (random init) whose ``blocks`` are [stem, stage1-4, head]."""
    builders = import_pytorchvideo_models()
    common: dict[str, Any] = {"input_channel": in_channels, "head_activation": None}
    if name == "x3d":
        args = {"input_clip_length": n_frames, "input_crop_size": size, **common}
        return builders["x3d"].create_x3d(**{**args, **kwargs})
    if name == "r2plus1d":
        return builders["r2plus1d"].create_r2plus1d(model_depth=depth, **{**common, **kwargs})
    if name == "slow":
        slow_args = {  # the Slow pathway (slow_r50): no temporal kernels before stage 3
            "stem_conv_kernel_size": (1, 7, 7),
            "stage_conv_a_kernel_size": ((1, 1, 1), (1, 1, 1), (3, 1, 1), (3, 1, 1)),
            **common,
        }
        return builders["resnet"].create_resnet(model_depth=depth, **{**slow_args, **kwargs})
    if name == "csn":
        return builders["csn"].create_csn(model_depth=depth, **{**common, **kwargs})
    raise ValueError(f"unknown pytorchvideo backbone {name!r}: expected {PYTORCHVIDEO_BACKBONES}")


class PyTorchVideoBackbone(nn.Module):
    """A pytorchvideo network without its head; mid = stage 3, high = stage 4.

    Both stage outputs are adaptive-average-pooled (``high`` globally, ``mid`` to ``mid_pool`` or
    globally when it is not given), flattened and passed through dropout. The weights come from the
    builder's own initialisation (no pretrained weights); ``reset_parameters`` re-applies it.
    """

    def __init__(
        self,
        name: str,
        in_channels: int,
        n_frames: int,
        size: int,
        depth: int = 50,
        dropout: float = 0.3,
        mid_pool: tuple[int, int, int] | None = None,
        builder_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        net = _pytorchvideo_net(name, in_channels, n_frames, size, depth, builder_kwargs or {})
        self.name = name
        self.blocks = nn.ModuleList(list(net.blocks)[:-1])  # stem, stage1..stage4; head dropped
        if len(self.blocks) != 5:
            raise ValueError(
                f"{name}: expected [stem, 4 stages, head], got {len(net.blocks)} blocks"
            )
        self.mid_pool = tuple(mid_pool) if mid_pool else (1, 1, 1)
        self.dropout = nn.Dropout(dropout)
        mid, high = self._stage_shapes(in_channels, n_frames, size)
        self.mid_dim = mid[0] * math.prod(self.mid_pool)
        self.high_dim = high[0]

    def _stage_shapes(
        self, in_channels: int, n_frames: int, size: int
    ) -> tuple[tuple[int, ...], ...]:
        dummy = torch.zeros(1, in_channels, n_frames, size, size)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                mid, high = self.stage_maps(dummy)
        except RuntimeError as exc:
            raise ValueError(
                f"{self.name} cannot process {n_frames} frames of {size}x{size}: {exc}"
            ) from exc
        finally:
            self.train(was_training)
        return tuple(mid.shape[1:]), tuple(high.shape[1:])

    def stage_maps(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return the stage-3 and stage-4 maps ``[B, C3, T3, H3, W3]``, ``[B, C4, ...]``."""
        for block in self.blocks[:4]:
            x = block(x)
        return x, self.blocks[4](x)

    def get_clip_features(self, x: Tensor) -> dict[str, Tensor]:
        """Return ``{"mid": [B, mid_dim], "high": [B, high_dim]}`` for clips ``[B, C, T, H, W]``."""
        mid_map, high_map = self.stage_maps(x)
        mid = F.adaptive_avg_pool3d(mid_map, self.mid_pool).flatten(1)
        high = F.adaptive_avg_pool3d(high_map, 1).flatten(1)
        return {"mid": self.dropout(mid), "high": self.dropout(high)}

    def reset_parameters(self) -> None:
        """Re-apply pytorchvideo's initialisation and reset the BatchNorm statistics."""
        from pytorchvideo.models.weight_init import init_net_weights

        init_net_weights(self.blocks)
        for module in self.blocks.modules():
            if isinstance(module, nn.modules.batchnorm._NormBase):
                module.reset_running_stats()

    def adapt_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Drop the keys of pytorchvideo's head (``blocks.5.*``); this backbone has no head."""
        head = f"blocks.{len(self.blocks)}."
        return {key: value for key, value in state.items() if not key.startswith(head)}


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a local state dict into ``backbone`` with strict key and shape checking.

    Args:
        backbone: The backbone to fill.
        path: A ``.safetensors`` file or a ``torch.save`` file holding a state dict (optionally
            wrapped as ``{"model_state": ...}`` or ``{"state_dict": ...}``, as pytorchvideo and
            Lightning save them). pytorchvideo head keys are ignored.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file is damaged, keys are missing or unexpected, or shapes differ; the
            message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.backbone.pretrained_path: no such file {path}")
    state = read_state_dict(path)
    for wrapper in ("model_state", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    if isinstance(backbone, PyTorchVideoBackbone):
        state = backbone.adapt_state_dict(state)
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            details.append(
                f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
            )
        if wrong:
            shapes = [
                f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong
            ]
            details.append(f"shape mismatches {shapes[:3]}")
        raise ValueError(f"{path}: state dict does not fit the backbone: {'; '.join(details)}")
    backbone.load_state_dict(state, strict=True)


def reset_backbone(backbone: nn.Module, cfg: BackboneConfig) -> None:
    """Re-initialise a backbone in place, then reload ``cfg.pretrained_path`` if it is set."""
    backbone.reset_parameters()
    if cfg.pretrained_path:
        load_backbone_weights(backbone, cfg.pretrained_path)


def _led3dcnn(cfg: BackboneConfig, in_channels: int, n_frames: int, size: int) -> nn.Module:
    mid_pool = tuple(cfg.mid_pool) if cfg.mid_pool else None
    return LED3DCNN(
        in_channels,
        n_frames,
        size,
        high_dim=cfg.high_dim,
        dropout=cfg.dropout,
        mid_pool=mid_pool,
        add_input=cfg.led_add_input,
    )


def _pytorchvideo(cfg: BackboneConfig, in_channels: int, n_frames: int, size: int) -> nn.Module:
    return PyTorchVideoBackbone(
        cfg.name,
        in_channels,
        n_frames,
        size,
        depth=cfg.depth,
        dropout=cfg.dropout,
        mid_pool=tuple(cfg.mid_pool) if cfg.mid_pool else None,
        builder_kwargs=dict(cfg.builder_kwargs),
    )


BackboneBuilder = Callable[[BackboneConfig, int, int, int], nn.Module]
BACKBONES: dict[str, BackboneBuilder] = {
    "led3dcnn": _led3dcnn,
    **{name: _pytorchvideo for name in PYTORCHVIDEO_BACKBONES},
}
"""Every backbone by name (``model.backbone.name``) -> its builder,
``builder(cfg, in_channels, n_frames, size)``; the config check reads this table."""


def build_backbone(cfg: BackboneConfig, in_channels: int, n_frames: int, size: int) -> nn.Module:
    """Build the backbone named in ``cfg`` for clips ``[B, in_channels, n_frames, size, size]``.

    Args:
        cfg: Backbone settings (``cfg.name`` is a name of :data:`BACKBONES`).
        in_channels: 1 (gray) or 3 (RGB).
        n_frames: Frames per clip.
        size: Side of the square frames in pixels.

    Returns:
        A module with ``get_clip_features``, ``reset_parameters``, ``mid_dim`` and ``high_dim``;
        pretrained weights from ``cfg.pretrained_path`` are loaded when given.
    """
    backbone = BACKBONES[cfg.name](cfg, in_channels, n_frames, size)
    if cfg.pretrained_path:
        load_backbone_weights(backbone, cfg.pretrained_path)
    return backbone
