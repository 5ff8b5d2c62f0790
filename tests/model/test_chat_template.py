"""``model.llm.chat_template`` on local Qwen2/Llama folders whose tokenizer has a chat template."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from au_llm.config import LLMConfig
from au_llm.inference import answer_tries, clip_outputs, inference_prompt_cache
from au_llm.losses import build_loss
from au_llm.model.checkpoint import build_model, load_checkpoint, save_checkpoint
from au_llm.model.visual_slots import VISUAL_TOKEN_ID
from au_llm.training import batch_loss, make_optimizer
from tests.model import (
    CHAT_SPECIAL,
    CHAT_TEMPLATE,
    clips,
    one_torch_thread,
    save_local_hf_model,
    tiny_model_config,
    tiny_spec,
)


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def _spec(folder: Path, chat_template: str = "auto"):
    cfg = tiny_model_config()
    cfg.llm = LLMConfig(
        source="path", path=str(folder), lora=cfg.llm.lora, chat_template=chat_template
    )
    cfg.head, cfg.text.formats = "both", ["list"]
    return tiny_spec(cfg, 3)


def _special_ids(processor) -> dict[str, int]:
    return {token: processor.tokenizer.encode(token, False)[0] for token in CHAT_SPECIAL}


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_a_templated_folder_trains_answers_and_round_trips(tmp_path: Path, arch: str) -> None:
    folder = tmp_path / arch
    save_local_hf_model(folder, layers=1, arch=arch, chat_template=CHAT_TEMPLATE)
    model, processor = build_model(_spec(folder), seed=0)
    special = _special_ids(processor)
    prompt, instruction = processor.prompt_ids.tolist(), processor.instruction_ids("list").tolist()
    # the user turn opens the prompt; the instruction closes it and opens the assistant's turn
    assert processor.chat_template and prompt[0] == special["<|user|>"]
    assert prompt[-1] == VISUAL_TOKEN_ID and special["<|end|>"] not in prompt
    assert instruction[-2:] == [special["<|end|>"], special["<|assistant|>"]]
    params = list(model.trainable_parameters())
    optimizer = make_optimizer(params, name="adamw", lr=1e-2, weight_decay=0.01)
    labels = torch.tensor([[1, 0, 1], [0, 1, 0.0]])
    loss_fn = build_loss(labels.numpy())
    losses = []
    for step in range(3):
        optimizer.zero_grad()
        loss = batch_loss(model, processor, clips(2), labels, loss_fn, step)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    model.eval()
    x = clips(2, seed=1)
    cache = inference_prompt_cache(model)
    free = clip_outputs(model, processor, x, prompt_cache=cache, answers=True)
    tries = answer_tries(model, processor, constrained=True)
    tied = clip_outputs(model, processor, x, prompt_cache=cache, tries=tries, answers=True)
    assert all(processor.parse("list", tied.answers["list"])[i].ok for i in range(2))
    save_checkpoint(model, processor, {}, tmp_path / "ckpt")
    loaded, loaded_processor, _ = load_checkpoint(tmp_path / "ckpt")
    assert loaded_processor.to_dict() == processor.to_dict()
    cache = inference_prompt_cache(loaded)
    again = clip_outputs(loaded, loaded_processor, x, prompt_cache=cache, answers=True)
    assert (again.probs == free.probs).all() and again.answers == free.answers


def test_off_keeps_the_plain_prompt_and_a_changed_template_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "llm"
    save_local_hf_model(folder, layers=1, chat_template=CHAT_TEMPLATE)
    plain, templated = build_model(_spec(folder, "off"), 0), build_model(_spec(folder, "on"), 0)
    special = set(_special_ids(templated[1]).values())
    assert not plain[1].chat_template and templated[1].chat_template
    assert not special & set(plain[1].prompt_ids.tolist())
    assert not special & set(plain[1].instruction_ids("list").tolist())
    assert (
        plain[1].instruction_ids("list").tolist() != templated[1].instruction_ids("list").tolist()
    )
    save_checkpoint(*templated, {}, tmp_path / "on")
    save_checkpoint(*build_model(_spec(folder, "auto"), 0), {}, tmp_path / "auto")
    # the folder's tokenizer loses its template (same weights): the prompt ids change
    shutil.rmtree(folder)
    save_local_hf_model(folder, layers=1)
    with pytest.raises(ValueError, match="chat_template = on.*has no chat template"):
        load_checkpoint(tmp_path / "on")
    with pytest.raises(ValueError, match="other prompt or instruction ids"):
        load_checkpoint(tmp_path / "auto")


def test_auto_without_a_template_keeps_the_plain_prompt(tmp_path: Path) -> None:
    folder = tmp_path / "llm"
    save_local_hf_model(folder, layers=1)
    _, processor = build_model(_spec(folder), 0)
    assert not processor.chat_template
    prompt = processor.tokenizer.encode(tiny_model_config().llm.prompt)
    assert processor.prompt_ids.tolist() == [*prompt, VISUAL_TOKEN_ID]
