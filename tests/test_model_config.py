import dataclasses

import pytest

from model import config
from model.config import M3VIT_TINY, MICRO, ModelConfig, config_by_name


def test_presets_reachable_from_package():
    assert config.M3VIT_TINY is M3VIT_TINY and config.MICRO is MICRO


def test_m3vit_tiny_dimensions():
    c = M3VIT_TINY
    assert (c.tokens, c.dim, c.heads, c.head_dim, c.depth) == (129, 192, 3, 64, 12)
    assert (c.experts, c.top_k, c.expert_hidden, c.mlp_hidden, c.tasks) == (16, 2, 384, 768, 2)
    assert c.moe_blocks == [1, 3, 5, 7, 9, 11]
    assert c.patch_in == 768


def test_micro_is_small_with_one_dense_and_one_moe_block():
    c = MICRO
    assert c.tokens == 17 and c.depth == 2 and c.moe_blocks == [1]
    assert c.experts == 4 and c.top_k == 2 and c.heads == 2


@pytest.mark.parametrize("change, field, rule", [
    (dict(heads=5), "heads", "divisible by heads"),
    (dict(top_k=17), "top_k", "must not exceed experts"),
    (dict(image_height=100), "image_height", "divisible by patch"),
    (dict(image_width=250), "image_width", "divisible by patch"),
    (dict(dim=0), "dim", "positive integer"),
    (dict(depth=-1), "depth", "positive integer"),
    (dict(experts=2.5), "experts", "positive integer"),
    (dict(ln_eps=0.0), "ln_eps", "positive"),
])
def test_impossible_configurations_name_field_and_rule(change, field, rule):
    with pytest.raises(ValueError, match=rf"{field}.*{rule}"):
        dataclasses.replace(M3VIT_TINY, **change)


def test_config_by_name():
    assert config_by_name("micro") is MICRO
    with pytest.raises(ValueError, match="m3vit-tiny, micro"):
        config_by_name("vit-huge")


def test_model_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        M3VIT_TINY.dim = 3
    assert isinstance(M3VIT_TINY, ModelConfig)
