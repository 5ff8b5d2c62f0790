"""The text processor of AU-LLM: everything textual, beside the model (as LLaVA's processor).

:class:`AULLMProcessor` owns the LLM's tokenizer and turns text into what
:class:`~au_llm.model.modeling_au_llm.AULLM` takes (token ids, teacher-forcing targets) and
generated ids back into text:

* the prompt as ids with :data:`~au_llm.model.modeling_au_llm.VISUAL_TOKEN_ID` at each visual
  slot (``model.llm.prompt``, with ``model.llm.placeholder`` markers or the visual token(s)
  after it);
* one instruction per answer format (:data:`au_llm.answers.INSTRUCTIONS`) and for explanations
  (:data:`au_llm.explain.EXPLAIN_INSTRUCTION`), each following the visual token(s);
* target answers (:func:`au_llm.answers.target_answer`) and explanation targets
  (:func:`au_llm.explain.describe_clip`) as right-padded teacher-forcing ids with their targets
  (``-100`` where no loss is taken);
* the tries of well-formed answers for constrained decoding, decoding of generated ids into one
  printable line each, and parsing of answers back into AU decisions;
* with ``model.au_queries``, one query segment per AU (``AU1 inner brow raiser:``, from the FACS
  table, :mod:`au_llm.data.facs`), which the model places after the visual token(s) and reads at
  their ends;
* with ``model.reader: llm_random_prompt``, the prompt's ids with every ordinary (non-special)
  token replaced by a random ordinary token drawn from ``model.reader_seed`` (same length, the
  special tokens and visual slots where they were).

The chat template (``model.llm.chat_template``): with it, the prompt, the visual token(s) and the
instruction form the user turn of the tokenizer's template, and the answer follows the assistant
header the template adds; the instruction's ids then end with the template's end of the user turn
and the assistant header. ``auto`` uses it for ``source: path`` when the tokenizer has one; the
built-in SmolLM2 and the tiny LLM keep the plain prompt unless set to ``on``. Under a template the
ids carry exactly the special tokens the template writes (none is added by the tokenizer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from au_llm.answers import INSTRUCTIONS, ParsedAnswer, parse_answer, target_answer
from au_llm.config import LLMConfig
from au_llm.data.facs import facs_entries
from au_llm.explain import EXPLAIN_INSTRUCTION, describe_clip, printable
from au_llm.model.engine import AnswerTrie
from au_llm.model.llm import PromptTokenizer, load_tokenizer
from au_llm.model.spec import ModelSpec
from au_llm.model.visual_slots import VISUAL_TOKEN_ID

EXPLAIN = "explain"
IGNORE_INDEX = -100
# Inner marks of the rendered chat turn: a visual slot, and where the instruction goes.
_VISUAL_MARK = "\x00visual\x00"
_INSTRUCTION_MARK = "\x00instruction\x00"


def split_prompt(prompt: str, placeholder: str, n_visual_tokens: int) -> list[str]:
    """Split the prompt into the text segments around the visual tokens.

    Args:
        prompt: Prompt text, optionally with ``placeholder`` markers.
        placeholder: Marker of a visual token.
        n_visual_tokens: Visual tokens per clip.

    Returns:
        ``n_visual_tokens + 1`` segments: text before the first visual token, between tokens, and
        after the last one (empty strings where nothing is there); whitespace around each
        placeholder is dropped, so no lone space token sits beside a visual token.

    Raises:
        ValueError: If the prompt has placeholders but not exactly ``n_visual_tokens`` of them.
    """
    if placeholder and placeholder in prompt:
        parts = prompt.split(placeholder)
        if len(parts) - 1 != n_visual_tokens:
            raise ValueError(
                f"model.llm.prompt has {len(parts) - 1} {placeholder!r} placeholder(s) but "
                f"model.llm.n_visual_tokens = {n_visual_tokens}; they must be equal"
            )
        return [part.strip() for part in parts]
    return [prompt.strip()] + [""] * n_visual_tokens


def random_prompt_ids(prompt_ids: Tensor, ordinary: list[int], seed: int) -> Tensor:
    """``prompt_ids`` with each ordinary token replaced by a random ordinary token.

    Args:
        prompt_ids: ``[P]`` prompt ids with visual slots.
        ordinary: The tokenizer's ordinary (non-special) ids; special tokens and visual slots
            keep their place.
        seed: Seed of the draw (the same ids in every fold and process).

    Returns:
        ``[P]`` ids.
    """
    pool = torch.tensor(ordinary, dtype=torch.long)
    replace = torch.isin(prompt_ids, pool)
    generator = torch.Generator().manual_seed(seed)
    drawn = pool[torch.randint(len(pool), (int(replace.sum()),), generator=generator)]
    out = prompt_ids.clone()
    out[replace] = drawn
    return out


def wants_chat_template(llm: LLMConfig) -> bool | None:
    """Whether ``model.llm.chat_template`` asks for the template: True, False, or None (if any).

    ``auto`` is None for ``source: path`` (use the tokenizer's template when it has one) and
    False otherwise; ``on`` is True; ``off`` is False.
    """
    if llm.chat_template == "on":
        return True
    if llm.chat_template == "auto" and llm.source == "path":
        return None
    return False


class AULLMProcessor:
    """Prompt, instructions, targets, tokenisation, collation and decoding of one model's text.

    Args:
        spec: The model's spec (its ``model`` configuration and AUs).
        tokenizer: The LLM's tokenizer; None for a reader that reads no prompt (no text at
            all: ``model.reader: none, mlp, resmlp``).

    Attributes:
        tokenizer: The tokenizer (None without an LLM).
        aus: The model's AUs, in output order.
        chat_template: Whether the tokenizer's chat template shapes the prompt.
        prompt_ids: ``[P]`` the prompt's ids with ``VISUAL_TOKEN_ID`` at each visual slot (None
            without a tokenizer): what :class:`~au_llm.model.modeling_au_llm.AULLM` takes.
        query_ids: With ``model.au_queries``, the ids ``[L_i]`` of each AU's query segment, in
            the model's AU order; empty otherwise.

    Raises:
        ValueError: ``chat_template: on`` for a tokenizer without a template, a template that
            drops the user's text, or a prompt with another number of placeholders than
            ``n_visual_tokens``.
    """

    def __init__(self, spec: ModelSpec, tokenizer: PromptTokenizer | None) -> None:
        cfg = spec.model
        self.tokenizer = tokenizer
        self.aus = spec.aus
        self.chat_template = False
        self.prompt_ids: Tensor | None = None
        self.query_ids: list[Tensor] = []
        self._instructions: dict[str, Tensor] = {}
        if tokenizer is None:
            return
        llm = cfg.llm
        segments = split_prompt(llm.prompt, llm.placeholder, llm.n_visual_tokens)
        turn = self._chat_turn(segments, llm)
        self.chat_template = turn is not None
        head, tail = turn if turn is not None else (segments, "\n")
        pieces: list[Tensor] = []
        for i, segment in enumerate(head):
            # Under a chat template the template writes every special token itself.
            special = i == 0 and not self.chat_template
            pieces += [self._encode(segment, special=special), torch.tensor([VISUAL_TOKEN_ID])]
        self.prompt_ids = torch.cat(pieces[:-1])
        if cfg.reader == "llm_random_prompt":
            self.prompt_ids = random_prompt_ids(
                self.prompt_ids, tokenizer.ordinary_ids(), cfg.reader_seed
            )
        if cfg.au_queries:
            self.query_ids = [
                self._encode(f"\nAU{entry.au} {entry.name}:", special=False)
                for entry in facs_entries(spec.aus)
            ]
        formats = cfg.text.formats if cfg.has_text_head else []
        texts = {fmt: INSTRUCTIONS[fmt] for fmt in formats}
        if cfg.explain:
            texts[EXPLAIN] = EXPLAIN_INSTRUCTION
        self._instructions = {
            name: self._encode(f"\n{text}{tail}", special=False) for name, text in texts.items()
        }

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> AULLMProcessor:
        """The processor of the model ``spec`` describes, with its LLM's tokenizer loaded."""
        model = spec.model
        return cls(spec, load_tokenizer(model.llm) if model.reads_prompt else None)

    # ----------------------------------------------------------------------------- prompt
    def _chat_turn(self, segments: list[str], llm: LLMConfig) -> tuple[list[str], str] | None:
        """The chat template's user turn around the prompt, or None when not used.

        Returns:
            ``(head, tail)``: the rendered text before the instruction split at the visual
            slots (``n + 1`` segments, stripped), and the rendered text after it (the end of the
            user turn and the assistant header).
        """
        wanted = wants_chat_template(llm)
        if wanted is False:
            return None
        assert self.tokenizer is not None
        user = _VISUAL_MARK.join(segments) + _INSTRUCTION_MARK
        rendered = self.tokenizer.render_chat(user)
        if rendered is None:
            if wanted:
                raise ValueError(
                    "model.llm.chat_template = on, but the tokenizer of model.llm.source = "
                    f"{llm.source} has no chat template"
                )
            return None
        head, found, tail = rendered.partition(_INSTRUCTION_MARK)
        parts = head.split(_VISUAL_MARK)
        if not found or len(parts) != len(segments):
            raise ValueError(
                "model.llm.chat_template: the tokenizer's chat template does not keep the "
                "user's text as given; set model.llm.chat_template = off"
            )
        return [part.strip() for part in parts], tail

    def _encode(self, text: str, *, special: bool) -> Tensor:
        assert self.tokenizer is not None, "a reader without a prompt has no text"
        return torch.tensor(self.tokenizer.encode(text, special), dtype=torch.long)

    @property
    def eos_id(self) -> int:
        """The end token of answers and explanations."""
        assert self.tokenizer is not None, "a reader without a prompt has no text"
        return self.tokenizer.eos_id

    def instruction_ids(self, name: str) -> Tensor:
        """``[L]`` the ids of an instruction: an answer format, or ``explain``.

        Raises:
            ValueError: The model was not built to follow that instruction.
        """
        if name not in self._instructions:
            known = ", ".join(self._instructions) or "none"
            raise ValueError(f"the model has no instruction {name!r} (it has: {known})")
        return self._instructions[name]

    # ----------------------------------------------------------------------------- targets
    def answer_texts(self, labels: Tensor, formats: Sequence[str]) -> list[str]:
        """The target answer of each clip in its format.

        Args:
            labels: ``[B, n_aus]`` 0/1 AU labels, in the model's AU order.
            formats: One answer format per clip.
        """
        texts = []
        for row, fmt in zip(labels.tolist(), formats, strict=True):
            present = [au for au, on in zip(self.aus, row, strict=True) if on > 0.5]
            texts.append(target_answer(fmt, self.aus, present))
        return texts

    def answer_batch(self, labels: Tensor, formats: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Teacher-forcing ids of each clip's target answer (see :meth:`teacher_forcing`).

        Args:
            labels: ``[B, n_aus]`` 0/1 AU labels.
            formats: One answer format per clip.
        """
        return self.teacher_forcing(list(formats), self.answer_texts(labels, formats))

    def explanation_batch(
        self, metas: Sequence[Mapping[str, Any]], step: int
    ) -> tuple[Tensor, Tensor]:
        """Teacher-forcing ids of each clip's description target (:func:`describe_clip`).

        Args:
            metas: One meta dict per clip, with its annotation (``au_raw``, ``aus``, ids).
            step: The training step: the phrasing is drawn from the clip and the step.
        """
        texts = [describe_clip(meta, step) for meta in metas]
        return self.teacher_forcing([EXPLAIN] * len(texts), texts)

    def teacher_forcing(
        self, instructions: Sequence[str], texts: Sequence[str]
    ) -> tuple[Tensor, Tensor]:
        """Collate instruction, target text and end token per clip into padded tensors.

        Args:
            instructions: One instruction name per clip (a format, or ``explain``).
            texts: One target text per clip.

        Returns:
            ``(ids [B, L], targets [B, L])``: right-padded (with the end token) ids, and the same
            ids with ``-100`` wherever no loss is taken (the instruction and the padding). No
            attention mask is needed: padding only follows a clip's own text in a causal LM.
        """
        rows, masks = [], []
        for name, text in zip(instructions, texts, strict=True):
            instruction = self.instruction_ids(name).tolist()
            target = self._encode(text, special=False).tolist()
            rows.append(instruction + target + [self.eos_id])
            masks.append([False] * len(instruction) + [True] * (len(target) + 1))
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), self.eos_id, dtype=torch.long)
        targets = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for i, (row, mask) in enumerate(zip(rows, masks, strict=True)):
            values = torch.tensor(row)
            ids[i, : len(row)] = values
            targets[i, : len(row)] = torch.where(torch.tensor(mask), values, IGNORE_INDEX)
        return ids, targets

    def answer_trie(self, fmt: str, max_answers: int = 1 << 16) -> AnswerTrie:
        """The trie of every answer of format ``fmt`` over the model's AUs (all 2^A subsets).

        Raises:
            ValueError: If there are more than ``max_answers`` answers (too many AUs to list).
        """
        if 2 ** len(self.aus) > max_answers:
            raise ValueError(f"constrained decoding over {len(self.aus)} AUs: too many answers")
        sequences = []
        for mask in range(2 ** len(self.aus)):
            present = [au for j, au in enumerate(self.aus) if mask >> j & 1]
            ids = self._encode(target_answer(fmt, self.aus, present), special=False).tolist()
            sequences.append([*ids, self.eos_id])
        return AnswerTrie(sequences)

    # ----------------------------------------------------------------------------- outputs
    def decode(self, sequences: Sequence[Sequence[int]]) -> list[str]:
        """Generated ids as text, one printable line each (:func:`au_llm.explain.printable`)."""
        assert self.tokenizer is not None, "a reader without a prompt has no text"
        return [printable(self.tokenizer.decode(list(ids))) for ids in sequences]

    def parse(self, fmt: str, texts: Sequence[str]) -> list[ParsedAnswer]:
        """Answers of format ``fmt`` read back into AU decisions (strictly, never raising)."""
        return [parse_answer(fmt, self.aus, text) for text in texts]

    def to_dict(self) -> dict[str, Any]:
        """The ids the processor gives the model (a checkpoint records them)."""
        data: dict[str, Any] = {
            "chat_template": self.chat_template,
            "prompt_ids": None if self.prompt_ids is None else self.prompt_ids.tolist(),
            "instructions": {name: ids.tolist() for name, ids in self._instructions.items()},
        }
        if self.query_ids:
            data["au_queries"] = [ids.tolist() for ids in self.query_ids]
        return data
