"""Inference helpers kept apart from the model file: the prompt's key/value cache.

The prompt text before the first visual token (the prefix) is the same for every clip, so at
inference its keys/values are computed once (:meth:`AULLM.prompt_cache
<au_llm.model.modeling_au_llm.AULLM.prompt_cache>`) and passed to every forward call by whoever runs
the prediction loop. The cache belongs to the weights it was computed with: compute a new one after
any change of the LoRA weights (training, loading a checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor


@dataclass(frozen=True)
class PromptCache:
    """Keys/values of the prompt prefix for one state of the model's weights.

    Attributes:
        key_values: Per decoder layer, ``(keys, values)`` each ``[1, kv_heads, P, head_dim]``.
        length: Prefix length ``P`` in tokens.
    """

    key_values: tuple[tuple[Tensor, Tensor], ...]
    length: int

    def for_batch(self, batch: int, config: Any) -> Any:
        """A fresh transformers ``DynamicCache`` holding the prefix for ``batch`` sequences.

        The tensors are expanded (not copied); appending to the returned cache leaves this
        object unchanged, so one :class:`PromptCache` serves any number of calls.
        """
        from transformers import DynamicCache

        return DynamicCache(
            ddp_cache_data=[
                (k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1))
                for k, v in self.key_values
            ],
            config=config,
        )
