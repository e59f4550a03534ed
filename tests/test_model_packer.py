"""The host-side packer: layouts the hardware reads."""

import numpy as np
import pytest

from model.config import MICRO
from model.numerics import DEFAULT, Fixed, Quantized
from model.packer import (bias_words, linear_record, linear_weight_tiles, moe_layer_image, planes,
                          tiles)
from model.quantize import quantize
from model.weights import synthetic


def test_tiles_in_compute_order_with_zero_padding():
    w = np.arange(6 * 5).reshape(6, 5)
    t = linear_weight_tiles(w, rows=4, cols=4)
    assert t.shape == (tiles(6, 4) * tiles(5, 4), 4, 4)
    assert t[0][1].tolist() == [5, 6, 7, 8]          # output tile 0: output 1, inputs 0..3
    assert t[1][1].tolist() == [9, 0, 0, 0]          # output 1, input 4, then padding
    assert t[2][1].tolist() == [25, 26, 27, 28]      # output tile 1: output 5
    assert t[2][2].tolist() == [0, 0, 0, 0]          # output 6 is padding


def test_bias_words_fold_the_rounding_half():
    b = Quantized(np.array([1, -2]), Fixed(26, 16))
    assert bias_words(b, 2, 4, acc_frac=31, shift=15).tolist() == [
        [(1 << 15) + (1 << 14), (-2 << 15) + (1 << 14), 1 << 14, 1 << 14]]
    with pytest.raises(ValueError, match="at least 1 bit"):
        bias_words(b, 2, 4, acc_frac=31, shift=0)


def test_linear_record_is_whole_beats():
    w = Quantized(np.ones((3, 5), dtype=np.int64), Fixed(16, 15))
    data, wb, bb, shift = linear_record(w, None, 16, 16, 4, 4)
    assert len(data) == (wb + bb) * 16 and shift == 15


def test_moe_layer_image_checks_block_and_task():
    qm = quantize(synthetic(MICRO), DEFAULT)
    records, fields = moe_layer_image(qm, 1, 1, 4, 4)
    assert len(records) == 1 + MICRO.experts and fields["fc2_offset"] > 0
    with pytest.raises(ValueError, match=r"task must be an integer in 0..1, not 2"):
        moe_layer_image(qm, 1, 2, 4, 4)
    with pytest.raises(ValueError, match="block 0 is not a MoE block"):
        moe_layer_image(qm, 0, 0, 4, 4)


def test_planes_split_each_beat_over_the_ports():
    # Two beats of two 2-byte parts: plane 0 holds the first part of each beat, then plane 1.
    assert planes(bytes(range(8)), 2, 2) == bytes([0, 1, 4, 5, 2, 3, 6, 7])
    assert planes(bytes(range(8)), 1, 8) == bytes(range(8))
    with pytest.raises(ValueError, match="not whole 4-byte beats"):
        planes(bytes(6), 2, 2)
