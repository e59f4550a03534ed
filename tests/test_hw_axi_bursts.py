# amaranth: UnusedElaboratable=no
"""The burst splitter of the AXI DMAs (hw/movers/axi_bursts.py) in Amaranth's own simulator against
its twin :func:`model.movers.axi_bursts.bursts`: commands across boundaries under random idles and
back-pressure, the AXI rule that a burst on offer stays on offer unchanged, the cycles of the
docstring's formulas at full rate, dropped commands, and the argument checks."""

import math
import random

import pytest
from amaranth.sim import Simulator

from hw.movers.axi_bursts import BurstSplitter
from model.movers.axi_bursts import bursts


def split(splitter, commands, *, idle=0.0, backpressure=0.0, seed=0, expect):
    """Offer ``commands`` (pairs of address and beats) on ``splitter.i`` with random idles, take
    ``splitter.o`` with random back-pressure until ``expect`` bursts are out, checking on every
    cycle that a burst on offer stays on offer, unchanged, until it is taken.

    Returns the bursts as ``(address, beats)`` pairs, the cycle of each command taken and of each
    burst taken, and ``error`` at the end.
    """
    rng = random.Random(seed)
    out, taken, emitted, error = [], [], [], []

    async def bench(ctx):
        queue, offering, cycle, held = list(commands), False, 0, None
        while len(out) < expect:
            if not offering and queue and rng.random() >= idle:
                offering = True
            ctx.set(splitter.i.valid, offering)
            if offering:
                ctx.set(splitter.i.payload.addr, queue[0][0])
                ctx.set(splitter.i.payload.beats, queue[0][1])
            ctx.set(splitter.o.ready, rng.random() >= backpressure)
            _, _, i_ready, o_valid, o_ready, addr, length = await ctx.tick().sample(
                splitter.i.ready, splitter.o.valid, splitter.o.ready, splitter.o.payload.addr,
                splitter.o.payload.len)
            cycle += 1
            if held is not None:
                assert o_valid and (addr, length) == held, \
                    f"cycle {cycle}: the burst on offer {held} was withdrawn or changed"
            held = None
            if offering and i_ready:
                queue.pop(0)
                offering = False
                taken.append(cycle)
            if o_valid and o_ready:
                out.append((addr, length + 1))
                emitted.append(cycle)
            elif o_valid:
                held = (addr, length)
            assert cycle < 20 * expect + 100, "the splitter is stuck"
        ctx.set(splitter.i.valid, 0)
        for _ in range(4):
            _, _, o_valid = await ctx.tick().sample(splitter.o.valid)
            assert not o_valid, "more bursts than the twin gives"
        error.append(ctx.get(splitter.error))

    simulator = Simulator(splitter)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    return out, taken, emitted, error[0]


def expected(commands, data_bytes, **limits):
    return [b for a, n in commands for b in bursts(a, n, data_bytes, **limits)]


def random_commands(seed, count, data_bytes, *, boundary=4096, max_beats=700):
    """``count`` commands, most of them starting a few beats before a boundary."""
    rng = random.Random(seed)
    commands = []
    for _ in range(count):
        beats = rng.randrange(1, max_beats + 1)
        page = rng.randrange(0, 16) * boundary
        before = rng.randrange(0, 12) * data_bytes
        commands.append(((page - before) % (16 * boundary), beats))
    return commands


def test_twin_examples():
    assert bursts(0, 1, 16) == [(0, 1)]
    assert bursts(0x0FF0, 3, 16) == [(0x0FF0, 1), (0x1000, 2)]
    assert bursts(0x40, 300, 16) == [(0x40, 252), (0x1000, 48)]
    assert bursts(0, 600, 4) == [(0, 256), (0x400, 256), (0x800, 88)]
    assert bursts(0xFFC, 2, 4) == [(0xFFC, 1), (0x1000, 1)]
    assert bursts(24, 10, 8, max_burst=4, boundary=64) == [(24, 4), (56, 1), (64, 4), (96, 1)]


def test_twin_bad_commands():
    with pytest.raises(ValueError, match="not aligned to 16 bytes"):
        bursts(8, 1, 16)
    with pytest.raises(ValueError, match="at least one beat"):
        bursts(0, 0, 16)


@pytest.mark.parametrize("data_width", [8, 32, 128, 1024])
def test_full_rate(data_width):
    """At full rate the first burst is offered two cycles after its command is taken, then one
    every two cycles; a command of ``B`` bursts takes ``1 + 2B`` cycles, and ``B`` is the
    docstring's formula."""
    data_bytes = data_width // 8
    splitter = BurstSplitter(addr_width=20, data_width=data_width, max_beats=1000)
    commands = random_commands(data_width, 12, data_bytes, max_beats=1000)
    want = expected(commands, data_bytes)
    out, taken, emitted, error = split(splitter, commands, expect=len(want))
    assert out == want
    assert not error
    K, M = 4096 // data_bytes, 256
    first = 0
    for (addr, beats), start, end in zip(commands, taken, taken[1:] + [None]):
        f = min(beats, K - (addr // data_bytes) % K)
        r = beats - f
        B = math.ceil(f / M) + (r // K) * math.ceil(K / M) + math.ceil((r % K) / M)
        assert B == len(bursts(addr, beats, data_bytes))
        assert emitted[first] == start + 2, "first burst not offered 2 cycles after the command"
        assert emitted[first:first + B] == list(range(start + 2, start + 2 + 2 * B, 2))
        if end is not None:
            assert end - start == 1 + 2 * B
        first += B


@pytest.mark.parametrize("idle,backpressure", [(0.5, 0.0), (0.0, 0.6), (0.4, 0.4)])
@pytest.mark.parametrize("max_burst,boundary", [(256, 4096), (4, 64), (3, 32), (1, 4)])
def test_random_idles_and_backpressure(idle, backpressure, max_burst, boundary):
    data_bytes = 4
    splitter = BurstSplitter(addr_width=16, data_width=8 * data_bytes, max_beats=200,
                             max_burst=max_burst, boundary=boundary)
    commands = random_commands(max_burst, 20, data_bytes, boundary=boundary, max_beats=200)
    want = expected(commands, data_bytes, max_burst=max_burst, boundary=boundary)
    out, _, _, error = split(splitter, commands, idle=idle, backpressure=backpressure,
                             seed=boundary, expect=len(want))
    assert out == want
    assert not error


def test_bad_commands_dropped():
    """An unaligned command and an empty one are dropped in one cycle each, with ``error``
    set; the commands around them are split as usual."""
    splitter = BurstSplitter(addr_width=16, data_width=128, max_beats=64)
    good = [(0x0FE0, 4), (0x2000, 1)]
    out, taken, _, error = split(splitter, [good[0], (0x108, 2), (0x100, 0), good[1]],
                                 expect=3)
    assert out == expected(good, 16)
    assert error
    assert taken[2] - taken[1] == 1 and taken[3] - taken[2] == 1


def test_bad_construction():
    with pytest.raises(ValueError, match="data_width must be a power of two in 8..1024"):
        BurstSplitter(addr_width=32, data_width=100, max_beats=16)
    with pytest.raises(ValueError, match="addr_width must be a positive integer"):
        BurstSplitter(addr_width=0, data_width=128, max_beats=16)
    with pytest.raises(ValueError, match="max_beats must be a positive integer"):
        BurstSplitter(addr_width=32, data_width=128, max_beats=True)
    with pytest.raises(ValueError, match="max_burst"):
        BurstSplitter(addr_width=32, data_width=128, max_beats=16, max_burst=257)
    with pytest.raises(ValueError, match="boundary must be a power of two of at least 16"):
        BurstSplitter(addr_width=32, data_width=128, max_beats=16, boundary=8)
    with pytest.raises(ValueError, match="boundary must be a power of two"):
        BurstSplitter(addr_width=32, data_width=128, max_beats=16, boundary=48)
