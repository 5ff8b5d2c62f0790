import pytest

from au_llm.param_groups import batch_formats, parameter_groups
from au_llm.training import make_optimizer
from tests.model import both_heads_model, one_torch_thread


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def test_parameter_groups_cover_every_trainable_parameter_once_with_their_rates():
    model = both_heads_model(skip=True)
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


def test_format_weights_must_match_the_formats():
    from au_llm.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="format_weights"):
        load_config(None, ["model.text.formats=[list,json]", "train.format_weights=[1.0]"])
    with pytest.raises(ConfigError, match="first_format_epochs"):
        load_config(None, ["train.first_format_epochs=-1"])
