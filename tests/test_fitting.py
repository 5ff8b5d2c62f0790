"""The inner validation split of a fold's training subjects."""

import pytest

from au_llm.data.manifest import read_manifest
from au_llm.fitting import inner_split


def test_inner_split_holds_out_whole_training_subjects(tiny_data):
    manifest = read_manifest(tiny_data.casme2)
    train, val = inner_split(manifest, 0.34, seed=3)
    assert len(val) and len(train)
    assert not set(train["subject"]) & set(val["subject"])
    assert len(train) + len(val) == len(manifest)
    train, val = inner_split(manifest, 0.99, seed=3)
    assert train["subject"].nunique() == 1
    one = manifest[manifest["subject"] == manifest["subject"].iloc[0]]
    with pytest.raises(ValueError, match="at least 2 training subjects"):
        inner_split(one, 0.5, seed=0)
