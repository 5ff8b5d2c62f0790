import ast
from pathlib import Path

import pytest
import torch

import au_llm.model.modeling_au_llm as modeling
from au_llm.answers import ANSWER_FORMATS, parse_answer, target_answer
from au_llm.model.engine import AnswerTrie
from au_llm.model.llm import ByteTokenizer
from au_llm.model.processing_au_llm import AULLMProcessor, split_prompt
from au_llm.model.spec import ModelSpec
from au_llm.model.visual_slots import VISUAL_TOKEN_ID
from tests.model import tiny_model_config

AUS = (1, 4, 12)
LABELS = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1.0]])
TEXT_MODULES = ("au_llm.answers", "au_llm.explain", "au_llm.model.processing_au_llm")


def _processor(formats=("list", "yesno", "json", "names"), explain: bool = False, **llm):
    cfg = tiny_model_config(**llm)
    cfg.head, cfg.text.formats = "both", list(formats)
    cfg.explain = explain
    return AULLMProcessor.from_spec(ModelSpec(cfg, AUS, 1, 6, 64))


def test_the_model_file_imports_no_text_module_and_no_tokenizer():
    tree = ast.parse(Path(modeling.__file__).read_text(encoding="utf-8"))
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
    assert imported, "the parse must see the model file's imports"
    text = [name for name in imported if name.startswith(TEXT_MODULES)]
    tokenizers = [name for name in imported if "tokenizer" in name.lower()]
    assert not text and not tokenizers, text + tokenizers


def test_prompt_ids_put_the_visual_token_after_the_prompt_or_at_its_placeholders():
    processor = _processor()
    prompt = processor.tokenizer.encode(tiny_model_config().llm.prompt)
    assert processor.prompt_ids.tolist() == [*prompt, VISUAL_TOKEN_ID]
    placed = _processor(prompt="a <video> b <video>", n_visual_tokens=2)
    encode = ByteTokenizer(512).encode
    expected = [*encode("a"), VISUAL_TOKEN_ID, *encode("b", False), VISUAL_TOKEN_ID]
    assert placed.prompt_ids.tolist() == expected
    with pytest.raises(ValueError, match="2 '<video>' placeholder.*n_visual_tokens = 1"):
        _processor(prompt="a <video> b <video> c")
    assert split_prompt("x <video> y", "<video>", 1) == ["x", "y"]


def test_answer_batch_masks_the_instruction_and_the_padding_and_ends_each_answer():
    processor = _processor()
    formats = ["list", "yesno", "json"]
    ids, targets = processor.answer_batch(LABELS, formats)
    eos = processor.eos_id
    assert ids.shape == targets.shape and ids.dtype == targets.dtype == torch.long
    for row, fmt in enumerate(formats):
        instruction = processor.instruction_ids(fmt).tolist()
        answer = processor.tokenizer.encode(processor.answer_texts(LABELS, formats)[row], False)
        length = len(instruction) + len(answer) + 1
        assert ids[row, : len(instruction)].tolist() == instruction
        assert ids[row, len(instruction) : length].tolist() == [*answer, eos]
        assert (ids[row, length:] == eos).all()  # right padding with the end token
        assert (targets[row, : len(instruction)] == -100).all()
        assert targets[row, len(instruction) : length].tolist() == [*answer, eos]
        assert (targets[row, length:] == -100).all()
    assert ids.shape[1] == max(
        len(processor.instruction_ids(f)) + len(processor.tokenizer.encode(t, False)) + 1
        for f, t in zip(formats, processor.answer_texts(LABELS, formats), strict=True)
    )


@pytest.mark.parametrize("fmt", ANSWER_FORMATS)
def test_targets_decode_and_parse_back_to_their_labels(fmt):
    processor = _processor()
    _, targets = processor.answer_batch(LABELS, [fmt] * len(LABELS))
    answers = [[t for t in row.tolist() if t != -100][:-1] for row in targets]
    texts = processor.decode(answers)
    present = [[1, 12], [], [1, 4, 12]]
    assert texts == [target_answer(fmt, AUS, p) for p in present]
    assert [sorted(p.present) for p in processor.parse(fmt, texts)] == present


def test_explanation_batch_and_instructions_follow_the_model_config():
    meta = {"dataset": "casme2", "subject": "s1", "clip": "c1", "aus": "1+4", "au_raw": "L1+4"}
    processor = _processor(formats=("list",), explain=True)
    ids, targets = processor.explanation_batch([meta], step=2)
    text = processor.decode([[t for t in targets[0].tolist() if t != -100][:-1]])[0]
    assert text.startswith("AU1, ") and "AU4" in text and "left" in text
    assert ids.shape == targets.shape
    with pytest.raises(ValueError, match="no instruction 'yesno'"):
        processor.instruction_ids("yesno")
    with pytest.raises(ValueError, match="no instruction 'explain'"):
        _processor(formats=("list",)).instruction_ids("explain")


def walk(trie: AnswerTrie, eos: int) -> list[list[int]]:
    """Every path of the trie from the root to an end token."""
    paths, stack = [], [([], trie.root)]
    while stack:
        prefix, node = stack.pop()
        for token, child in node.items():
            if token == eos:
                paths.append(prefix)
            else:
                stack.append(([*prefix, token], child))
    return paths


@pytest.mark.parametrize("fmt", ["list", "yesno", "json", "names"])
def test_the_answer_trie_holds_one_parseable_answer_per_au_subset(fmt):
    processor = _processor()
    answers = processor.decode(walk(processor.answer_trie(fmt), processor.eos_id))
    assert len(answers) == 8
    parsed = {tuple(sorted(parse_answer(fmt, AUS, text).present)) for text in answers}
    assert len(parsed) == 8 and () in parsed and AUS in parsed
    with pytest.raises(ValueError, match="too many answers"):
        processor.answer_trie(fmt, max_answers=4)


def test_without_an_llm_the_processor_has_no_text():
    processor = _processor(reader="none", formats=("list",))
    assert processor.tokenizer is None and processor.prompt_ids is None
    assert processor.to_dict() == {"chat_template": False, "prompt_ids": None, "instructions": {}}


def test_the_tiny_llm_has_no_chat_template_to_switch_on():
    assert not _processor().chat_template
    with pytest.raises(ValueError, match="chat_template = on.*has no chat template"):
        cfg = tiny_model_config()
        cfg.llm.chat_template = "on"
        AULLMProcessor.from_spec(ModelSpec(cfg, AUS, 1, 6, 64))
