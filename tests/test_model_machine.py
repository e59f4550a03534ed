"""The machine's shape (model.machine): presets, validation, what it derives."""

import pytest

from model.config import MICRO
from model.machine import (MACHINES, SMALL, ULX3S_SELFTEST, ZCU102, ZCU102_512, MachineConfig,
                           machine_by_name)
from model.weight_image import layout


def test_presets():
    assert ZCU102.macs == 256 and ZCU102.beat_bytes == 16 and ZCU102.weight_lanes == 16
    assert ULX3S_SELFTEST.macs == 4 and ULX3S_SELFTEST.weight_lanes == 4
    assert SMALL.lanes == 8 and SMALL.expert_ports == 1
    assert ZCU102_512.macs == 512 and ZCU102_512.lanes == 16 and ZCU102_512.weight_lanes == 32
    assert set(MACHINES) == {"zcu102", "zcu102-512", "ulx3s-selftest", "small"}
    assert machine_by_name("small") is SMALL
    assert "300 MHz" in ZCU102.describe()


def test_unknown_machine_lists_presets():
    with pytest.raises(ValueError, match="unknown machine 'zcu104'; choose one of: zcu102"):
        machine_by_name("zcu104")


def test_layout_is_the_machines():
    assert ZCU102.layout(MICRO) is layout(MICRO, rows=16, cols=16, beat_bytes=16, expert_ports=2)
    assert SMALL.layout(MICRO).shape == dict(rows=8, cols=8, beat_bytes=8, expert_ports=1)


def test_replace_renames_and_validates():
    wide = ZCU102.replace(attention_slots=8)
    assert wide.attention_slots == 8 and wide.name == "zcu102-custom"
    assert ZCU102.replace(name="mine", expert_ports=1).name == "mine"
    with pytest.raises(ValueError, match="attention_slots: must be a positive integer"):
        ZCU102.replace(attention_slots=0)


@pytest.mark.parametrize("change, message", [
    (dict(array_rows=12, array_cols=12), "array_rows: must be a power of two"),
    (dict(array_rows=32), "array_cols: .* at least as wide as tall .32 x 16 is not."),
    (dict(data_width=96), "data_width: must be 64, 128, 256 or 512"),
    (dict(addr_width=16), "addr_width: must be in 24..64"),
    (dict(expert_ports=9), "expert_ports: must be in 1..8"),
    (dict(array_rows=2, array_cols=2, expert_ports=2), "expert_ports: .* not whole beats"),
    (dict(clock_mhz=0), "clock_mhz: must be a positive number"),
    (dict(name=""), "name: must be a non-empty string"),
    (dict(expert_ports=True), "expert_ports: must be a positive integer"),
])
def test_invalid_machines(change, message):
    with pytest.raises(ValueError, match=f"invalid machine configuration: {message}"):
        MachineConfig(**{"name": "x", **change})


def test_batched_machines():
    two = ZCU102_512.batched(2)
    assert two.batch == 2 and two.name == "zcu102-512-b2" and "2 images per run" in two.describe()
    assert two.per_image == ZCU102_512 and ZCU102_512.batched(1) is ZCU102_512
    assert two.batched(4).name == "zcu102-512-b4" and two.batched(4).per_image == ZCU102_512
    assert machine_by_name("zcu102-b3") == ZCU102.batched(3)
    assert two.layout(MICRO) is ZCU102_512.layout(MICRO)       # the weights do not change
    with pytest.raises(ValueError, match="batch: must be in 1..8 images, not 9"):
        ZCU102.batched(9)
