import pytest
import torch

from au_llm.answers import parse_answer
from au_llm.losses import build_loss
from au_llm.model.checkpoint import build_model
from au_llm.model.engine import generate_answers
from au_llm.model.precision import model_autocast
from au_llm.training import batch_loss
from tests.model import (
    FORWARD_TERMS,
    clips,
    float64_copy,
    one_torch_thread,
    tiny_model_config,
    tiny_spec,
)
from tests.tolerance import assert_as_accurate, assert_clear_choice


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def _text_model(head: str = "both", formats=("list", "yesno"), seed: int = 0):
    cfg = tiny_model_config()
    cfg.llm.tiny.init_std = 0.5  # sharp enough logits for a 32-wide random LM to learn text
    cfg.head = head
    cfg.text.formats = list(formats)
    return build_model(tiny_spec(cfg, 3), seed=seed)


def _reference_greedy(model, processor, clip, fmt, steps):
    """Step-by-step greedy decoding with the full causal LM and no cache.

    Every choice is clear (no near tie of the two best logits), so the batched decoder, whose
    kernels round differently, must make the same choices on any CPU.
    """
    embed = model.llm.get_input_embeddings()
    prefix = embed(model.prompt_ids[: model._segment_lengths[0]]).unsqueeze(0)
    with torch.no_grad():
        visual = model.suffix_embeds(model.get_visual_tokens(clip))
        instruction = embed(processor.instruction_ids(fmt)).unsqueeze(0)
        sequence = torch.cat([prefix, visual, instruction], dim=1)
        out = []
        for _ in range(steps):
            logits = model.llm(inputs_embeds=sequence).logits[:, -1]
            assert_clear_choice(logits, terms=FORWARD_TERMS, name=f"token {len(out)}")
            token = int(logits.argmax(-1))
            if token == processor.eos_id:
                break
            out.append(token)
            sequence = torch.cat([sequence, embed(torch.tensor([[token]]))], dim=1)
    return out


def test_generation_equals_step_by_step_greedy_without_cache():
    model, processor = _text_model(formats=("list",))
    model.eval()
    x = clips(3)
    cache = model.prompt_cache()
    instruction, eos = processor.instruction_ids("list"), processor.eos_id
    tokens = model.get_visual_tokens(x)
    batched = generate_answers(
        model, tokens, instruction, eos_id=eos, prompt_cache=cache, max_new_tokens=12
    )
    assert any(batched), "the random model must produce some tokens for the test to mean anything"
    for i in range(3):
        assert batched[i] == _reference_greedy(model, processor, x[i : i + 1], "list", 12)


def test_prefill_and_decode_step_give_the_full_causal_lms_next_token_logits(precision):
    cfg = tiny_model_config()
    cfg.llm.tiny.init_std, cfg.head, cfg.text.formats = 0.5, "both", ["list"]
    model, processor = build_model(tiny_spec(cfg, 3), 0, "cpu", precision)
    model.eval()
    instruction, embed = processor.instruction_ids("list"), model.llm.get_input_embeddings()
    prefix = embed(model.prompt_ids[: model._segment_lengths[0]]).unsqueeze(0).expand(2, -1, -1)
    # bfloat16 rounds the cached and the full pass apart: 8 bits of mantissa
    relative = {"fp32": 1e-4, "bf16": 5e-2}[precision]
    with torch.no_grad(), model_autocast(model):
        tokens = model.get_visual_tokens(clips(2))
        cache, logits = model.prefill(tokens, instruction, prompt_cache=model.prompt_cache())
        text = embed(instruction).unsqueeze(0).expand(2, -1, -1)
        sequence = torch.cat([prefix, model.suffix_embeds(tokens), text], dim=1)
        sequence = sequence.to(embed.weight.dtype)
        for _ in range(3):
            full = model.llm(inputs_embeds=sequence).logits[:, -1].double()
            scale = relative * max(1.0, float(full.abs().max()))
            assert logits.dtype == torch.float32 and logits.shape == full.shape
            torch.testing.assert_close(logits.double(), full, rtol=0, atol=scale)
            chosen = full.argmax(-1)
            cache, logits = model.decode_step(chosen, cache)
            sequence = torch.cat([sequence, embed(chosen).unsqueeze(1)], dim=1)


def test_text_loss_decreases_on_a_tiny_overfit_set():
    model, processor = _text_model()
    x, labels = clips(4), torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 1.0]])
    loss_fn = build_loss(labels.numpy())
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=3e-2)
    losses = []
    for step in range(40):
        optimizer.zero_grad()
        loss = batch_loss(model, processor, x, labels, loss_fn, step % 2)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


def test_both_heads_share_one_pass_and_the_linear_head_is_unchanged():
    model, processor = _text_model()
    model.eval()
    x, labels = clips(2), torch.tensor([[1, 0, 1], [0, 0, 0.0]])
    ids, targets = processor.answer_batch(labels, ["list", "yesno"])
    assert (targets[0] == -100).sum() >= len(processor.instruction_ids("list"))
    exact_model = float64_copy(model)
    with torch.no_grad():
        au_logits, lm_logits = model.forward_text_tokens(model.get_visual_tokens(x), ids)
        exact_au, exact_lm = exact_model.forward_text_tokens(
            exact_model.get_visual_tokens(x.double()), ids
        )
        assert_as_accurate(au_logits, model(x), exact_au, terms=FORWARD_TERMS, name="AU logits")
    assert lm_logits.shape == (*ids.shape, model.cfg.llm.tiny.vocab_size)
    keep = targets != -100
    with torch.no_grad():
        _, kept = model.forward_text_tokens(model.get_visual_tokens(x), ids, keep)
    assert_as_accurate(kept, lm_logits[keep], exact_lm[keep], terms=FORWARD_TERMS, name="kept")
    answer = [t for t in targets[0].tolist() if t != -100][:-1]
    assert processor.decode([answer]) == ["AU1, AU3"]


def test_constrained_decoding_always_parses():
    model, processor = _text_model(formats=("list", "json"))
    model.eval()
    x = clips(4)
    tokens = model.get_visual_tokens(x)
    for fmt in ("list", "json"):
        instruction, eos = processor.instruction_ids(fmt), processor.eos_id
        options = {"eos_id": eos, "prompt_cache": model.prompt_cache()}
        free = generate_answers(model, tokens, instruction, max_new_tokens=40, **options)
        texts = processor.decode(free)
        assert not all(parse_answer(fmt, model.spec.aus, t).ok for t in texts)  # random model
        trie = processor.answer_trie(fmt)
        tied = generate_answers(model, tokens, instruction, max_new_tokens=80, trie=trie, **options)
        for text in processor.decode(tied):
            assert parse_answer(fmt, model.spec.aus, text).ok
