"""cocotb bench of :class:`hw.streams.router.StreamRouter` against its twin
:func:`model.streams.router.route`.

Run from ``tests/test_hw_router.py``; the design configuration gives the destinations and the
job queue's depth, e.g. ``{"destinations": 3, "depth": 4}``; :func:`router_design` builds it.
"""

import random

import cocotb
from cocotb.triggers import RisingEdge

from hw.streams.router import StreamRouter
from model.streams.router import route
from sim.runner import bench_config
from sim.stream import PERIOD_NS, StreamSink, StreamSource, clock_and_reset, pack_struct

WIDTH, MAX_BEATS = 16, 40


def router_design(*, destinations, depth):
    """The design of a bench configuration."""
    return StreamRouter(WIDTH, destinations=destinations, max_beats=MAX_BEATS, depth=depth)


async def run(dut, jobs, *, idle=0.0, job_idle=0.0, backpressure=0.0, seed=0):
    """Route random payloads by ``jobs`` and check what each destination receives against the
    twin, and that nothing more comes. Returns the data source and the sinks."""
    config = bench_config()
    destinations = config["destinations"]
    layout = router_design(**config).job_layout
    await clock_and_reset(dut)
    rng = random.Random(seed)
    total = sum(beats for _, beats in jobs)
    payloads = [rng.randrange(1 << WIDTH) for _ in range(total)]
    job_source = StreamSource(dut, "job", idle=job_idle, seed=seed + 1)
    source = StreamSource(dut, "i", idle=idle, seed=seed + 2)
    sinks = [StreamSink(dut, f"o__{d}", backpressure=backpressure, seed=seed + 3 + d)
             for d in range(destinations)]
    job_source.send(pack_struct(layout, dest=dest, beats=beats) for dest, beats in jobs)
    source.send(payloads)
    want = route(jobs, payloads, destinations)
    for sink, expected in zip(sinks, want):
        got = await sink.wait_for(len(expected))
        assert got == expected, f"destination {sinks.index(sink)}: {got} != {expected}"
    for _ in range(20):
        await RisingEdge(dut.clk)
    for d, (sink, expected) in enumerate(zip(sinks, want)):
        assert len(sink.payloads) == len(expected), f"destination {d} got extra transfers"
    return source, sinks


def random_jobs(count, destinations, seed, *, zero=0.1):
    rng = random.Random(seed)
    return [(rng.randrange(destinations),
             0 if rng.random() < zero else rng.choice([1, 1, 2, 3, rng.randint(1, MAX_BEATS)]))
            for _ in range(count)]


@cocotb.test()
async def test_full_rate(dut):
    """Jobs queued ahead: one transfer per cycle, across job boundaries too."""
    destinations = bench_config()["destinations"]
    jobs = [(d % destinations, beats) for d, beats in
            enumerate([5, 1, 1, 7, 2, 1, 30, 1, 3])]
    # Jobs queued well ahead of the data: enough of them, and the data starts late.
    source, sinks = await run(dut, jobs, seed=1)
    times = sorted(t for sink in sinks for t in sink.times)
    gaps = {(b - a) / PERIOD_NS for a, b in zip(times, times[1:])}
    assert gaps == {1}, f"cycles between transfers: {sorted(gaps)}"


async def random_run(dut, seed, *, idle, job_idle, backpressure):
    """Random jobs (some of zero transfers) with idles and back-pressure: nothing is lost,
    duplicated or misrouted."""
    destinations = bench_config()["destinations"]
    await run(dut, random_jobs(60, destinations, seed), idle=idle, job_idle=job_idle,
              backpressure=backpressure, seed=10 * seed)


@cocotb.test()
async def test_random_jobs(dut):
    await random_run(dut, 1, idle=0.0, job_idle=0.0, backpressure=0.0)


@cocotb.test()
async def test_idle_data_and_backpressure(dut):
    await random_run(dut, 2, idle=0.5, job_idle=0.0, backpressure=0.3)


@cocotb.test()
async def test_jobs_late(dut):
    """Jobs arrive slowly: the data waits for its job."""
    await random_run(dut, 3, idle=0.0, job_idle=0.7, backpressure=0.0)


@cocotb.test()
async def test_everything_random(dut):
    await random_run(dut, 4, idle=0.3, job_idle=0.5, backpressure=0.6)


@cocotb.test()
async def test_zero_jobs_only(dut):
    """Jobs of zero transfers alone pass nothing and leave the router ready for the next."""
    destinations = bench_config()["destinations"]
    await run(dut, [(0, 0)] * 6 + [(destinations - 1, 4)] + [(0, 0)] * 3 + [(0, 2)], seed=3)
