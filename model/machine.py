"""The machine's shape: one object from which every component, the golden model, the weight
layout, the reports and the docs take their figures.

A :class:`MachineConfig` says how large the machine is (the MAC array, the attention engine's
query slots, the memory ports) and how fast it is meant to run; a
:class:`model.config.ModelConfig` says what it computes. The two together fix the weights
image (:func:`MachineConfig.layout`), the schedule (:mod:`model.schedule`) and the RTL
(:class:`hw.system.accelerator.Accelerator`). Presets are named (:data:`MACHINES`); tools select one
with ``--machine NAME``::

    python -m hw.build --board zcu102 --machine zcu102
    python -m sim.bench --config micro --machine small

A new shape is one call: ``ZCU102.replace(attention_slots=8)``.
"""

from dataclasses import dataclass, fields, replace

#: The most images one run takes (:attr:`MachineConfig.batch`).
MAX_BATCH = 8

__all__ = ["MachineConfig", "ZCU102", "ZCU102_512", "ULX3S_SELFTEST", "SMALL", "MACHINES",
           "MAX_BATCH", "machine_by_name"]


def _require(condition, field, rule):
    if not condition:
        raise ValueError(f"invalid machine configuration: {field}: {rule}")


def _power_of_two(value):
    return value & (value - 1) == 0


@dataclass(frozen=True)
class MachineConfig:
    """The shape of the machine.

    Parameters
    ----------
    name : str
        Preset name, used in build directories and reports.
    array_rows, array_cols : int
        The shared multiply-accumulate array (:class:`hw.units.compute_unit.ComputeUnit`): inputs
        times outputs per cycle, powers of two. Activations travel between units in beats of
        ``array_rows`` values, the array's inputs per cycle; an array wider than tall
        (``array_cols`` a multiple of ``array_rows``) gives each tile's results in beats of
        that width, so the rest of the machine does not see the difference.
    attention_slots : int
        Query slots P of the reordered attention engine. They fix the order in which a row's
        scores reach the single-pass softmax, so the golden model needs them to be bit-exact.
    data_width, addr_width : int
        The AXI4 memory ports: bits per beat (the weights image's beat is ``data_width / 8``
        bytes) and address bits.
    expert_ports : int
        Memory ports the MoE records (gates and experts) are read over at once. The compute
        unit takes ``expert_ports x data_width / 16`` weights per cycle.
    weight_banks : int
        Largest matrices the compute unit's weight ring holds
        (:class:`hw.units.compute_unit.ComputeUnit` ``banks``): each call's record takes the
        tiles it needs, so that while one call computes, the records of the next calls load
        ahead as far as the ring (and ``2 x weight_banks`` record slots) reach. Two are a
        double buffer for the largest matrix; three let the memory keep loading smaller records
        through a long call, which matters when the memory, not the array, bounds the MoE
        layers.
    clock_mhz : float
        The clock the machine is built for on its board (what ``ms per image`` is counted at).
    batch : int
        Images per run, 1..8 (:meth:`batched`). A run takes the weights through the machine
        once for all of them: the MLP and MoE halves run over the batch's tokens at once, so
        each expert's weights are read once per layer for the whole batch, and their buffers
        hold ``batch x tokens`` rows; the patch embedding runs an image at a time, and the
        attention half loads the batch's rows and runs an image at a time over them. One image
        is today's machine, unchanged.
    """

    name: str
    array_rows: int = 16
    array_cols: int = 16
    attention_slots: int = 4
    data_width: int = 128
    addr_width: int = 40
    expert_ports: int = 2
    weight_banks: int = 2
    clock_mhz: float = 300.0
    batch: int = 1

    def __post_init__(self):
        _require(isinstance(self.name, str) and self.name, "name",
                 f"must be a non-empty string, not {self.name!r}")
        for f in fields(self):
            if f.type in ("int", int):
                value = getattr(self, f.name)
                _require(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                         f.name, f"must be a positive integer, not {value!r}")
        for name in ("array_rows", "array_cols"):
            _require(_power_of_two(getattr(self, name)), name,
                     f"must be a power of two, not {getattr(self, name)}")
        _require(self.array_cols >= self.array_rows, "array_cols",
                 f"the machine's units pass activations in beats of the array's rows, so the "
                 f"array must be at least as wide as tall ({self.array_rows} x "
                 f"{self.array_cols} is not)")
        _require(self.data_width in (64, 128, 256, 512), "data_width",
                 f"must be 64, 128, 256 or 512 bits, not {self.data_width}")
        _require(24 <= self.addr_width <= 64, "addr_width",
                 f"must be in 24..64, not {self.addr_width}")
        _require(self.expert_ports <= 8, "expert_ports",
                 f"must be in 1..8, not {self.expert_ports}")
        _require((self.array_rows * self.array_cols) % self.weight_lanes == 0, "expert_ports",
                 f"a {self.array_rows} x {self.array_cols} tile of weights is not whole beats "
                 f"of {self.expert_ports} x {self.data_width} bits; use fewer expert ports or "
                 f"narrower ports")
        _require(2 <= self.weight_banks <= 8, "weight_banks",
                 f"must be in 2..8 (a double buffer at least), not {self.weight_banks}")
        _require(self.batch <= MAX_BATCH, "batch",
                 f"must be in 1..{MAX_BATCH} images, not {self.batch}")
        _require(isinstance(self.clock_mhz, (int, float)) and self.clock_mhz > 0, "clock_mhz",
                 f"must be a positive number, not {self.clock_mhz!r}")

    @property
    def lanes(self):
        """Values per activation beat: the array's rows."""
        return self.array_rows

    @property
    def macs(self):
        """Multiply-accumulates per cycle of the shared array."""
        return self.array_rows * self.array_cols

    @property
    def beat_bytes(self):
        """Bytes per memory beat: the weights image's beat."""
        return self.data_width // 8

    @property
    def weight_lanes(self):
        """Weights per compute-unit weight beat: ``expert_ports`` memory beats of 16-bit
        weights."""
        return self.expert_ports * self.data_width // 16

    @property
    def image_shape(self):
        """The weights image's layout parameters (:func:`model.weight_image.layout`'s
        keywords)."""
        return dict(rows=self.array_rows, cols=self.array_cols, beat_bytes=self.beat_bytes,
                    expert_ports=self.expert_ports)

    def layout(self, config):
        """The weights image of ``config`` for this machine."""
        from model.weight_image import layout
        return layout(config, **self.image_shape)

    def replace(self, **changes):
        """A copy with ``changes`` (validated like a new one); a changed shape is renamed
        ``<name>-custom`` unless ``name`` is given."""
        if "name" not in changes and changes:
            changes["name"] = f"{self.name}-custom"
        return replace(self, **changes)

    def batched(self, images):
        """This machine taking ``images`` images per run, named ``<name>-b<images>``; itself
        for one image."""
        if images == self.batch:
            return self
        base = replace(self, batch=1, name=self.name.removesuffix(f"-b{self.batch}"))
        return base if images == 1 else replace(base, batch=images,
                                                name=f"{base.name}-b{images}")

    @property
    def per_image(self):
        """The same machine for one image: what a batch's results must equal, image by
        image."""
        return self.batched(1)

    def describe(self):
        """One line for reports."""
        return (f"{self.name}: {self.array_rows} x {self.array_cols} array, "
                f"{self.attention_slots} attention slots, {self.data_width}-bit ports "
                f"({self.expert_ports} for experts), {self.weight_banks} weight banks, "
                f"{self.clock_mhz:g} MHz" + (f", {self.batch} images per run"
                                              if self.batch > 1 else ""))


#: The ZCU102 machine (XCZU9EG): a 16 x 16 array as upstream's, four query slots, 128-bit HP
#: ports with two for the experts.
ZCU102 = MachineConfig("zcu102")

#: The 512-MAC ZCU102 machine: a 16 x 32 array (16 inputs by 32 outputs per cycle, so that
#: activations still travel 16 wide); six query slots, the fewest whose attention sweeps
#: (ceil(134 / 6) x 387 = 8,901 cycles each at m3vit-tiny) hide behind V and the projection
#: (129 x 12 x 6 = 9,288 cycles each on the array); four expert ports (64 bytes per cycle, above
#: what the DDR4 gives: the MoE layers take all it has); three weight banks, so that the DDR4
#: keeps loading the next experts' weights through an expert of many tokens.
ZCU102_512 = MachineConfig("zcu102-512", array_cols=32, attention_slots=6, expert_ports=4,
                           weight_banks=3)

#: The ULX3S 85F self-test (LFE5U-85F: 156 18 x 18 multipliers): a 2 x 2 array, one query slot,
#: 64-bit ports, one expert port (a 2 x 2 tile of weights is one 64-bit beat), 25 MHz board
#: clock. A 4 x 4 array placed but did not route (docs/build.md).
ULX3S_SELFTEST = MachineConfig("ulx3s-selftest", array_rows=2, array_cols=2, attention_slots=1,
                               data_width=64, expert_ports=1, clock_mhz=25.0)

#: A small machine for tests of a non-default shape: 8 x 8 array, two query slots, 64-bit
#: ports, one expert port.
SMALL = MachineConfig("small", array_rows=8, array_cols=8, attention_slots=2, data_width=64,
                      expert_ports=1, clock_mhz=300.0)

MACHINES = {m.name: m for m in (ZCU102, ZCU102_512, ULX3S_SELFTEST, SMALL)}


def machine_by_name(name):
    """Look a preset up by name, ``<preset>-b<images>`` for a preset taking a batch; an unknown
    name lists the valid ones."""
    base, _, images = name.rpartition("-b")
    if base in MACHINES and images.isdigit():
        return MACHINES[base].batched(int(images))
    try:
        return MACHINES[name]
    except KeyError:
        raise ValueError(f"unknown machine {name!r}; choose one of: "
                         f"{', '.join(MACHINES)}") from None
