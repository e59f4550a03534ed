# amaranth: UnusedElaboratable=no
"""Tests of the skid buffer (hw/streams/skid.py) in Amaranth's own simulator: every payload
passes once and in order under random valid and back-pressure, ``o`` holds until taken, the
rate is one per cycle, and ``i.ready`` does not depend on ``o.ready`` within a cycle."""

import random

import pytest
from amaranth import signed
from amaranth.lib import data
from amaranth.sim import Simulator

from hw.streams.skid import SkidBuffer


def simulate(dut, bench):
    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()


@pytest.mark.parametrize("offer, accept", [(1.0, 1.0), (0.7, 0.4), (0.3, 0.9), (1.0, 0.5)])
def test_every_payload_once_in_order(offer, accept):
    """The skid buffer's twin is the identity: what goes in comes out, nothing dropped or
    duplicated; a valid output keeps its payload until taken; at full rate one per cycle."""
    rng = random.Random(f"{offer}-{accept}")
    dut = SkidBuffer(data.ArrayLayout(signed(9), 3))
    sent, received, cycles = [], [], 400
    held = []  # (valid, payload) offered on o in a cycle it was not taken

    async def bench(ctx):
        value = None
        for _ in range(cycles):
            if value is None and rng.random() < offer:
                value = [rng.randint(-256, 255) for _ in range(3)]
            ctx.set(dut.i.valid, value is not None)
            if value is not None:
                ctx.set(dut.i.payload, value)
            ctx.set(dut.o.ready, rng.random() < accept)
            o_valid, o_payload = ctx.get(dut.o.valid), list(ctx.get(dut.o.payload))
            if held:
                assert o_valid, "o.valid fell before o.ready"
                assert o_payload == held[-1], "o.payload changed while waiting"
            taken_in = value is not None and ctx.get(dut.i.ready)
            taken_out = o_valid and ctx.get(dut.o.ready)
            await ctx.tick()
            if taken_in:
                sent.append(value)
                value = None
            if taken_out:
                received.append(o_payload)
                held.clear()
            elif o_valid:
                held[:] = [o_payload]

    simulate(dut, bench)
    assert received == sent[:len(received)]
    assert len(sent) - len(received) <= 2           # at most the output and spare registers
    if offer == accept == 1.0:
        assert len(received) == cycles - 1            # one per cycle after one of latency


def test_ready_is_a_register():
    """Within a cycle, ``i.ready`` does not change with ``o.ready``: the ready chain is cut."""
    rng = random.Random(3)
    dut = SkidBuffer(9)

    async def bench(ctx):
        for _ in range(300):
            ctx.set(dut.i.valid, rng.random() < 0.8)
            ctx.set(dut.i.payload, rng.randrange(512))
            ctx.set(dut.o.ready, 0)
            before = ctx.get(dut.i.ready)
            ctx.set(dut.o.ready, 1)
            assert ctx.get(dut.i.ready) == before
            ctx.set(dut.o.ready, rng.random() < 0.5)
            await ctx.tick()

    simulate(dut, bench)
