"""The AU-LLM model: 3D-CNN backbone -> Enhanced Fusion Projector -> LoRA-tuned LLM -> AU head.

Entry points: :class:`ModelSpec` (what to build), :func:`build_model` (a model and its text
processor, :class:`AULLMProcessor`), :class:`AULLM` (``forward``, ``prompt_cache``,
``prefill``, ``decode_step``, ``reset_trainable``, ``trainable_parameters``, ``place``), and
:func:`save_checkpoint` / :func:`load_checkpoint`. The training code (losses, parameter groups)
lives beside the training loop (:mod:`au_llm.losses`, :mod:`au_llm.param_groups`).
"""

from au_llm.model.checkpoint import build_model, load_checkpoint, save_checkpoint
from au_llm.model.modeling_au_llm import AULLM, build_au_llm
from au_llm.model.processing_au_llm import AULLMProcessor
from au_llm.model.spec import ModelSpec

__all__ = [
    "AULLM",
    "AULLMProcessor",
    "ModelSpec",
    "build_au_llm",
    "build_model",
    "load_checkpoint",
    "save_checkpoint",
]
