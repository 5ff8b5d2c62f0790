"""The Enhanced Fusion Projector: mid- and high-level clip features -> LLM input token(s).

``model.projector.tokens: fused`` (AU-LLM's) makes every token from concat(mid, high); ``cells``
makes one token per cell of the pooled mid-level map (``model.backbone.mid_pool``), each from that
cell's channels and the high-level feature through the same MLP.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from au_llm.config import ProjectorConfig


class EnhancedFusionProjector(nn.Module):
    """concat(mid, high) -> Linear -> activation -> Dropout -> Linear [-> LayerNorm] -> tokens.

    The output of width ``n_tokens * out_dim`` is reshaped to ``n_tokens`` tokens of the LLM's
    hidden size. The hidden width defaults to ``(in_dim + n_tokens * out_dim) // 2`` (the paper's
    ``(concat + llm_dim) / 2`` for one token). With ``cfg.tokens: cells`` the mid feature is the
    pooled map ``[C, cells]`` flattened (``mid_dim = C * n_tokens``); each cell's ``C`` channels
    with the high feature go through the MLP (input ``C + high_dim``, output ``out_dim``) to give
    that cell's token.

    Args:
        mid_dim: Width of the backbone's mid-level feature.
        high_dim: Width of the backbone's high-level feature.
        out_dim: Width of one output token (the LLM hidden size).
        cfg: Hidden width, activation, dropout and optional output LayerNorm.
        n_tokens: Number of output tokens.
    """

    def __init__(
        self,
        mid_dim: int,
        high_dim: int,
        out_dim: int,
        cfg: ProjectorConfig | None = None,
        n_tokens: int = 1,
    ) -> None:
        super().__init__()
        cfg = cfg or ProjectorConfig()
        self.cells = cfg.tokens == "cells"
        if self.cells and mid_dim % n_tokens:
            raise ValueError(
                f"model.projector.tokens = cells: the mid feature ({mid_dim} values) is not "
                f"{n_tokens} cells of equal width"
            )
        self.mid_dim, self.high_dim = mid_dim, high_dim
        self.in_dim = mid_dim // n_tokens + high_dim if self.cells else mid_dim + high_dim
        self.out_dim = out_dim
        self.n_tokens = n_tokens
        total_out = out_dim if self.cells else n_tokens * out_dim
        self.hidden = cfg.hidden or (self.in_dim + total_out) // 2
        activation = nn.GELU() if cfg.activation == "gelu" else nn.ReLU()
        self.mlp = nn.Sequential(
            nn.Linear(self.in_dim, self.hidden),
            activation,
            nn.Dropout(cfg.dropout),
            nn.Linear(self.hidden, total_out),
        )
        self.norm = nn.LayerNorm(out_dim) if cfg.layer_norm else nn.Identity()

    def forward(self, mid: Tensor, high: Tensor) -> Tensor:
        """Fuse the two feature levels into visual tokens.

        Args:
            mid: ``[B, mid_dim]`` mid-level features.
            high: ``[B, high_dim]`` high-level features.

        Returns:
            ``[B, n_tokens, out_dim]`` visual tokens.

        Raises:
            ValueError: If the features' widths differ from the projector's.
        """
        if (mid.shape[-1], high.shape[-1]) != (self.mid_dim, self.high_dim):
            raise ValueError(
                f"projector expects mid + high = {self.mid_dim + self.high_dim} features "
                f"({self.mid_dim} + {self.high_dim}), got {mid.shape[-1]} + {high.shape[-1]} = "
                f"{mid.shape[-1] + high.shape[-1]}"
            )
        if self.cells:
            cells = mid.unflatten(-1, (-1, self.n_tokens)).transpose(1, 2)  # [B, n, C]
            high = high.unsqueeze(1).expand(-1, self.n_tokens, -1)
            return self.norm(self.mlp(torch.cat([cells, high], dim=-1)))
        fused = self.mlp(torch.cat([mid, high], dim=-1))
        return self.norm(fused.view(fused.shape[0], self.n_tokens, self.out_dim))

    def reset_parameters(self) -> None:
        """Re-initialise the linear layers and the LayerNorm."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
