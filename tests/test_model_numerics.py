import numpy as np
import pytest

from model.numerics import (DEFAULT, EDGEMOE, Fixed, Numerics, bit_length, fit, matmul,
                            numerics_by_name, shift_floor, shift_round)


def test_quantize_rounds_and_counts_saturation():
    f = Fixed(8, 4)
    ints, n = f.quantize([0.03, 0.04, -0.04, 100.0, -100.0, 7.9])
    assert ints.tolist() == [0, 1, -1, 127, -128, 126] and n == 2
    ints, n = f.quantize([0.06, -0.01], rounding="floor")
    assert ints.tolist() == [0, -1] and n == 0
    ints, n = f.quantize([8.0], overflow="wrap")
    assert ints.tolist() == [-128] and n == 1
    with pytest.raises(ValueError, match="NaN"):
        f.quantize([np.nan])
    assert f.to_float(ints).tolist() == [-8.0]


def test_fixed_rejects_bad_width():
    with pytest.raises(ValueError, match="width"):
        Fixed(1, 0)


def test_shift_round_halves_up_and_floor():
    v = np.array([5, -5, 6, -6, 7, -7])
    assert shift_round(v, 1).tolist() == [3, -2, 3, -3, 4, -3]
    assert shift_floor(v, 1).tolist() == [2, -3, 3, -3, 3, -4]
    assert shift_round(v, -2).tolist() == (v * 4).tolist()
    assert shift_round(np.array([5, 5]), np.array([1, 2])).tolist() == [3, 1]


def test_fit_saturates_or_wraps():
    f = Fixed(4, 0)
    assert fit([9, -9, 3], f).tolist() == [7, -8, 3]
    assert fit([9, -9, 3], f, "wrap").tolist() == [-7, 7, 3]


def test_bit_length_matches_python():
    vals = [0, 1, 2, 3, 4, 255, 256, 2 ** 40 - 1, 2 ** 40, 2 ** 52]
    assert bit_length(np.array(vals)).tolist() == [v.bit_length() for v in vals]


def test_matmul_is_exact_on_both_paths():
    rng = np.random.default_rng(0)
    a = rng.integers(-2 ** 25, 2 ** 25, (5, 300))
    b = rng.integers(-2 ** 15, 2 ** 15, (300, 4))
    exact = np.array([[sum(int(x) * int(y) for x, y in zip(r, c)) for c in b.T] for r in a])
    assert (matmul(a, b) == exact).all()
    big = rng.integers(-2 ** 31, 2 ** 31, (3, 300))
    exact = np.array([[sum(int(x) * int(y) for x, y in zip(r, c)) for c in b.T] for r in big])
    assert (matmul(big, b) == exact).all()


def test_finest_format_holds_the_peak():
    assert Numerics.finest(16, [1.038]) == Fixed(16, 14)
    assert Numerics.finest(16, [0.32, -0.1]) == Fixed(16, 16)
    assert Numerics.finest(16, [-0.5]) == Fixed(16, 15)  # symmetric: +0.5 must fit too
    assert Numerics.finest(16, [0.99999]) == Fixed(16, 14)
    assert Numerics.finest(16, [0.0], max_frac=20) == Fixed(16, 20)


def test_default_preset_fits_one_dsp48e2_per_multiply():
    assert DEFAULT.act.width <= 27 and DEFAULT.query.width <= 18
    assert DEFAULT.weight_width <= 18 and DEFAULT.small_width <= 18
    assert DEFAULT.product_rounding == "once" and DEFAULT.overflow == "saturate"


def test_edgemoe_preset_is_upstream():
    assert EDGEMOE.act == Fixed(32, 22)
    assert (EDGEMOE.weight_width, EDGEMOE.weight_frac, EDGEMOE.patch_weight_frac) == (16, 14, 16)
    assert EDGEMOE.bias == Fixed(16, 11) and EDGEMOE.attn_bias == Fixed(16, 9)
    assert (EDGEMOE.product_rounding, EDGEMOE.overflow, EDGEMOE.weight_rounding) == (
        "floor_each", "wrap", "floor")


def test_parameter_quantization_reports_saturation():
    q, n = EDGEMOE.quantize("weight", np.array([0.5, 3.0]))
    assert n == 1 and q.fmt == Fixed(16, 14)
    q, n = DEFAULT.quantize("weight", np.array([0.5, 3.0]))
    assert n == 0 and q.fmt == Fixed(16, 13)


def test_preset_lookup_and_validation():
    assert numerics_by_name("edgemoe") is EDGEMOE
    with pytest.raises(ValueError, match="default, edgemoe"):
        numerics_by_name("float")
    with pytest.raises(ValueError, match="overflow"):
        Numerics(**{**DEFAULT.__dict__, "overflow": "clip"})

