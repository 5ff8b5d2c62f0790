"""The Enhanced Fusion Projector: mid- and high-level clip features -> LLM input token(s)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from au_llm.config import ProjectorConfig


class EnhancedFusionProjector(nn.Module):
    """concat(mid, high) -> Linear -> activation -> Dropout -> Linear [-> LayerNorm] -> tokens.

    The output of width ``n_tokens * out_dim`` is reshaped to ``n_tokens`` tokens of the LLM's
    hidden size. The hidden width defaults to ``(in_dim + n_tokens * out_dim) // 2`` (the paper's
    ``(concat + llm_dim) / 2`` for one token).

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
        self.in_dim = mid_dim + high_dim
        self.out_dim = out_dim
        self.n_tokens = n_tokens
        total_out = n_tokens * out_dim
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
            ValueError: If ``mid_dim + high_dim`` differs from the projector's input width.
        """
        if mid.shape[-1] + high.shape[-1] != self.in_dim:
            raise ValueError(
                f"projector expects mid + high = {self.in_dim} features, got "
                f"{mid.shape[-1]} + {high.shape[-1]} = {mid.shape[-1] + high.shape[-1]}"
            )
        fused = self.mlp(torch.cat([mid, high], dim=-1))
        return self.norm(fused.view(fused.shape[0], self.n_tokens, self.out_dim))

    def reset_parameters(self) -> None:
        """Re-initialise the linear layers and the LayerNorm."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
