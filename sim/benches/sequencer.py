"""cocotb bench of :class:`hw.system.sequencer.Sequencer`: the program of a model on a machine, run
for each task, must offer on every stream exactly the payloads of
:func:`model.system.sequencer.transfers`, in order, under random back-pressure, and set the routes
and stage marks in the program's order.

The bench plays the rest of the machine: it answers the waits a random number of cycles after
what they wait for (the shift table after its read, a unit's calls after its command, the MoE
half's calls, the output after its write).
"""

import random

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from model.config import config_by_name
from model.machine import machine_by_name
from model.schedule import CALLS_PER_COMMAND, ImageTo, Unit
from model.system.sequencer import STREAMS, transfers
from sim.runner import bench_config
from sim.stream import StreamSink, clock_and_reset, pack_struct

WEIGHTS, IMAGE, OUTPUT = 0x10_0000, 0x80_0000, 0x90_0000


def make_design(config):
    from hw.system.accelerator import Accelerator
    return Accelerator(config_by_name(config["model"]),
                       machine_by_name(config.get("machine", "zcu102"))).sequencer


async def _later(dut, rng, action, latest):
    for _ in range(rng.randrange(latest + 1)):
        await RisingEdge(dut.clk)
    action()


def sinks(dut, backpressure, seed):
    """A checking sink on every output stream."""
    return {name: StreamSink(dut, name, backpressure=backpressure, seed=seed + n)
            for n, name in enumerate(STREAMS)}


async def run(dut, task, sinks, *, seed):
    """One run of the program for ``task``; checks what reached ``sinks`` in it."""
    design = make_design(bench_config())
    rng = random.Random(seed)
    shifts = [rng.randrange(1, 64) for _ in range(len(design.shifts))]
    want = transfers(design.program, task, weights_addr=WEIGHTS, image_addr=IMAGE,
                     output_addr=OUTPUT, shifts=shifts)
    before = {name: len(sink.payloads) for name, sink in sinks.items()}
    dut.start.value = 0
    dut.stop.value = 0
    dut.task.value = task
    dut.weights_addr.value, dut.image_addr.value, dut.output_addr.value = WEIGHTS, IMAGE, OUTPUT
    dut.shifts.value = sum(s << (8 * n) for n, s in enumerate(shifts))
    state = dict(shift_beats=0, accepted=[0] * len(CALLS_PER_COMMAND), moe=0, written=0,
                 idle=1)

    def drive():
        dut.shift_beats.value = state["shift_beats"]
        width = len(dut.accepted) // len(state["accepted"])
        dut.accepted.value = sum(a << (width * n) for n, a in enumerate(state["accepted"]))
        dut.moe_calls_taken.value = state["moe"]
        dut.written.value = state["written"]
        dut.writer_idle.value = state["idle"]
    drive()
    await RisingEdge(dut.clk)
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0

    routes, marks, seen = [], [], dict(before)
    for cycle in range(20_000):
        await RisingEdge(dut.clk)
        # Answer each new transfer later, as the machine would.
        for name, sink in sinks.items():
            for payload in sink.payloads[seen[name]:]:
                fields = _fields(design, name, payload)
                if name == "image_read" and fields["to"] == ImageTo.SHIFT_TABLE:
                    def loaded(beats=fields["beats"]):
                        state["shift_beats"] = beats
                    cocotb.start_soon(_later(dut, rng, loaded, 8))
                elif name.endswith("_cmd") and name != "moe_cmd":
                    unit = Unit[name[:-4].upper()]

                    def accepted(unit=unit):
                        state["accepted"][unit] += CALLS_PER_COMMAND[unit]
                    cocotb.start_soon(_later(dut, rng, accepted, 8))
                elif name == "moe_cmd":
                    state["moe"] = 0

                    def taken():
                        state["moe"] = 1
                    cocotb.start_soon(_later(dut, rng, taken, 8))
                elif name == "write":
                    state["idle"] = 0

                    def written(beats=fields["beats"]):
                        state["written"], state["idle"] = beats, 1
                    cocotb.start_soon(_later(dut, rng, written, 8))
            seen[name] = len(sink.payloads)
        drive()
        await ReadOnly()
        route = (int(dut.into_attention.value), int(dut.attention_to.value),
                 int(dut.into_output.value))
        if not routes or routes[-1] != route:
            routes.append(route)
        if not marks or marks[-1] != int(dut.progress.value):
            marks.append(int(dut.progress.value))
        if int(dut.done.value):
            break
    else:
        raise AssertionError(f"the program did not end; transfers so far: {seen}")
    await RisingEdge(dut.clk)
    for name in STREAMS:
        got = [_fields(design, name, p) for p in sinks[name].payloads[before[name]:]]
        expected = [_masked(design, name, f) for f in want[name]]
        assert got == expected, (f"{name}: the sequencer offered {got}, "
                                 f"model.system.sequencer.transfers says {expected}")
    # Routes and marks as they changed (a route equal to the one before changes nothing).
    want_routes = [r for n, r in enumerate(want["routes"]) if n == 0 or r != want["routes"][n - 1]]
    assert routes[-len(want_routes):] == want_routes, (routes, want_routes)
    assert marks[-len(want["marks"]):] == want["marks"], (marks, want["marks"])


def _layout(design, name):
    return getattr(design, name).payload.shape()


def _fields(design, name, payload):
    layout = _layout(design, name)
    return {n: (payload >> f.offset) & ((1 << f.width) - 1) for n, f in layout}


def _masked(design, name, fields):
    return _fields(design, name, pack_struct(_layout(design, name), **fields))


@cocotb.test()
async def test_every_task_full_rate(dut):
    await clock_and_reset(dut)
    streams = sinks(dut, 0.0, 1)
    for task in range(config_by_name(bench_config()["model"]).tasks):
        await run(dut, task, streams, seed=10 + task)


@cocotb.test()
async def test_backpressure(dut):
    await clock_and_reset(dut)
    streams = sinks(dut, 0.6, 1)
    for task in range(config_by_name(bench_config()["model"]).tasks):
        await run(dut, task, streams, seed=3 + task)
