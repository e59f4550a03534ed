"""cocotb bench of the whole accelerator (:class:`hw.system.accelerator.Accelerator`): full
inferences from DRAM to DRAM against :func:`model.golden.forward`, bit for bit.

DRAM is one memory behind cocotbext-axi RAM models on every AXI port, with the timing of
``config["memory"]`` (a :data:`sim.ddr.MEMORIES` name; default ``ideal``, the RAM as it is);
the host is :class:`host.driver.Driver` over :class:`host.memory.CocotbBus` (an
``AxiLiteMaster`` on the register block). The configuration names the model (``micro`` or
``m3vit-tiny``; published weights with ``weights="edge-moe"``, else synthetic), and optionally
``pause`` (probability of a pause on every AXI channel, for random back-pressure and latency;
with the ideal memory only). With ``$EDGEMOE_MEASURE_OUT``
set, :func:`test_inference` writes its measurements there as JSON (``python -m sim.bench``).
Every test checks the VALID/READY rule on every channel the machine drives
(:class:`sim.protocol.HandshakeChecker`).
"""

import dataclasses
import json
import logging
import mmap
import os
import random
import time
import warnings

import cocotb
import numpy as np
from cocotb.triggers import (ClockCycles, Edge, ReadOnly, RisingEdge, SimTimeoutError,
                             with_timeout)
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiReadBus, AxiResp, AxiWriteBus

from host.driver import AcceleratorError, Buffers, Driver, MachineBusy
from host.memory import CocotbBus
from hw.system.accelerator import DRAIN_LIMIT, Accelerator, read_ports
from model.config import config_by_name
from model.machine import machine_by_name
from model.golden import forward, run
from model.numerics import DEFAULT
from model.quantize import quantize
from model.schedule import Unit
from model.system.registers import ErrorCode, Identity
from model.system.stage_counters import stage_units
from model.weight_image import pack
from model.weights import (load_edge_moe, load_image, shared_weights_dir, synthetic,
                           synthetic_image)
from sim.ddr import DdrRead, DdrWrite, Timing, memory_by_name, waited
from sim.protocol import HandshakeChecker, axi_master_channels
from sim.runner import bench_config
from sim.stream import PERIOD_NS, assert_bit_exact, clock_and_reset

#: Where the buffers start in the simulated DRAM (the machine refuses address 0).
BASE = 0x10_0000


def model_config(config):
    """The bench's model: a named configuration, with any of its fields replaced by
    ``config["override"]`` (e.g. ``{"depth": 1}`` to look at a part of the machine)."""
    return dataclasses.replace(config_by_name(config["model"]), **config.get("override", {}))


def machine_config(config):
    """The bench's machine: a preset by name (``config["machine"]``, default ``zcu102``), with
    any of its fields replaced by ``config["machine_override"]``, taking ``config["batch"]``
    images per run (default 1)."""
    machine = machine_by_name(config.get("machine", "zcu102"))
    changes = config.get("machine_override", {})
    machine = machine.replace(**changes) if changes else machine
    return machine.batched(config.get("batch", 1))


def make_design(config):
    """The machine of a bench configuration (the pytest side builds it the same way)."""
    return Accelerator(model_config(config), machine_config(config))


def model_and_images(config, count=None):
    """Quantized model and ``count`` images (default two, or a batch if larger; the published
    one first, with the real weights)."""
    model = model_config(config)
    count = max(2, config.get("batch", 1)) if count is None else count
    if config.get("weights") == "edge-moe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            weights = load_edge_moe(shared_weights_dir(), model)
        images = [load_image(shared_weights_dir(), model)]
    else:
        weights, images = synthetic(model, seed=5), []
    images += [synthetic_image(model, seed=20 + n) for n in range(count - len(images))]
    return quantize(weights, DEFAULT), images


def expert_bytes(qm, traces, task, machine):
    """Bytes the MoE layers must read over the expert ports in a run of the images whose golden
    traces (:func:`model.golden.run`) are ``traces``: each layer's gate record for ``task``
    once, and once each expert that a token of any of the images is routed to."""
    cfg, lay = qm.config, machine.layout(qm.config)
    total = 0
    for b in cfg.moe_blocks:
        p = f"l{b}."
        e = lay[p + "experts"].engine
        per_expert = sum(e[f"{m}_{k}_beats"] for m in ("fc1", "fc2") for k in ("weight", "bias"))
        used = set().union(*({int(x) for x in trace.experts[b].flat} for trace in traces))
        total += (lay[f"{p}gate{task}"].length +
                  per_expert * machine.expert_ports * machine.beat_bytes * len(used))
    return total


class DmaWindows:
    """The buffers the machine may touch: a read port only the image and weights buffers, the
    write port only the output buffer, each ``<BUFFER>_BYTES`` long from its address. Every
    access outside them is recorded in ``strays`` and answered SLVERR (the 4 KB alignment of
    :meth:`host.driver.Buffers.plan` leaves unmapped gaps between the buffers)."""

    def __init__(self, buffers, identity):
        def window(name):
            start = buffers.address(name)
            return start, start + identity.bytes(name)
        self.read = [window("IMAGE"), window("WEIGHTS")]
        self.write = [window("OUTPUT")]
        self.strays = []

    def allows(self, kind, address, length):
        if any(lo <= address and address + length <= hi for lo, hi in getattr(self, kind)):
            return True
        self.strays.append(f"{kind} of {length} bytes at {address:#x}")
        return False


def answer_errors_with(channel, resp_field, response):
    """Make a cocotbext-axi response channel send ``response()`` (an ``AxiResp``, or None to
    leave it) wherever the model would answer SLVERR: how a bench makes DECERR."""
    send = channel.send

    async def send_with(beat):
        wanted = response()
        if wanted is not None and int(getattr(beat, resp_field)) == AxiResp.SLVERR:
            setattr(beat, resp_field, wanted)
        await send(beat)
    channel.send = send_with


class FaultyRead(DdrRead):
    """DRAM read port that counts the bytes it reads, answers an error (``fault_resp``, SLVERR
    by default) at or above ``fault_at`` (None: never), and SLVERR outside the read windows of
    ``windows`` (a :class:`DmaWindows`)."""

    fault_at = None
    fault_resp = None
    windows = None
    bytes_read = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        answer_errors_with(self.r_channel, "rresp", lambda: self.fault_resp)

    async def _read(self, address, length):
        if self.fault_at is not None and address >= self.fault_at:
            raise ValueError("no memory here")
        if not self.windows.allows("read", address, length):
            raise ValueError("outside the image and weights buffers")
        self.bytes_read += length
        return await super()._read(address, length)


class CountingWrite(DdrWrite):
    """DRAM write port that counts the bytes it writes, answers an error (``fault_resp``,
    SLVERR by default) at or above ``fault_at`` (None: never) and SLVERR outside the output
    buffer (``windows``)."""

    fault_at = None
    fault_resp = None
    windows = None
    bytes_written = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        answer_errors_with(self.b_channel, "bresp", lambda: self.fault_resp)

    async def _write(self, address, data):
        if self.fault_at is not None and address >= self.fault_at:
            raise ValueError("no memory here")
        if not self.windows.allows("write", address, len(data)):
            raise ValueError("outside the output buffer")
        self.bytes_written += len(data)
        return await super()._write(address, data)


class System:
    """The machine with its DRAM and host."""

    def __init__(self, dut, config):
        self.dut, self.config = dut, config
        self.model = model_config(config)
        self.machine = machine_config(config)
        self.shape = self.machine.image_shape
        self.buffers = Buffers.plan(BASE, self.model, self.machine)
        self.dram = mmap.mmap(-1, self.buffers.end)
        self.memory = memory_by_name(config.get("memory", "ideal"))
        timing = None if self.memory.ideal else Timing(
            self.memory, self.machine.clock_mhz, PERIOD_NS, self.machine.beat_bytes)
        self.reads = {name: FaultyRead(AxiReadBus.from_prefix(dut, f"{name}_"), dut.clk,
                                       dut.rst, mem=self.dram, timing=timing)
                      for name in read_ports(self.machine.expert_ports)}
        self.write = CountingWrite(AxiWriteBus.from_prefix(dut, "output_bus_"), dut.clk, dut.rst,
                                   mem=self.dram, timing=timing)
        self.windows = DmaWindows(self.buffers, Identity.of(self.model, self.machine))
        for ram in (*self.reads.values(), self.write):
            ram.windows = self.windows
        axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "control_"), dut.clk, dut.rst)
        # One log line per register access or burst would flood the log.
        for port in ("control_", "output_bus_") + tuple(f"{name}_" for name in self.reads):
            logging.getLogger(f"cocotb.{dut._name}.{port}").setLevel(logging.WARNING)
        self.bus = CocotbBus(self.write, axil, clock=dut.clk, poll_cycles=64)
        self.driver = Driver(self.bus, self.model, self.buffers, self.machine)
        self.protocol = HandshakeChecker(dut, [
            channel for port in (*self.reads, "output_bus")
            for channel in axi_master_channels(dut, port)])
        pause = config.get("pause", 0.0)
        if pause and timing is not None:
            raise ValueError("random pauses are for the ideal memory; a timed memory makes "
                             "its own")
        if pause:
            rng = random.Random(7)

            def pauses():
                while True:
                    yield rng.random() < pause
            for ram in self.reads.values():
                ram.ar_channel.set_pause_generator(pauses())
                ram.r_channel.set_pause_generator(pauses())
            for channel in (self.write.aw_channel, self.write.w_channel, self.write.b_channel):
                channel.set_pause_generator(pauses())

    async def interrupt(self, seconds=None):
        """Return when the interrupt line is (or goes) high: the driver waits on it between
        reads of STATUS, as a board's host would, instead of polling all the time. The wait's
        limit is the bench's cycle budget, not ``seconds`` of wall-clock time."""
        if not int(self.dut.irq.value):
            await RisingEdge(self.dut.irq)

    async def wait(self):
        """The driver's wait, within the configuration's cycle budget (``max_cycles``)."""
        budget = self.config.get("max_cycles", 200_000)
        try:
            return await with_timeout(self.driver.wait(None, interrupt=self.interrupt),
                                      budget * PERIOD_NS, "ns")
        except SimTimeoutError:
            status = await self.driver.status()
            raise AssertionError(f"the run did not end within {budget} cycles "
                                 f"(STATUS {status}, sequencer at stage "
                                 f"{int(self.dut.progress.value)})") from None

    async def infer(self, qm, images, task):
        """One run through the driver (an image, or a list of a batch's images); checked
        against the golden model, image by image. Returns the golden model's traces."""
        d = self.driver
        await d.run(images, task)
        await self.wait()
        got = await d.read_output()
        batch = images if isinstance(images, list) else [images]
        traces = [run(qm, image, task, machine=self.machine) for image in batch]
        expected = np.stack([trace.output for trace in traces])
        got = np.stack(got) if isinstance(images, list) else got[None]
        if (got != expected).any() and os.environ.get("EDGEMOE_DUMP"):
            np.save(os.environ["EDGEMOE_DUMP"], got)           # for a look at what went wrong
        assert_bit_exact(got, expected, f"model.golden.forward (task {task})")
        self.check_bus()
        return traces

    def check_bus(self):
        """No handshake breach and no access outside the buffers so far."""
        self.protocol.check()
        assert not self.windows.strays, f"accesses outside the buffers: {self.windows.strays[:5]}"


def unpause(channel):
    """Stop a cocotbext-axi channel's pauses (clearing the generator alone leaves the last
    pause in force)."""
    channel.clear_pause_generator()
    channel.pause = False


async def _setup(dut, config):
    await clock_and_reset(dut)
    system = System(dut, config)
    qm, images = model_and_images(config)
    await system.driver.check_bitstream()
    await system.driver.load_weights(pack(qm, **system.shape))
    return system, qm, images


async def watch_progress(dut, marks, progress_file):
    """Record the cycle at which the sequencer launches each stage as ``(stage, cycle)`` in
    ``marks``, and tell a progress file (``python -m sim.bench`` reads it: the stage and the
    cycles since the first launch)."""
    last = None
    while True:
        value = int(dut.progress.value)
        if value != last:
            marks.append((value, round(get_sim_time("ns") / PERIOD_NS)))
            last = value
            if progress_file:
                with open(progress_file, "w") as f:
                    f.write(f"{value} {marks[-1][1] - marks[0][1]}\n")
        await Edge(dut.progress)


async def watch_stages(dut, changes, bytes_read):
    """Record each change of the oldest unfinished stage (``dut.stage``, what the stage
    counters charge) as ``(stage, cycle, DRAM bytes read by then)`` in ``changes``."""
    while True:
        await Edge(dut.stage)
        await ReadOnly()
        changes.append((int(dut.stage.value), round(get_sim_time("ns") / PERIOD_NS),
                        bytes_read()))


def stage_names(model, machine):
    """The name of each stage of a run (the index of ``dut.stage``): ``embed``, then per block
    ``block b attention`` and ``block b mlp`` or ``block b moe``, then ``head``."""
    names, block = [], -1
    for unit in stage_units(model, machine):
        block += unit == Unit.ATTENTION
        names.append("embed" if unit == Unit.EMBED else f"block {block} {unit.name.lower()}")
    return names + ["head"]


def charged_per_stage(changes, names, total_cycles, total_bytes):
    """Cycles and DRAM bytes read while each stage was the oldest unfinished one, from the
    changes of ``dut.stage`` in one run (START makes stage 0 the oldest; the run ends
    ``total_cycles`` later). The cycles add up to ``total_cycles``."""
    run = changes[next(i for i, (s, _, _) in enumerate(changes) if s == 0):]
    (_, start, _), (_, last, last_bytes) = run[0], run[-1]
    cycles, read = dict.fromkeys(names, 0), dict.fromkeys(names, 0)
    for (stage, at, b), (_, then, b_then) in zip(run, run[1:]):
        cycles[names[stage]] += then - at
        read[names[stage]] += b_then - b
    cycles[names[run[-1][0]]] += total_cycles - (last - start)
    read[names[run[-1][0]]] += total_bytes - last_bytes
    return cycles, read


@cocotb.test()
async def test_inference(dut):
    """Both tasks (or ``tasks``), images back to back without reset, bit-exact; cycles per
    stage and per block, DRAM traffic and wall time on record."""
    config = bench_config()
    system, qm, images = await _setup(dut, config)
    loaded = {name: ram.bytes_read for name, ram in system.reads.items()}
    runs = []
    for task in config.get("tasks", range(system.model.tasks)):
        batch = system.machine.batch
        image = (images[len(runs) % len(images)] if batch == 1 else
                 [images[(len(runs) + n) % len(images)] for n in range(batch)])
        for ram in system.reads.values():
            ram.bytes_read, ram.intervals = 0, []
        system.write.bytes_written = 0
        marks, changes = [], []

        def bytes_read():
            return sum(ram.bytes_read for ram in system.reads.values())
        watchers = [cocotb.start_soon(watch_progress(dut, marks,
                                                     os.environ.get("EDGEMOE_PROGRESS"))),
                    cocotb.start_soon(watch_stages(dut, changes, bytes_read))]
        start, started = time.perf_counter(), get_sim_time("ns") / PERIOD_NS
        traces = await system.infer(qm, image, task)
        for watcher in watchers:
            watcher.cancel()
        # Each MoE layer reads its gate and each expert routed to, once for the whole batch.
        experts_read = sum(ram.bytes_read for name, ram in system.reads.items()
                           if name.startswith("experts_"))
        assert experts_read == expert_bytes(qm, traces, task, system.machine), (
            f"the expert ports read {experts_read} bytes, not each routed expert once "
            f"({expert_bytes(qm, traces, task, system.machine)})")
        counters = await system.driver.counters()
        # Every cycle of the run is charged to one stage; the gate and the output write too.
        assert counters.unaccounted == 0, (
            f"the stage counters {counters.stages} do not add up to {counters.total}")
        moe_blocks = any(system.model.is_moe(b) for b in range(system.model.depth))
        assert counters.stages["HEAD"] > 0 and (counters.stages["GATE"] > 0) == moe_blocks, (
            counters.stages)
        depth, (_, first) = system.model.depth, marks[0]
        cycles, read = charged_per_stage(changes, stage_names(system.model, system.machine),
                                         counters.total, bytes_read())
        runs.append({
            "task": task, "wall_seconds": round(time.perf_counter() - start, 1),
            "total_cycles": counters.total, "stage_cycles": counters.stages,
            "launch_cycles": {("embed" if v == 0 else "output" if v > depth
                               else f"block {v - 1}"): c - first for v, c in marks},
            "charged_cycles": cycles, "charged_bytes_read": read,
            "bytes_read": {name: ram.bytes_read for name, ram in system.reads.items()},
            "bytes_written": system.write.bytes_written,
            "memory": system.memory.name,
            "memory_wait_cycles": None if system.memory.ideal else waited(
                system.reads.values(), started, get_sim_time("ns") / PERIOD_NS)})
        dut._log.info(f"{system.model.name} task {task}: {runs[-1]}")
    if os.environ.get("EDGEMOE_MEASURE_OUT"):
        with open(os.environ["EDGEMOE_MEASURE_OUT"], "w") as f:
            json.dump({"model": system.model.name, "runs": runs, "setup_bytes_read": loaded},
                      f)


@cocotb.test()
async def test_start_checks(dut):
    """Bad STARTs set their error code and do nothing else; a START while busy leaves the run
    in progress to finish bit-exact."""
    config = bench_config()
    system, qm, images = await _setup(dut, config)
    d = system.driver
    good = system.buffers
    # Buffers misplaced, or beyond what the memory ports can address, or running past the end.
    top = 1 << system.machine.addr_width
    for field, value, code in (
            ("image", good.image + 4, ErrorCode.UNALIGNED_ADDRESS),
            ("output", 0, ErrorCode.ZERO_ADDRESS),
            ("output", top, ErrorCode.ADDRESS_TOO_HIGH),
            ("output", top - d.identity.bytes("OUTPUT") + 16, ErrorCode.BUFFER_PAST_END)):
        d.buffers = dataclasses.replace(good, **{field: value})
        try:
            await d.run(images[0], 0)
            raise AssertionError(f"a START with {field} at {value:#x} was taken")
        except AcceleratorError as error:
            assert error.code == code, error
        d.buffers = good
        assert not (await d.status())["busy"]
    try:
        await d.run(images[0], system.model.tasks)
        raise AssertionError("a START with a task out of range was taken")
    except AcceleratorError as error:
        assert error.code == ErrorCode.BAD_TASK, error
    # START while busy: the machine ignores it and the run goes on.
    await d.run(images[0], 0)
    try:
        await d.run(images[1], 1)
        raise AssertionError("run() while busy did not raise")
    except MachineBusy:
        pass
    await d._pulse("CONTROL", "START")           # past the driver's own check
    status = await d.status()
    assert status["busy"] and status["start_ignored"] and not status["error"], status
    await system.wait()
    expected = forward(qm, images[0], 0, machine=system.machine)
    assert (await d.read_output() == expected).all()
    system.check_bus()


@cocotb.test()
async def test_memory_error_ends_the_run(dut):
    """A SLVERR on the weights port ends the run with AXI_READ_ERROR (no hang); after a soft
    reset the next inference is right."""
    config = bench_config()
    system, qm, images = await _setup(dut, config)
    d = system.driver
    system.reads["weights_bus"].fault_at = d.buffers.weights + d.layout["l0.k"].offset
    try:
        await d.run(images[0], 0)
        await system.wait()
        raise AssertionError("the run ended without an error")
    except AcceleratorError as error:
        assert error.code == ErrorCode.AXI_READ_ERROR, error
    system.reads["weights_bus"].fault_at = None
    await d.reset()
    await system.infer(qm, images[1], 1)


@cocotb.test()
async def test_soft_reset_mid_run(dut):
    """SOFT_RESET in the middle of an inference, then a correct inference."""
    config = bench_config()
    system, qm, images = await _setup(dut, config)
    d = system.driver
    await d.run(images[0], 0)
    await ClockCycles(dut.clk, config.get("reset_after", 3000))
    assert (await d.status())["busy"]
    await d.reset()
    assert not (await d.status())["busy"]
    await system.infer(qm, images[1], 1)
    await RisingEdge(dut.clk)


@cocotb.test()
async def test_soft_reset_during_the_output_write(dut):
    """SOFT_RESET while the output is written under random stalls of the write channels: the
    beats on offer stay as they are until taken, and nothing is written outside the output
    buffer; then a correct inference."""
    config = bench_config()
    system, qm, images = await _setup(dut, config)
    d = system.driver
    rng = random.Random(11)

    def stalls():
        while True:
            yield rng.random() < 0.6
    for channel in (system.write.aw_channel, system.write.w_channel, system.write.b_channel):
        channel.set_pause_generator(stalls())
    await d.run(images[0], 0)
    while int(dut.progress.value) <= system.model.depth:
        await Edge(dut.progress)
    written = system.write.bytes_written
    while system.write.bytes_written == written:       # the first output burst is under way
        await RisingEdge(dut.clk)
    await d.reset()
    assert system.write.bytes_written <= d.identity.bytes("OUTPUT")
    for channel in (system.write.aw_channel, system.write.w_channel, system.write.b_channel):
        unpause(channel)
    system.check_bus()
    await system.infer(qm, images[1], 1)


@cocotb.test()
async def test_silent_memory(dut):
    """A memory that stops answering (ARREADY held low on the weights port): the watchdog
    ends the run with TIMEOUT, the request on offer is kept on offer through the drain, and
    after DRAIN_LIMIT cycles the machine gives up (BUS_HUNG) and is idle; with the memory
    back, the next inference is right."""
    config = bench_config()
    system, qm, images = await _setup(dut, config)
    d = system.driver
    port = system.reads["weights_bus"]
    await d.set_watchdog(20_000)
    await d.run(images[0], 0)
    await ClockCycles(dut.clk, 500)
    port.ar_channel.set_pause_generator(iter(lambda: True, None))       # never ready again
    try:
        await system.wait()
        raise AssertionError("the run ended without an error")
    except AcceleratorError as error:
        assert error.code == ErrorCode.TIMEOUT, error
    assert (await d.status())["busy"], "the drain ended although the memory is silent"
    assert int(dut.weights_bus__arvalid.value), "the request on offer was withdrawn"
    await ClockCycles(dut.clk, DRAIN_LIMIT + 100)
    status = await d.status()
    assert not status["busy"] and status["bus_hung"] and status["overflow"], status
    assert status["error_code"] == ErrorCode.TIMEOUT, "ERROR_CODE keeps the first error"
    # Giving up withdraws the request the memory never took: that one breach, and no other.
    assert len(system.protocol.breaches) == 1, system.protocol.breaches
    assert "weights_bus.AR VALID fell" in system.protocol.breaches[0]
    system.protocol.breaches.clear()
    unpause(port.ar_channel)
    await d.set_watchdog(0)
    await system.infer(qm, images[1], 1)


@cocotb.test()
async def test_bad_shift_table(dut):
    """A shift-table entry the compute unit cannot take (one that would wrap in its field) ends
    the run with SHIFT_TABLE; with the entry mended, the next inference is right."""
    config = bench_config()
    system, qm, images = await _setup(dut, config)
    d = system.driver
    entry = d.buffers.weights + d.layout["shifts"].offset + 1
    good = system.write.read(entry, 1)
    system.write.write(entry, bytes([64 + good[0]]))
    try:
        await d.run(images[0], 0)
        await system.wait()
        raise AssertionError("the run ended without an error")
    except AcceleratorError as error:
        assert error.code == ErrorCode.SHIFT_TABLE, error
    system.write.write(entry, good)
    await system.infer(qm, images[1], 1)
