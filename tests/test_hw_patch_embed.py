# amaranth: UnusedElaboratable=no
"""The patch embedding in RTL against the golden model: micro (synthetic weights and image) at
full rate, under idles and back-pressure and with image beats of two x beats; bad commands; and
m3vit-tiny with the published weights and image when present. Plus the host's image layout."""

import numpy as np
import pytest

from hw.units.patch_embed import PatchEmbed
from model.config import MICRO
from model.units.patch_embed import image_bytes
from model.reference import patchify
from model.weights import shared_weights_dir, synthetic_image
from sim.benches.patch_embed import make_design
from sim.runner import cocotb_tests

MICRO_HW = dict(model="micro", lanes=4, weight_lanes=4, data_width=32)

test_micro = cocotb_tests("sim.benches.patch_embed", lambda **c: make_design(c),
                          configs=[MICRO_HW, dict(MICRO_HW, idle=0.3, backpressure=0.5),
                                   dict(MICRO_HW, data_width=64, idle=0.3, backpressure=0.5)],
                          tests=["test_tokens"])

test_micro_bad_commands = cocotb_tests("sim.benches.patch_embed", lambda **c: make_design(c),
                                       configs=[MICRO_HW], tests=["test_bad_commands_are_dropped"])

if shared_weights_dir() is not None:
    test_m3vit_tiny = cocotb_tests(
        "sim.benches.patch_embed", lambda **c: make_design(c),
        configs=[dict(model="m3vit-tiny", weights="edge-moe", lanes=16, weight_lanes=8,
                      data_width=128)],
        tests=["test_tokens"])
else:
    @pytest.mark.skip(reason="Edge-MoE weights not present (../shared/edge-moe/weights)")
    def test_m3vit_tiny():
        pass


def test_image_bytes_are_patch_major_in_patchify_order():
    image = np.arange(2 * 4 * 6).reshape(2, 4, 6)
    data = image_bytes(image, 2)
    assert len(data) == image.size
    # Patch 1 is row 0 of patches, column 1: channel 0's rows 0..1 at x 2..3, then channel 1's.
    assert list(data[8:16]) == [2, 3, 8, 9, 26, 27, 32, 33]
    image = synthetic_image(MICRO, seed=3)
    data = image_bytes(image, MICRO.patch)
    assert np.array_equal(np.frombuffer(data, np.uint8).reshape(MICRO.patches, -1),
                          patchify(np.asarray(image), MICRO.patch))


@pytest.mark.parametrize("image, patch, message", [
    (np.full((1, 4, 4), 256), 2, "8-bit codes"),
    (np.zeros((1, 4, 6)), 4, "multiples of the patch"),
    (np.zeros((4, 4)), 2, r"\[C\]\[H\]\[W\]"),
])
def test_image_bytes_checks(image, patch, message):
    with pytest.raises(ValueError, match=message):
        image_bytes(image, patch)


@pytest.mark.parametrize("kwargs, message", [
    (dict(dim=30), "dim must be a multiple of lanes"),
    (dict(lanes=6, dim=36), "lanes must be a power of two"),
    (dict(data_width=48), "data_width must be a multiple of 8 \\* lanes"),
    (dict(data_width=256), "must be whole image beats"),
    (dict(max_patches=0), "max_patches must be a positive integer"),
    (dict(channels=True), "channels must be a positive integer"),
])
def test_constructor_checks(kwargs, message):
    args = dict(channels=3, patch=4, dim=32, max_patches=16, lanes=4, weight_lanes=4,
                data_width=32)
    with pytest.raises(ValueError, match=message):
        PatchEmbed(**dict(args, **kwargs))


def test_command_checks():
    unit = PatchEmbed(channels=3, patch=4, dim=32, max_patches=16, lanes=4, weight_lanes=4,
                      data_width=32)
    assert unit.command(patches=16, shift=9) == dict(patches=16, shift=9)
    for patches, shift in ((0, 9), (17, 9), (4, 0), (4, unit.compute.acc_width)):
        with pytest.raises(ValueError):
            unit.command(patches=patches, shift=shift)
