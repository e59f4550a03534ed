# amaranth: UnusedElaboratable=no
"""The reordered attention engine in RTL against model.units.attention: micro at full rate and under
random idles and back-pressure, P from 1 to 8 and fewer tokens than slots; m3vit-tiny block 0
with the published weights when present."""

import pytest

from hw.units.attention import AttentionEngine
from model.weights import shared_weights_dir
from sim.benches.attention import make_design
from sim.runner import cocotb_tests

MICRO = dict(model="micro", lanes=4)

test_micro = cocotb_tests(
    "sim.benches.attention", lambda **c: make_design(c),
    configs=[MICRO, dict(MICRO, idle=0.3, backpressure=0.5), dict(MICRO, slots=1),
             dict(MICRO, slots=3, backpressure=0.3), dict(MICRO, slots=8, lanes=8)])

if shared_weights_dir() is not None:
    test_m3vit_tiny_block0 = cocotb_tests(
        "sim.benches.attention", lambda **c: make_design(c),
        configs=[dict(model="m3vit-tiny", weights="edge-moe", lanes=16)],
        tests=["test_block0"])
else:
    @pytest.mark.skip(reason="Edge-MoE weights not present (../shared/edge-moe/weights)")
    def test_m3vit_tiny_block0():
        pass


@pytest.mark.parametrize("kwargs, message", [
    (dict(dim=192, heads=5, max_tokens=129), "not divisible by 5 heads"),
    (dict(dim=192, heads=3, max_tokens=129, lanes=48), "multiple of lanes"),
    (dict(dim=32, heads=2, max_tokens=300, lanes=4), "at most 255"),
    (dict(dim=32, heads=0, max_tokens=17, lanes=4), "heads must be a positive integer"),
    (dict(dim=32, heads=2, max_tokens=17, lanes=4, slots=0), "slots must be a positive"),
])
def test_bad_build_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AttentionEngine(**kwargs)


def test_command_checks_tokens():
    engine = AttentionEngine(dim=32, heads=2, max_tokens=17, lanes=4)
    assert engine.command(tokens=17) == {"tokens": 17}
    for tokens in (0, 18, 2.0):
        with pytest.raises(ValueError, match="tokens must be an integer in 1..17"):
            engine.command(tokens=tokens)
