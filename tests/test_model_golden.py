"""The composed golden model against the float reference, and the accuracy targets."""

import numpy as np
import pytest

from model import golden, reference
from model.accuracy import FLIP_MARGIN, compare, main
from model.config import MICRO
from model.machine import ZCU102
from model.numerics import DEFAULT, EDGEMOE
from model.quantize import quantize
from model.weights import synthetic, synthetic_image


@pytest.fixture(scope="module")
def micro():
    w = synthetic(MICRO, seed=5)
    img = synthetic_image(MICRO, seed=5)
    return w, img, reference.run(w, img, 1)


@pytest.mark.parametrize("numerics, bound", [(DEFAULT, 1e-6), (EDGEMOE, 1e-3)])
def test_micro_golden_tracks_reference(micro, numerics, bound):
    w, img, ref = micro
    g = golden.run(w, img, 1, numerics=numerics, routes=ref.experts)
    assert ((g.to_float(g.output) - ref.output) ** 2).mean() < bound


def test_routes_held_replace_choices_only(micro):
    w, img, ref = micro
    qm = quantize(w, DEFAULT)
    forced = {1: np.tile([3, 2], (MICRO.tokens, 1))}
    g = golden.run(qm, img, 1, routes=forced)
    assert (g.experts[1] == forced[1]).all()
    free = golden.run(qm, img, 1)
    assert (g.gate_probs[1] == free.gate_probs[1]).all()
    assert not (g.output == free.output).all()


def test_golden_is_deterministic_and_task_dependent(micro):
    w, img, _ = micro
    qm = quantize(w, DEFAULT)
    a, b = golden.forward(qm, img, 0), golden.forward(qm, img, 0)
    assert (a == b).all() and a.dtype == np.int64 and a.shape == (MICRO.tokens, MICRO.dim)
    assert not (golden.forward(qm, img, 1) == a).all()
    with pytest.raises(ValueError, match="task"):
        golden.forward(qm, img, 2)


def test_attention_slots_change_only_the_last_bits(micro):
    w, img, _ = micro
    qm = quantize(w, DEFAULT)
    a = golden.forward(qm, img, 0, machine=ZCU102.replace(attention_slots=1))
    b = golden.forward(qm, img, 0, machine=ZCU102.replace(attention_slots=4))
    assert np.abs(a - b).max() < 1 << 6


def test_compare_reports_both_modes(micro):
    w, img, _ = micro
    r = compare(w, img, 1, DEFAULT)
    assert r["held"]["final"]["mse"] < 1e-6 and r["free"]["flips"] == 0
    assert len(r["held"]["blocks"]) == MICRO.depth


def test_accuracy_command_rejects_a_bad_task(capsys):
    with pytest.raises(SystemExit):
        main(["--task", "7"])
    assert "--task must be in 0..1" in capsys.readouterr().err


def test_accuracy_targets_on_the_published_weights(edge_moe):
    """Default preset: routing held MSE <= 1.5e-4 and a tenth of upstream's; no clean flip
    where the reference's margin exceeds 2e-3."""
    w, img = edge_moe
    ref = reference.run(w, img, 0)
    ours = compare(w, img, 0, DEFAULT, ref_trace=ref)
    upstream = compare(w, img, 0, EDGEMOE, ref_trace=ref)
    assert ours["held"]["final"]["mse"] <= 1.5e-4
    assert ours["held"]["final"]["mse"] <= upstream["held"]["final"]["mse"] / 10
    assert ours["free"]["max_margin_of_clean_flip"] <= FLIP_MARGIN
    assert not ours["saturated_parameters"]
