import json

import pytest

from au_llm.config import load_config
from au_llm.model.spec import ModelSpec


def test_a_spec_is_built_from_the_config_sections_and_survives_json():
    cfg = load_config(None, ["preprocess.color=rgb", "preprocess.size=48", "model.head=both"])
    spec = ModelSpec.from_sections(cfg.model, [4, 1, 12], cfg.preprocess, cfg.sampling)
    assert spec.aus == (4, 1, 12) and spec.n_aus == 3
    assert spec.clip_shape == (3, cfg.sampling.frames_per_clip, 48, 48)
    again = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert again.model.head == "both"


def test_a_spec_refuses_missing_fields_bad_models_and_bad_au_lists():
    cfg = load_config(None)
    spec = ModelSpec.from_sections(cfg.model, [1, 2], cfg.preprocess, cfg.sampling)
    data = spec.to_dict()
    with pytest.raises(ValueError, match=r"missing \['size'\]"):
        ModelSpec.from_dict({k: v for k, v in data.items() if k != "size"})
    bad = {**data, "model": {**data["model"], "head": "words"}}
    with pytest.raises(ValueError, match="invalid model configuration.*model.head"):
        ModelSpec.from_dict(bad)
    with pytest.raises(ValueError, match="at least one AU"):
        ModelSpec.from_dict({**data, "aus": []})
    with pytest.raises(ValueError, match="AUs must be unique"):
        ModelSpec.from_dict({**data, "aus": [2, 2]})
