import pytest
import torch

from au_llm.config import GenerationConfig
from au_llm.model.engine import generate_answers, repeated_tail
from au_llm.model.processing_au_llm import AULLMProcessor
from au_llm.param_groups import batch_formats, parameter_groups
from au_llm.training import make_optimizer
from tests.model import build_tiny, clips, one_torch_thread, tiny_model_config, tiny_spec


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def _model(skip: bool = False):
    cfg = tiny_model_config()
    cfg.head = "both"
    cfg.text.formats = ["list", "yesno"]
    cfg.skip_head = skip
    return build_tiny(tiny_spec(cfg, 3), seed=0)


def test_parameter_groups_cover_every_trainable_parameter_once_with_their_rates():
    model = _model(skip=True)
    groups = parameter_groups(model, lr=1e-3, lr_lora=2e-4, lr_head=5e-3)
    names = [g["name"] for g in groups]
    assert names == ["backbone", "projector", "head", "reader"]
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.trainable_parameters())
    rates = {g["name"]: g["lr"] for g in groups}
    assert rates == {"backbone": 1e-3, "projector": 1e-3, "head": 5e-3, "reader": 2e-4}
    assert any(p is model.skip.weight for p in groups[2]["params"])
    optimizer = make_optimizer(groups, name="adamw", lr=1e-3, weight_decay=0.01)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-3, 5e-3, 2e-4]


def test_formats_in_turn_or_one_drawn_per_step():
    formats = ["list", "yesno", "json"]
    assert batch_formats(formats, [], 1, 4) == ["yesno", "json", "list", "yesno"]
    drawn = [batch_formats(formats, [0.8, 0.2, 0.0], step, 4) for step in range(200)]
    assert all(len(set(batch)) == 1 for batch in drawn)
    firsts = [batch[0] for batch in drawn]
    assert "json" not in firsts
    assert 0.7 < firsts.count("list") / len(firsts) < 0.9
    assert drawn[7] == batch_formats(formats, [0.8, 0.2, 0.0], 7, 4)  # seeded by the step
    for weights in ([], [0.0, 1.0, 1.0]):
        assert batch_formats(formats, weights, 5, 4, first_only=True) == ["list"] * 4


def test_skip_head_adds_a_linear_map_of_the_visual_token():
    model = _model(skip=True).eval()
    plain = _model(skip=False).eval()
    x = clips(2)
    with torch.no_grad():
        tokens = model.get_visual_tokens(x)
        with_skip = model(x)
        model.skip.weight.zero_()
        model.skip.bias.zero_()
        without = model(x)
    assert not torch.allclose(with_skip, without)
    assert plain.skip is None and "skip.weight" not in plain.trainable_state_dict()
    assert "skip.weight" in model.trainable_state_dict()
    with torch.no_grad():
        model.skip.bias.fill_(1.0)
        assert torch.allclose(model.score_tokens(tokens), without + 1.0, atol=1e-5)


def test_repeated_tail_finds_loops_only():
    assert repeated_tail([5, 1, 2, 3, 1, 2, 3], 3) == 3
    assert repeated_tail([5, 1, 2, 3, 1, 2, 3], 4) == 0
    assert repeated_tail([1, 2, 3, 4, 9, 1, 2, 3, 4], 2) == 0  # repeated, but not in a row
    assert repeated_tail([7, 7], 1) == 1


def test_generation_stops_at_a_loop_and_keeps_the_text_before_it():
    model = _model().eval()
    processor = AULLMProcessor.from_spec(model.spec)
    instruction, eos = processor.instruction_ids("list"), processor.eos_id
    torch.manual_seed(0)
    with torch.no_grad():
        tokens = model.get_visual_tokens(clips(4))
        cache = model.prompt_cache()
        options = {"eos_id": eos, "prompt_cache": cache, "max_new_tokens": 40}
        free = generate_answers(model, tokens, instruction, **options)
        stopped = generate_answers(model, tokens, instruction, **options, stop_repeat=1)
    assert GenerationConfig().stop_repeat > 0
    looped = [
        i
        for i, seq in enumerate(free)
        if any(repeated_tail(seq[:k], 1) for k in range(2, len(seq) + 1))
    ]
    assert looped, "the random model must loop for the test to mean anything"
    for seq, short in zip(free, stopped, strict=True):
        assert seq[: len(short)] == short
        assert not any(repeated_tail(short[:k], 1) for k in range(2, len(short) + 1))
    assert all(len(stopped[i]) < len(free[i]) for i in looped)


def test_format_weights_must_match_the_formats():
    from au_llm.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="format_weights"):
        load_config(None, ["model.text.formats=[list,json]", "train.format_weights=[1.0]"])
    with pytest.raises(ConfigError, match="first_format_epochs"):
        load_config(None, ["train.first_format_epochs=-1"])
