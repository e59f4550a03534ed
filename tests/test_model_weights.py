import os
import warnings

import numpy as np
import pytest

from model.config import M3VIT_TINY, MICRO
from model.weights import (Weights, WeightsError, expert_matrix_names, load_edge_moe, load_image,
                           save_edge_moe, synthetic, synthetic_image, tensor_shapes)


@pytest.fixture
def micro_dir(tmp_path):
    w = synthetic(MICRO, seed=3)
    save_edge_moe(w, tmp_path)
    return w, tmp_path


def test_synthetic_round_trips(micro_dir):
    w, path = micro_dir
    back = load_edge_moe(path, MICRO)
    assert not back.synthetic_experts
    for name, t in w.tensors.items():
        np.testing.assert_array_equal(back[name], t.astype(np.float32))


def test_missing_file_names_file_and_shape(micro_dir):
    _, path = micro_dir
    os.remove(path / "l0_fc1_weight.float32.bin")
    with pytest.raises(WeightsError, match=r"l0_fc1_weight.*\(64, 32\)"):
        load_edge_moe(path, MICRO)


def test_wrong_size_is_an_error(micro_dir):
    _, path = micro_dir
    (path / "pos_embed.float32.bin").write_bytes(b"\0" * 12)
    with pytest.raises(WeightsError, match=r"pos_embed.*12 bytes.*\(17, 32\)"):
        load_edge_moe(path, MICRO)


def test_nan_is_an_error(micro_dir):
    _, path = micro_dir
    t = np.zeros(32, dtype="<f4")
    t[5] = np.nan
    t.tofile(path / "l1_norm2_bias.float32.bin")
    with pytest.raises(WeightsError, match="l1_norm2_bias.*NaN"):
        load_edge_moe(path, MICRO)


def test_missing_experts_are_synthesised_once_with_a_warning(micro_dir):
    w, path = micro_dir
    for name in expert_matrix_names(MICRO):
        os.remove(path / f"{name}.float32.bin")
    with pytest.warns(UserWarning, match="synthetic experts") as record:
        a = load_edge_moe(path, MICRO, seed=7)
    assert len(record) == 1 and a.synthetic_experts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = load_edge_moe(path, MICRO, seed=7)
        c = load_edge_moe(path, MICRO, seed=8)
    name = expert_matrix_names(MICRO)[0]
    np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a[name], c[name])
    assert a[name].shape == tensor_shapes(MICRO)[name]


def test_some_experts_missing_is_an_error(micro_dir):
    _, path = micro_dir
    os.remove(path / "l1_htoh4_weight.float32.bin")
    with pytest.raises(WeightsError, match="l1_htoh4_weight"):
        load_edge_moe(path, MICRO)


def test_missing_directory():
    with pytest.raises(WeightsError, match="does not exist"):
        load_edge_moe("/nonexistent/weights", MICRO)


def test_weights_validate_shapes():
    w = synthetic(MICRO)
    bad = dict(w.tensors)
    bad["pos_embed"] = np.zeros((3, 3))
    with pytest.raises(WeightsError, match="pos_embed.*shape"):
        Weights(MICRO, bad)


def test_image_round_trip_and_validation(tmp_path):
    img = synthetic_image(MICRO, 1)
    (img / 256).astype("<f4").tofile(tmp_path / "image.float32.bin")
    np.testing.assert_array_equal(load_image(tmp_path, MICRO), img)
    (np.full(img.shape, 0.3)).astype("<f4").tofile(tmp_path / "image.float32.bin")
    with pytest.raises(WeightsError, match="8-bit pixels"):
        load_image(tmp_path, MICRO)


def test_published_directory_loads(edge_moe):
    weights, image = edge_moe
    assert weights.synthetic_experts
    assert image.shape == (3, 128, 256)
    assert set(weights.tensors) == set(tensor_shapes(M3VIT_TINY))
