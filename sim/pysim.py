"""Streams through a unit in Amaranth's own simulator: for the exhaustive and corner sweeps that
need no Verilator build (small formats, every input of a narrow unit)."""

import random

from amaranth.sim import Simulator

__all__ = ["stream_through"]


def stream_through(unit, payloads, result=lambda payload: payload, *, idle=0.0, backpressure=0.0,
                   seed=0, expect=None):
    """Send ``payloads`` into ``unit.i`` (random idles) and take ``unit.o`` (random back-pressure)
    until ``expect`` results (default: one per payload) have come out, each turned into a value by
    ``result``; then check that nothing more comes for ``2 * unit.LATENCY`` cycles.

    Returns the results and the cycle of each transfer on ``i`` and on ``o``.
    """
    expect = len(payloads) if expect is None else expect
    rng = random.Random(seed)
    received, times_in, times_out = [], [], []

    async def bench(ctx):
        queue, offering, cycle = list(payloads), False, 0
        while len(received) < expect:
            if not offering and queue and rng.random() >= idle:
                offering = True
            ctx.set(unit.i.valid, offering)
            if offering:
                ctx.set(unit.i.payload, queue[0])
            ctx.set(unit.o.ready, rng.random() >= backpressure)
            _, _, i_ready, o_valid, o_ready, o_payload = await ctx.tick().sample(
                unit.i.ready, unit.o.valid, unit.o.ready, unit.o.payload)
            cycle += 1
            if offering and i_ready:
                queue.pop(0)
                offering = False
                times_in.append(cycle)
            if o_valid and o_ready:
                received.append(result(o_payload))
                times_out.append(cycle)
            assert cycle < 10 * len(payloads) + 100, "the unit is stuck"
        ctx.set(unit.i.valid, 0)
        ctx.set(unit.o.ready, 1)
        for _ in range(2 * getattr(unit, "LATENCY", 8)):
            _, _, o_valid = await ctx.tick().sample(unit.o.valid)
            assert not o_valid, "more results than expected"

    simulator = Simulator(unit)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    return received, times_in, times_out
