import copy

import pytest
import torch
from torch.nn.functional import cross_entropy

from au_llm.config import GenerationConfig
from au_llm.explain import describe_clip
from au_llm.inference import clip_outputs
from au_llm.losses import build_loss
from au_llm.model.checkpoint import build_model
from au_llm.training import LossWeights, batch_loss
from tests.model import (
    FORWARD_TERMS,
    clips,
    float64_copy,
    one_torch_thread,
    tiny_model_config,
    tiny_spec,
)
from tests.tolerance import assert_as_accurate

META = {
    "dataset": ["casme2", "casme2"],
    "subject": ["sub01", "sub02"],
    "clip": ["EP01", "EP02"],
    "au_raw": ["L1+4", "2C"],
    "aus": ["1+4", "2"],
    "emotion": ["surprise", ""],
}


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def _model(explain: bool = True, head: str = "linear"):
    cfg = tiny_model_config()
    cfg.llm.tiny.init_std = 0.5
    cfg.head = head
    cfg.text.formats = ["list"]
    cfg.explain = explain
    return build_model(tiny_spec(cfg, 3), seed=0)


def test_explanation_instruction_only_when_trained_with_explanations():
    assert len(_model()[1].instruction_ids("explain")) > 0
    with pytest.raises(ValueError, match="no instruction 'explain'"):
        _model(explain=False)[1].instruction_ids("explain")
    assert len(_model(head="both")[1].instruction_ids("list")) > 0


def test_explanation_loss_is_added_to_the_au_loss_from_the_same_visual_token():
    model, processor = _model()
    model.eval()
    x, labels = clips(2), torch.tensor([[1, 0, 1], [0, 1, 0.0]])
    loss_fn = build_loss(labels.numpy())
    with torch.no_grad():
        weights = LossWeights(explain=0.5)
        loss = batch_loss(model, processor, x, labels, loss_fn, 3, meta=META, weights=weights)
        texts = [describe_clip({k: v[i] for k, v in META.items()}, 3) for i in range(2)]
        ids, targets = processor.teacher_forcing(["explain", "explain"], texts)
        au_logits, lm_logits = model.forward_text_tokens(model.get_visual_tokens(x), ids)
        text_loss = cross_entropy(lm_logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        expected = 0.5 * text_loss + loss_fn(au_logits.float(), labels)
        exact_model = float64_copy(model)
        exact_au, exact_lm = exact_model.forward_text_tokens(
            exact_model.get_visual_tokens(x.double()), ids
        )
        exact_text = cross_entropy(exact_lm.flatten(0, 1), targets.flatten(), ignore_index=-100)
        exact = 0.5 * exact_text + copy.deepcopy(loss_fn).double()(exact_au, labels.double())
        assert_as_accurate(au_logits, model(x), exact_au, terms=FORWARD_TERMS, name="AU logits")
    assert_as_accurate(loss, expected, exact, terms=FORWARD_TERMS, name="loss")
    prompt = len(processor.instruction_ids("explain"))
    assert (targets[:, :prompt] == -100).all()
    first = processor.tokenizer.decode(targets[0][targets[0] >= 0].tolist())
    assert first.startswith(texts[0])


def test_explanations_need_the_batch_meta():
    model, processor = _model()
    labels = torch.zeros(2, 3)
    loss_fn = build_loss(labels.numpy())
    with pytest.raises(ValueError, match="meta"):
        batch_loss(model, processor, clips(2), labels, loss_fn, 0)


def test_explanation_loss_decreases_on_a_tiny_overfit_set():
    model, processor = _model(head="both")
    x, labels = clips(2), torch.tensor([[1, 0, 1], [0, 1, 0.0]])
    loss_fn = build_loss(labels.numpy())
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=3e-2)
    losses = []
    for _ in range(25):
        optimizer.zero_grad()
        loss = batch_loss(model, processor, x, labels, loss_fn, 0, meta=META)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


def test_generated_explanations_are_deterministic_and_printable():
    model, processor = _model()
    model.eval()
    options = {
        "prompt_cache": model.prompt_cache(),
        "explain": True,
        "generation": GenerationConfig(max_explanation_tokens=24),
    }
    first = clip_outputs(model, processor, clips(2), **options).explanations
    assert first == clip_outputs(model, processor, clips(2), **options).explanations
    assert all(text == " ".join(text.split()) and text.isprintable() for text in first)
    untrained, untrained_processor = _model(explain=False)
    with pytest.raises(ValueError, match="not trained with explanations"):
        clip_outputs(untrained.eval(), untrained_processor, clips(1), explain=True)
