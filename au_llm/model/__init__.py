"""The AU-LLM model: 3D-CNN backbone -> Enhanced Fusion Projector -> LoRA-tuned LLM -> AU head.

Entry points: :class:`ModelSpec` (what to build), :func:`build_model` (a model and its text
processor, :class:`AULLMProcessor`), :class:`AULLM` (``forward``, ``prompt_cache``,
``reset_trainable``, ``trainable_parameters``, ``place``), :func:`build_loss`, and
:func:`save_checkpoint` / :func:`load_checkpoint`.
"""

from au_llm.model.checkpoint import build_model, load_checkpoint, save_checkpoint
from au_llm.model.losses import build_loss
from au_llm.model.modeling_au_llm import AULLM, build_au_llm
from au_llm.model.processing_au_llm import AULLMProcessor
from au_llm.model.spec import ModelSpec

__all__ = [
    "AULLM",
    "AULLMProcessor",
    "ModelSpec",
    "build_au_llm",
    "build_loss",
    "build_model",
    "load_checkpoint",
    "save_checkpoint",
]
