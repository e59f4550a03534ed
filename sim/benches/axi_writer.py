"""cocotb bench of :class:`hw.movers.axi_writer.AxiWriter` on cocotbext-axi's AxiRam, against
:func:`model.movers.axi_writer.write_beats`; every test checks the VALID/READY rule on AW and W
(:class:`sim.protocol.HandshakeChecker`)."""

import random

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotbext.axi import AxiRamWrite, AxiWriteBus

from hw.movers.axi import BOUNDARY, MAX_BURST
from hw.movers.axi_writer import AxiWriter
from model.movers.axi_writer import write_beats
from sim.protocol import HandshakeChecker, axi_master_channels
from sim.runner import bench_config
from sim.stream import PERIOD_NS, StreamSource, clock_and_reset, pack_struct

SIZE = 1 << 16
#: Writes at or above this address answer SLVERR.
BAD = 0xF000


class FaultyRam(AxiRamWrite):
    async def _write(self, address, data):
        if address >= BAD:
            raise ValueError("no memory here")
        await super()._write(address, data)


def make_design(config):
    return AxiWriter(**config)


def _pauses(seed, p):
    rng = random.Random(seed)
    while True:
        yield rng.random() < p


def random_commands(seed, count, data_bytes):
    """``count`` commands of 1..600 beats, each starting a few beats before a 4 KB boundary so
    that it crosses it, below ``BAD``."""
    rng = random.Random(seed)
    commands = []
    for _ in range(count):
        beats = rng.randrange(1, 601)
        before = rng.randrange(0, min(beats, 8) + 1) * data_bytes
        boundaries = range(0x1000, BAD - beats * data_bytes + before + 1, 0x1000)
        commands.append((rng.choice(boundaries) - before, beats))
    return commands


class TB:
    """The design on a FaultyRam filled with random bytes, with command and data sources."""

    def __init__(self, dut, *, idle=0.0, pause=0.0, aw_pause=None, b_pause=None):
        self.dut = dut
        dut.stop.value = 0
        self.protocol = HandshakeChecker(dut, axi_master_channels(dut, "bus"))
        self.config = bench_config()
        self.design = make_design(self.config)
        self.data_bytes = self.config["data_width"] // 8
        self.ram = FaultyRam(AxiWriteBus.from_prefix(dut, "bus_"), dut.clk, dut.rst, size=SIZE)
        self.content = bytes(random.Random(1).randrange(256) for _ in range(SIZE))
        self.ram.write(0, self.content)
        for channel, p, seed in ((self.ram.aw_channel, pause if aw_pause is None else aw_pause, 2),
                                 (self.ram.w_channel, pause, 3),
                                 (self.ram.b_channel, pause if b_pause is None else b_pause, 4)):
            if p:
                channel.set_pause_generator(_pauses(seed, p))
        self.bursts, self.responses = [], 0
        cocotb.start_soon(self._monitor())
        self.cmd = StreamSource(dut, "cmd", seed=5)
        self.data = StreamSource(dut, "i", idle=idle, seed=6)
        self._words = random.Random(7)

    def send(self, addr, beats, words=None):
        """Queue a command and, unless given, ``beats`` random words; returns the words."""
        if words is None:
            words = [self._words.getrandbits(8 * self.data_bytes) for _ in range(beats)]
        self.cmd.send([pack_struct(self.design.cmd.payload.shape(), addr=addr, beats=beats)])
        self.data.send(words)
        return words

    async def _monitor(self):
        """Record each burst taken on AW as (awaddr, beats), count responses on B, and check
        that ``idle`` is never high while a burst awaits its response."""
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            if dut.idle.value == 1 and self.responses != len(self.bursts):
                raise AssertionError(
                    f"idle at {get_sim_time('ns')} ns with {len(self.bursts) - self.responses} "
                    f"of {len(self.bursts)} bursts unanswered")
            if dut.bus__awvalid.value == 1 and dut.bus__awready.value == 1:
                self.bursts.append((int(dut.bus__awaddr.value), int(dut.bus__awlen.value) + 1))
            if dut.bus__bvalid.value == 1 and dut.bus__bready.value == 1:
                self.responses += 1

    async def wait_idle(self, *, timeout_cycles=5000):
        """Wait until every command and beat is taken and ``idle`` is high, then check that
        every burst was answered."""
        await self.cmd.wait_sent()
        await self.data.wait_sent()
        for _ in range(timeout_cycles):
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            if self.dut.idle.value == 1:
                break
        else:
            raise AssertionError(f"idle still low {timeout_cycles} cycles after the last beat")
        # The last response was at least a cycle ago, so the monitor has counted it.
        assert self.responses == len(self.bursts), (
            f"idle with {len(self.bursts) - self.responses} of {len(self.bursts)} bursts "
            f"unanswered")
        self.protocol.check()


async def run(dut, commands, *, full_rate=False, **kwargs):
    await clock_and_reset(dut)
    tb = TB(dut, **kwargs)
    await ReadOnly()
    assert int(dut.idle.value) == 1, "not idle after reset"
    want = tb.content
    for addr, beats in commands:
        want = write_beats(want, addr, tb.send(addr, beats), tb.data_bytes)
    await tb.wait_idle()
    assert tb.ram.read(0, SIZE) == want, "memory differs from the twin"
    assert int(dut.error.value) == 0
    assert tb.bursts == [burst for addr, beats in commands
                         for burst in _split(addr, beats, tb.data_bytes)], "bursts differ"
    if full_rate:
        # One beat per cycle, but for a cycle now and then between commands.
        t = tb.data.times
        gaps = sum(b - a > PERIOD_NS for a, b in zip(t, t[1:]))
        assert gaps <= len(commands), f"{gaps} gaps in {len(t)} beats of {len(commands)} commands"


def _split(addr, beats, data_bytes):
    """Bursts (addr, beats) of a command: the longest that neither pass 256 beats nor cross
    4 KB."""
    bursts = []
    while beats:
        n = min(beats, MAX_BURST, (BOUNDARY - addr % BOUNDARY) // data_bytes)
        bursts.append((addr, n))
        addr, beats = addr + n * data_bytes, beats - n
    return bursts


def commands(data_bytes):
    edges = [(0, 1), (0x1000, 256), (0x2000, 257), (0x3000 - 2 * data_bytes, 2),
             (0x4000 - data_bytes, 600)]
    return edges + random_commands(8, 6, data_bytes)


@cocotb.test()
async def test_writes_at_full_rate(dut):
    await run(dut, commands(bench_config()["data_width"] // 8), full_rate=True)


@cocotb.test()
async def test_writes_with_idles_and_memory_pauses(dut):
    await run(dut, commands(bench_config()["data_width"] // 8), idle=0.3, pause=0.3)


@cocotb.test()
async def test_writes_with_slow_addresses_and_responses(dut):
    # A slow address channel makes the data go out before its address is taken; slow responses
    # keep bursts outstanding (and `idle` low) after their data.
    await run(dut, commands(bench_config()["data_width"] // 8), aw_pause=0.8, b_pause=0.8)


@cocotb.test()
async def test_error_response_sets_error_and_idle_returns(dut):
    await clock_and_reset(dut)
    tb = TB(dut)
    # Its first two beats land below BAD, the other three fail.
    tb.send(BAD - 2 * tb.data_bytes, 5)
    words = tb.send(0x100, 3)
    await tb.wait_idle()
    assert int(dut.error.value) == 1 and int(dut.resp_error.value) == 1
    below = BAD - 2 * tb.data_bytes
    want = write_beats(tb.content, 0x100, words, tb.data_bytes)
    assert tb.ram.read(0, below) == want[:below], "the write after the error differs"


@cocotb.test()
async def test_unaligned_or_empty_command_is_dropped(dut):
    await clock_and_reset(dut)
    tb = TB(dut)
    layout = tb.design.cmd.payload.shape()
    # Only the valid command's beats are sent: a dropped command takes none.
    tb.cmd.send([pack_struct(layout, addr=tb.data_bytes // 2, beats=2),
                 pack_struct(layout, addr=0x40, beats=0)])
    words = tb.send(0x40, 3)
    await tb.wait_idle()
    assert tb.ram.read(0, SIZE) == write_beats(tb.content, 0x40, words, tb.data_bytes)
    assert tb.bursts == [(0x40, 3)]
    assert int(dut.error.value) == 1 and int(dut.resp_error.value) == 0


@cocotb.test()
async def test_stop_finishes_the_bursts_it_started(dut):
    """``stop`` in the middle of a long command under slow addresses and responses: no burst
    is offered after it but the one on offer, every burst whose address went out gets all its
    beats and its response, ``quiet`` rises, and memory holds exactly those bursts."""
    await clock_and_reset(dut)
    tb = TB(dut, pause=0.5, aw_pause=0.7, b_pause=0.7)
    addr, beats = 0x1000 - 3 * tb.data_bytes, 2000
    words = tb.send(addr, beats)
    while len(tb.bursts) < 2:
        await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    dut.stop.value = 1
    taken = len(tb.bursts)
    for _ in range(5000):
        await RisingEdge(dut.clk)
        await ReadOnly()
        if int(dut.quiet.value):
            break
    else:
        raise AssertionError("quiet never rose after stop")
    await ClockCycles(dut.clk, 20)
    await ReadOnly()
    assert int(dut.quiet.value) and not int(dut.bus__awvalid.value)
    bursts = _split(addr, beats, tb.data_bytes)
    assert len(tb.bursts) <= taken + 1 < len(bursts), (taken, tb.bursts)
    assert tb.bursts == bursts[:len(tb.bursts)] and tb.responses == len(tb.bursts)
    sent = sum(n for _, n in tb.bursts)
    want = write_beats(tb.content, addr, words[:sent], tb.data_bytes)
    assert tb.ram.read(0, SIZE) == want, "memory differs from the bursts that went out"
    tb.protocol.check()
