"""Which of the LLM's hidden states the AU head reads (``model.llm.readout``).

* ``last``: the final layer's hidden state after the final norm (AU-LLM's).
* ``layer``: layer ``k``'s, after the final norm: :func:`cut_layers` keeps the decoder's first
  ``k`` layers, so the later ones are never run (nor stored): the model is the LLM cut short,
  text answers included.
* ``mix``: :class:`LayerMix`, a learnt softmax mix over every layer's output, each after the
  final norm; :func:`layer_outputs` collects the layers' outputs during a decoder call.

With one-hot mixing weights on layer ``k`` the mix equals the ``layer`` read-out of ``k``.

:class:`ReadNorm` (``model.head_norm``) standardises what the head reads, dimension by dimension.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from au_llm.model.precision import autocast_off


def cut_layers(model: nn.Module, layers: int) -> None:
    """Keep only the first ``layers`` decoder layers of a causal LM (in place).

    The config's layer count (and per-layer attention types) follow, so key/value caches are
    sized for the cut model.

    Raises:
        ValueError: If the model has fewer layers (the message names ``model.llm.readout_layer``).
    """
    decoder = model.get_decoder()
    if not 1 <= layers <= len(decoder.layers):
        raise ValueError(
            f"model.llm.readout_layer = {layers}: the LLM has {len(decoder.layers)} layer(s)"
        )
    decoder.layers = decoder.layers[:layers]
    config = model.config
    config.num_hidden_layers = layers
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[:layers]


def _hidden(output: Any) -> Tensor:
    """A decoder layer's output hidden states (some transformers versions return a tuple)."""
    return output[0] if isinstance(output, tuple) else output


@contextlib.contextmanager
def layer_outputs(decoder: nn.Module, *, enabled: bool) -> Iterator[list[Tensor]]:
    """Collect the output of every decoder layer during the calls made inside the block.

    Args:
        decoder: A Hugging Face decoder body with ``layers``.
        enabled: Collect (``model.llm.readout: mix``); otherwise nothing is hooked.

    Yields:
        The list that receives each layer's output hidden states (before the final norm), in
        layer order, one entry per layer and call.
    """
    captured: list[Tensor] = []
    handles = []
    if enabled:
        for layer in decoder.layers:
            handles.append(
                layer.register_forward_hook(lambda _m, _a, out: captured.append(_hidden(out)))
            )
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


class LayerMix(nn.Module):
    """A learnt softmax mix over the LLM's layers: ``sum_l softmax(w)_l * norm(h_l)``.

    Args:
        layers: Number of layers mixed.
    """

    def __init__(self, layers: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(layers))

    def forward(self, states: Tensor) -> Tensor:
        """Mix per-layer states ``[L, ...]`` (each already after the final norm) -> ``[...]``.

        The weights are float32; the result is at least float32.
        """
        weights = torch.softmax(self.weights.float(), dim=0)
        return (weights.view(-1, *[1] * (states.dim() - 1)) * states).sum(0)

    def reset_parameters(self) -> None:
        """Zero weights: the mean of the layers."""
        with torch.no_grad():
            self.weights.zero_()


class ReadNorm(nn.BatchNorm1d):
    """Per-dimension standardisation of what the AU head reads (``model.head_norm``).

    A BatchNorm without affine parameters, as before a linear probe (MAE): batch statistics in
    training, running statistics at evaluation and for a batch of one. One state per AU
    (``[B, n_aus, D]``, ``model.au_queries``) shares the statistics. Computed in float32.

    Args:
        width: Width ``D`` of the states read.
    """

    def __init__(self, width: int) -> None:
        super().__init__(width, affine=False)

    def forward(self, read: Tensor) -> Tensor:
        """``[B, D]`` or ``[B, n, D]`` -> the same shape, float32."""
        flat = read.float().reshape(-1, read.shape[-1])
        with autocast_off(read.device.type):
            normed = F.batch_norm(
                flat,
                self.running_mean,
                self.running_var,
                training=self.training and flat.shape[0] > 1,
                momentum=self.momentum,
                eps=self.eps,
            )
        return normed.reshape(read.shape)
