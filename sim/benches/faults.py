"""cocotb bench of the fault campaign (``python -m sim.faults``): the whole accelerator, its DRAM
models and its host driver (:class:`sim.benches.accelerator.System`), driven through scenarios
of bus faults and host mistakes, each followed by a good inference that must be bit-exact.

A scenario's kind is ``KINDS[n % len(KINDS)]`` for scenario ``n``, and its details (which port,
which address, which cycle, which image and task) come from the seeded generator, so a campaign
of ``N`` scenarios runs every kind ``N / len(KINDS)`` times and is repeatable. Every run is
watched by the handshake checker and the DMA windows (:mod:`sim.benches.accelerator`); a run
that does not end within its cycle budget is a hang. After a BUS_HUNG the bench resets the
whole design and the memory models, as a board's host resets the PL.
"""

import collections
import dataclasses
import json
import os
import random

import cocotb
from cocotb.triggers import ClockCycles, Edge, RisingEdge, SimTimeoutError, with_timeout
from cocotbext.axi import AxiResp

from host.driver import AcceleratorError, MachineBusy
from model.golden import forward
from model.system.registers import ErrorCode
from sim.benches.accelerator import _setup, unpause
from sim.runner import bench_config
from sim.stream import PERIOD_NS

__all__ = ["KINDS"]

#: The kinds of scenario, in the order the campaign cycles through them.
KINDS = ("read_slverr", "read_decerr", "write_slverr", "write_decerr", "stalls", "silent_read",
         "silent_write", "soft_reset", "soft_reset_in_output", "start_while_busy",
         "bad_address", "wrong_task", "watchdog")


class Hang(Exception):
    """A wait went past its cycle budget."""


class Campaign:
    def __init__(self, dut, system, qm, images, rng, budget):
        self.dut, self.system, self.qm, self.images = dut, system, qm, images
        self.d = system.driver
        self.rng, self.budget = rng, budget
        self.run_cycles = budget // 8        # until measure() has seen a run
        self.early = None
        self.expected = {}
        self.codes = collections.Counter()
        self.kinds = collections.Counter()
        self.hangs, self.strays, self.wrong, self.breaches, self.bus_hung = [], [], [], [], 0

    def golden(self, image_index, task):
        key = (image_index, task)
        if key not in self.expected:
            self.expected[key] = forward(self.qm, self.images[image_index], task,
                                         machine=self.system.machine)
        return self.expected[key]

    async def within(self, coroutine, cycles=None):
        try:
            return await with_timeout(coroutine, (cycles or self.budget) * PERIOD_NS, "ns")
        except SimTimeoutError:
            raise Hang() from None

    async def wait_run(self):
        """The run's end: None when it finished, else the error code it reported (maybe
        already to :meth:`start`)."""
        if self.early is not None:
            code, self.early = self.early, None
            return code
        try:
            await self.within(self.d.wait(None, interrupt=self.system.interrupt))
            return None
        except AcceleratorError as error:
            return error.code

    async def end_run(self):
        """SOFT_RESET and wait for idle; a BUS_HUNG resets the PL."""
        try:
            await self.within(self.d.reset(timeout=None))
        except AcceleratorError as error:
            self.note(error.code)
            await self.reset_pl()

    async def reset_pl(self):
        """What a board's host does after BUS_HUNG: reset the design and the memory models
        (the models follow the design's reset), then drop every pause."""
        self.bus_hung += 1
        self.system.protocol.breaches.clear()    # giving up withdraws requests; so be it
        self.release()
        dut = self.dut
        await RisingEdge(dut.clk)
        dut.rst.value = 1
        await ClockCycles(dut.clk, 4)
        dut.rst.value = 0
        await ClockCycles(dut.clk, 4)
        await self.d.check_bitstream()

    def release(self):
        s = self.system
        for ram in s.reads.values():
            ram.fault_at = ram.fault_resp = None
            unpause(ram.ar_channel)
            unpause(ram.r_channel)
        s.write.fault_at = s.write.fault_resp = None
        for channel in (s.write.aw_channel, s.write.w_channel, s.write.b_channel):
            unpause(channel)

    def note(self, code):
        self.codes[code.name if code is not None else "DONE"] += 1

    def check_output(self, what, image_index, task, got):
        if not (got == self.golden(image_index, task)).all():
            self.wrong.append(what)

    def collect(self, what):
        """Move the bus checks' findings into the campaign's record."""
        windows, protocol = self.system.windows, self.system.protocol
        self.strays += [f"{what}: {s}" for s in windows.strays]
        self.breaches += [f"{what}: {b}" for b in protocol.breaches]
        windows.strays.clear()
        protocol.breaches.clear()

    async def measure(self):
        """One good run, whose length scales the scenarios' delays and watchdogs."""
        await self.good_run()
        self.run_cycles = (await self.d.counters()).total
        self.collect("first run")

    # The scenarios. Each starts from an idle machine and leaves one (maybe with an error).

    def pick(self):
        return self.rng.randrange(len(self.images)), self.rng.randrange(self.system.model.tasks)

    async def start(self, image_index, task):
        """Start a run. An error of the run seen before ``run()`` returned (a fault in its
        first cycles) is kept for :meth:`wait_run`."""
        try:
            await self.d.run(self.images[image_index], task)
        except AcceleratorError as error:
            self.early = error.code

    async def finish(self, what, image_index, task):
        """Wait for a run that should end well; check its output."""
        code = await self.wait_run()
        self.note(code)
        if code is None:
            self.check_output(what, image_index, task, await self.d.read_output())
        else:
            self.wrong.append(f"{what}: ended with {code.name}")

    async def bus_error(self, what, *, write, resp):
        s, rng = self.system, self.rng
        ident = self.d.identity
        if write:
            ram, base, size = s.write, self.d.buffers.output, ident.bytes("OUTPUT")
        else:
            name = rng.choice(list(s.reads))
            buffer = "IMAGE" if name == "image_bus" else "WEIGHTS"
            ram, base, size = s.reads[name], self.d.buffers.address(buffer), ident.bytes(buffer)
        ram.fault_at = base + rng.randrange(size) // 16 * 16
        ram.fault_resp = resp
        image_index, task = self.pick()
        await self.start(image_index, task)
        code = await self.wait_run()
        self.note(code)
        expected = ErrorCode.AXI_WRITE_ERROR if write else ErrorCode.AXI_READ_ERROR
        if code is None:          # the faulty address was never read: the run must be right
            self.check_output(what, image_index, task, await self.d.read_output())
        elif code != expected:
            self.wrong.append(f"{what}: ended with {code.name}, not {expected.name}")
        ram.fault_at = ram.fault_resp = None
        await self.end_run()

    async def stalls(self, what):
        s, rng = self.system, self.rng
        channels = [c for ram in s.reads.values() for c in (ram.ar_channel, ram.r_channel)]
        channels += [s.write.aw_channel, s.write.w_channel, s.write.b_channel]
        for channel in rng.sample(channels, rng.randrange(1, len(channels) + 1)):
            p, seed = rng.uniform(0.3, 0.9), rng.getrandbits(32)

            def pauses(p=p, seed=seed):
                local = random.Random(seed)
                while True:
                    yield local.random() < p
            channel.set_pause_generator(pauses())
        image_index, task = self.pick()
        await self.start(image_index, task)
        await self.finish(what, image_index, task)
        self.release()

    async def silent(self, what, *, write):
        s, rng = self.system, self.rng
        if write:
            channel = rng.choice([s.write.aw_channel, s.write.w_channel, s.write.b_channel])
        else:
            ram = s.reads[rng.choice(list(s.reads))]
            channel = rng.choice([ram.ar_channel, ram.r_channel])
        await self.d.set_watchdog(4 * self.run_cycles)
        image_index, task = self.pick()
        await self.start(image_index, task)
        await ClockCycles(self.dut.clk, rng.randrange(1, self.run_cycles))
        channel.set_pause_generator(iter(lambda: True, None))
        code = await self.wait_run()
        self.note(code)
        if code is None:      # the silenced channel was not needed any more
            self.check_output(what, image_index, task, await self.d.read_output())
        elif code != ErrorCode.TIMEOUT:
            self.wrong.append(f"{what}: ended with {code.name}, not TIMEOUT")
        await self.d.set_watchdog(0)
        await self.end_run()
        self.release()

    async def soft_reset(self, what, *, in_output):
        rng = self.rng
        image_index, task = self.pick()
        await self.start(image_index, task)
        if in_output:
            while int(self.dut.progress.value) <= self.system.model.depth:
                await self.within(Edge(self.dut.progress))
            await ClockCycles(self.dut.clk, rng.randrange(1, 400))
        else:
            await ClockCycles(self.dut.clk, rng.randrange(1, self.run_cycles))
        await self.end_run()
        self.codes["ENDED_BY_SOFT_RESET"] += 1

    async def start_while_busy(self, what):
        image_index, task = self.pick()
        await self.start(image_index, task)
        await ClockCycles(self.dut.clk, self.rng.randrange(1, self.run_cycles // 2))
        try:
            await self.d.run(self.images[0], 0)
            self.wrong.append(f"{what}: run() while busy did not raise")
        except MachineBusy:
            pass
        await self.d._pulse("CONTROL", "START")        # past the driver's own check
        status = await self.d.status()
        if status["busy"] and not status["start_ignored"]:
            self.wrong.append(f"{what}: START while busy not flagged ({status})")
        await self.finish(what, image_index, task)

    async def refused(self, what, buffers, task, expected):
        """Write bad addresses or a bad task straight to the registers (the driver would not
        write an image to a bad address) and START: the machine must refuse it."""
        d, good = self.d, self.d.buffers
        await self.within(d.reset(timeout=None))        # STATUS of this START alone
        d.buffers = buffers
        try:
            await d.write_addresses()
        finally:
            d.buffers = good
        await d._write("TASK", task)
        await d._pulse("CONTROL", "START")
        for _ in range(8):
            status = await d.status()
            if status["error"] or status["busy"] or status["done"]:
                break
        if not status["error"]:
            self.wrong.append(f"{what}: the START was taken ({status})")
            await self.end_run()
            return
        self.note(status["error_code"])
        if status["error_code"] != expected:
            self.wrong.append(f"{what}: refused with {status['error_code'].name}, "
                              f"not {expected.name}")

    async def bad_address(self, what):
        rng, d = self.rng, self.d
        name = rng.choice(["image", "weights", "output"])
        top = 1 << d.identity.addr_width
        size = d.identity.bytes(name.upper())
        kind, value, code = rng.choice([
            ("zero", 0, ErrorCode.ZERO_ADDRESS),
            ("unaligned", getattr(d.buffers, name) + rng.randrange(1, 16),
             ErrorCode.UNALIGNED_ADDRESS),
            ("too high", rng.randrange(top, 1 << 64, 16), ErrorCode.ADDRESS_TOO_HIGH),
            ("past the end", rng.randrange((top - size) // 16 + 1, top // 16) * 16,
             ErrorCode.BUFFER_PAST_END)])
        await self.refused(f"{what} ({name} {kind})",
                           dataclasses.replace(d.buffers, **{name: value}), 0, code)

    async def wrong_task(self, what):
        task = self.rng.randrange(self.system.model.tasks, 256)
        await self.refused(what, self.d.buffers, task, ErrorCode.BAD_TASK)

    async def watchdog(self, what):
        await self.d.set_watchdog(self.rng.randrange(50, self.run_cycles))
        image_index, task = self.pick()
        await self.start(image_index, task)
        code = await self.wait_run()
        self.note(code)
        if code not in (ErrorCode.TIMEOUT, None):
            self.wrong.append(f"{what}: ended with {code.name}, not TIMEOUT")
        await self.d.set_watchdog(0)
        await self.end_run()

    async def scenario(self, n):
        kind = KINDS[n % len(KINDS)]
        what = f"scenario {n} ({kind})"
        self.early = None
        self.kinds[kind] += 1
        run = {
            "read_slverr": lambda: self.bus_error(what, write=False, resp=None),
            "read_decerr": lambda: self.bus_error(what, write=False, resp=AxiResp.DECERR),
            "write_slverr": lambda: self.bus_error(what, write=True, resp=None),
            "write_decerr": lambda: self.bus_error(what, write=True, resp=AxiResp.DECERR),
            "stalls": lambda: self.stalls(what),
            "silent_read": lambda: self.silent(what, write=False),
            "silent_write": lambda: self.silent(what, write=True),
            "soft_reset": lambda: self.soft_reset(what, in_output=False),
            "soft_reset_in_output": lambda: self.soft_reset(what, in_output=True),
            "start_while_busy": lambda: self.start_while_busy(what),
            "bad_address": lambda: self.bad_address(what),
            "wrong_task": lambda: self.wrong_task(what),
            "watchdog": lambda: self.watchdog(what),
        }[kind]
        for step, action in (("fault", run), ("good run", self.good_run)):
            try:
                await action()
            except Hang:
                self.hangs.append(f"{what}: {step}")
                await self.reset_pl()
            self.collect(f"{what}, {step}")

    async def good_run(self):
        image_index, task = self.pick()
        await self.start(image_index, task)
        code = await self.wait_run()
        if code is not None:
            self.wrong.append(f"good run after scenario: ended with {code.name}")
            await self.end_run()
            return
        self.check_output("good run after scenario", image_index, task,
                          await self.d.read_output())

    def report(self, scenarios):
        return {"scenarios": scenarios, "kinds": dict(self.kinds),
                "hangs": len(self.hangs), "stray_accesses": len(self.strays),
                "wrong_outputs": len(self.wrong), "handshake_breaches": len(self.breaches),
                "pl_resets_after_bus_hung": self.bus_hung, "outcomes": dict(self.codes),
                "examples": {"hangs": self.hangs[:5], "stray_accesses": self.strays[:5],
                             "wrong_outputs": self.wrong[:5],
                             "handshake_breaches": self.breaches[:5]}}


@cocotb.test()
async def test_fault_campaign(dut):
    """``scenarios`` scenarios from ``seed``; the report goes to ``$EDGEMOE_MEASURE_OUT``, and
    the test fails on any hang, stray access, wrong output or handshake breach."""
    config = bench_config()
    system, qm, images = await _setup(dut, config)
    campaign = Campaign(dut, system, qm, images, random.Random(config.get("seed", 1)),
                        budget=config.get("max_cycles", 200_000))
    await campaign.measure()
    scenarios = config.get("scenarios", len(KINDS))
    progress = os.environ.get("EDGEMOE_PROGRESS")
    for n in range(scenarios):
        await campaign.scenario(n)
        if progress:
            with open(progress, "w") as f:
                f.write(f"{n + 1}\n")
    report = campaign.report(scenarios)
    dut._log.info(f"fault campaign: {report}")
    if os.environ.get("EDGEMOE_MEASURE_OUT"):
        with open(os.environ["EDGEMOE_MEASURE_OUT"], "w") as f:
            json.dump(report, f)
    failures = {k: report["examples"][k] for k in ("hangs", "stray_accesses", "wrong_outputs",
                                                   "handshake_breaches") if report[k]}
    assert not failures, f"fault campaign failed: {failures}"
