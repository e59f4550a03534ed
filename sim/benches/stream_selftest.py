"""cocotb bench used only by ``tests/test_sim_stream.py`` to check the drivers of sim/stream.py.

It runs on the test-only ``StreamSelftest`` component defined there: ``q`` passes ``i`` through,
so a sink on ``q`` checks that the source obeys the stream rules; ``o`` drops ``valid`` before
a transfer and ``p`` changes ``payload`` before a transfer, which the sink must catch. The two
``test_sink_catches_*`` tests are expected to fail, with the sink's message.
"""

import random

import cocotb
from cocotb.triggers import ClockCycles

from sim.stream import StreamSink, StreamSource, clock_and_reset


@cocotb.test()
async def test_source_obeys_rules(dut):
    await clock_and_reset(dut)
    rng = random.Random(5)
    payloads = [rng.randint(-128, 255) for _ in range(300)]
    source = StreamSource(dut, "i", idle=0.5, seed=6)
    sink = StreamSink(dut, "q", backpressure=0.5, seed=7)
    source.send(payloads)
    await source.wait_sent()
    assert await sink.wait_for(len(payloads)) == [value & 0xff for value in payloads]
    assert source.times == sink.times, "a pass-through transfers on both sides at once"
    await ClockCycles(dut.clk, 5)
    assert len(sink.payloads) == len(payloads)


@cocotb.test()
async def test_sink_catches_dropped_valid(dut):
    await clock_and_reset(dut)
    StreamSink(dut, "o", backpressure=0.5, seed=8)
    await ClockCycles(dut.clk, 100)


@cocotb.test()
async def test_sink_catches_changed_payload(dut):
    await clock_and_reset(dut)
    StreamSink(dut, "p", backpressure=0.5, seed=9)
    await ClockCycles(dut.clk, 100)
