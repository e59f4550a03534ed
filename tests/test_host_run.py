"""``python -m host.run``: the photo fitted to the model's frame, the clear errors, and one run end
to end with ``--sim`` on micro (the cycle-accurate machine, a generated PNG, the golden model)."""

import json

import numpy as np
import pytest
from PIL import Image

from host.picture import PictureError, load_picture
from host.run import main
from model.config import MICRO
from model.golden import forward
from model.machine import ZCU102
from model.numerics import DEFAULT
from model.quantize import quantize
from model.weight_image import pack
from model.weights import synthetic


def _png(path, width, height, seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def test_a_photo_of_the_frame_size_is_taken_as_it_is(tmp_path):
    pixels = _png(tmp_path / "p.png", MICRO.image_width, MICRO.image_height)
    codes = load_picture(str(tmp_path / "p.png"), MICRO)
    assert codes.shape == (3, MICRO.image_height, MICRO.image_width)
    assert (codes == pixels.transpose(2, 0, 1)).all()


def test_a_wider_photo_is_scaled_and_cropped_around_its_centre(tmp_path):
    # Left third black, middle third white, right third black: after a cover-scale and a
    # centre crop to the (narrower) frame, the middle is white and the edges black.
    h = MICRO.image_height * 2
    w = MICRO.image_width * 6
    pixels = np.zeros((h, w, 3), dtype=np.uint8)
    pixels[:, w // 3: 2 * w // 3] = 255
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    codes = load_picture(str(tmp_path / "wide.png"), MICRO)
    assert codes.shape == (3, MICRO.image_height, MICRO.image_width)
    assert codes[:, :, MICRO.image_width // 2].min() == 255


def test_pixel_codes_from_npy_and_the_errors(tmp_path):
    shape = (3, MICRO.image_height, MICRO.image_width)
    good = np.arange(np.prod(shape)).reshape(shape) % 256
    np.save(tmp_path / "good.npy", good)
    assert (load_picture(str(tmp_path / "good.npy"), MICRO) == good).all()
    np.save(tmp_path / "shape.npy", good[:, :-1])
    with pytest.raises(PictureError, match="takes pixel codes of shape"):
        load_picture(str(tmp_path / "shape.npy"), MICRO)
    np.save(tmp_path / "range.npy", good + 1)
    with pytest.raises(PictureError, match="integers 0..255"):
        load_picture(str(tmp_path / "range.npy"), MICRO)
    with pytest.raises(PictureError, match="no such file"):
        load_picture(str(tmp_path / "none.png"), MICRO)
    (tmp_path / "text.png").write_text("not a picture")
    with pytest.raises(PictureError, match="not an image"):
        load_picture(str(tmp_path / "text.png"), MICRO)


@pytest.fixture
def micro_files(tmp_path):
    image = tmp_path / "micro.img"
    image.write_bytes(pack(quantize(synthetic(MICRO, seed=3), DEFAULT), **ZCU102.image_shape))
    _png(tmp_path / "photo.png", 40, 20, seed=1)
    return tmp_path


@pytest.mark.parametrize("argv, message", [
    (["--weights", "nowhere.img"], "no such file or directory"),
    (["--weights", "{d}/micro.img", "--task", "5"], "task must be in 0..1"),
    (["--weights", "{d}/micro.img", "--compare", "--sim"], "--compare needs the tensors"),
    (["--weights", "{d}/micro.img", "--config", "m3vit-tiny", "--sim"], "packed for micro"),
    (["--weights", "{d}/micro.img", "--compare", "--reference", "synthetic:4", "--sim"],
     "does not pack to the weights image"),
    (["--weights", "synthetic:x", "--config", "micro"], "must be an integer"),
    (["--weights", "{d}/micro.img", "--backend", "devmem"], "needs --dram-base"),
])
def test_errors_are_one_clear_line(micro_files, capsys, argv, message):
    argv = [a.format(d=micro_files) for a in argv]
    assert main(argv + ["--image", str(micro_files / "photo.png"),
                        "--out", str(micro_files / "o.npy")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_sim_runs_the_machine_bit_exact_with_the_golden_model(micro_files, capsys):
    out = micro_files / "out.npy"
    argv = ["--weights", str(micro_files / "micro.img"), "--image",
            str(micro_files / "photo.png"), "--task", "1", "--sim", "--compare",
            "--reference", "synthetic:3", "--out", str(out), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bit_exact"] is True and report["config"] == "micro"
    got = np.load(out)
    qm = quantize(synthetic(MICRO, seed=3), DEFAULT)
    expected = forward(qm, load_picture(str(micro_files / "photo.png"), MICRO), 1)
    assert (got == expected).all()
    # The stage counters partition the run, the gate and the output write included.
    stages = report["stage_cycles"]
    assert sum(stages[n] for n in ("EMBED", "ATTENTION", "MLP", "GATE", "MOE", "HEAD")) == \
        report["total_cycles"] > 0
    assert stages["GATE"] > 0 and stages["HEAD"] > 0
