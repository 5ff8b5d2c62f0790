"""The typed decoding configuration: how the LLM's text answers and explanations are generated.

Part of the experiment configuration (:mod:`au_llm.config`), which re-exports it; a model folder
keeps the section it was trained with (:class:`~au_llm.deployed.InferenceConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass

from au_llm.config_checks import check_positive


@dataclass
class GenerationConfig:
    """Greedy decoding of text answers (``model.head: text`` or ``both``) and explanations.

    Attributes:
        max_answer_tokens: Longest generated answer, in tokens.
        constrained: Constrained decoding of answers: only tokens that continue a well-formed
            answer are allowed, so every answer parses.
        max_explanation_tokens: Longest generated explanation, in tokens.
        stop_repeat: Decoding stops an explanation when it ends with a run of at least
            ``stop_repeat`` tokens twice in a row (the repeat is dropped); 0 turns the stop off.
    """

    max_answer_tokens: int = 96
    constrained: bool = False
    max_explanation_tokens: int = 320
    stop_repeat: int = 4

    def __post_init__(self) -> None:
        check_positive("generation", "max_answer_tokens", self.max_answer_tokens)
        check_positive("generation", "max_explanation_tokens", self.max_explanation_tokens)
        check_positive("generation", "stop_repeat", self.stop_repeat, allow_zero=True)
