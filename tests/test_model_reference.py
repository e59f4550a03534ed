"""The float reference on small cases that can be checked by hand."""

import math

import numpy as np
import pytest

from model import reference as R
from model.config import MICRO
from model.weights import Weights, synthetic, synthetic_image, tensor_shapes


def test_layer_norm_by_hand():
    y = R.layer_norm(np.array([[1.0, 2.0, 3.0]]), np.ones(3), np.zeros(3), 0.0)
    np.testing.assert_allclose(y, [[-math.sqrt(1.5), 0.0, math.sqrt(1.5)]])


def test_gelu_by_hand():
    np.testing.assert_allclose(R.gelu(np.array([0.0, 1.0, -1.0])),
                               [0.0, 0.8413447460685429, -0.15865525393145707])


def test_softmax_and_top_k_ties():
    np.testing.assert_allclose(R.softmax(np.array([0.0, math.log(3.0)])), [0.25, 0.75])
    assert R.top_k(np.array([[1.0, 3.0, 3.0, 0.0]]), 2).tolist() == [[1, 2]]


def test_patchify_order():
    img = np.arange(2 * 4 * 6).reshape(2, 4, 6)
    p = R.patchify(img, 2)
    assert p.shape == (6, 8)
    # second patch: row 0 of patches, column 1; channel 0 then channel 1, each row-major
    assert p[1].tolist() == [2, 3, 8, 9, 26, 27, 32, 33]


def test_attention_with_equal_scores_averages_values():
    q = np.zeros((3, 4))
    v = np.arange(12.0).reshape(3, 4)
    np.testing.assert_allclose(R.attention(q, q, v, heads=2), np.tile(v.mean(0), (3, 1)))


def _zero_model(**nonzero):
    w = {n: np.zeros(s) for n, s in tensor_shapes(MICRO).items()}
    w.update(nonzero)
    return Weights(MICRO, w)


def test_all_zero_model_passes_position_embeddings_through():
    pos = np.random.default_rng(0).normal(size=(17, 32))
    out = R.forward(_zero_model(pos_embed=pos), synthetic_image(MICRO), 0)
    np.testing.assert_allclose(out, pos)


def test_biases_reach_the_output_by_hand():
    # Zero gates give every expert 1/4; ties pick experts 0 and 1.
    fc2 = np.full(32, 0.5)
    experts_b = np.zeros((4, 32))
    experts_b[0], experts_b[1], experts_b[2] = 1.0, 2.0, 100.0
    w = _zero_model(l0_fc2_bias=fc2, l1_h4toh_bias=experts_b, l0_attn_proj_bias=np.full(32, 0.25))
    trace = R.run(w, synthetic_image(MICRO), 1)
    np.testing.assert_allclose(trace.output, 0.25 + 0.5 + (1.0 + 2.0) / 4)
    assert (trace.experts[1] == [0, 1]).all()
    np.testing.assert_allclose(trace.gate_probs[1], 0.25)


def test_patch_embedding_is_a_convolution():
    w = synthetic(MICRO, 2)
    img = synthetic_image(MICRO, 2)
    trace = R.run(w, img, 0)
    conv = w["patch_embed_weight"]
    x = img / 256
    by_hand = (x[:, 4:8, 8:12] * conv[5]).sum() + w["patch_embed_bias"][5] + w["pos_embed"][1 + 6, 5]
    assert trace.embedded[1 + 6, 5] == pytest.approx(by_hand)


def test_task_out_of_range():
    with pytest.raises(ValueError, match="task must be an integer in 0..1"):
        R.forward(synthetic(MICRO), synthetic_image(MICRO), 2)
