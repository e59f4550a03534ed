# amaranth: UnusedElaboratable=no
"""StageCounters against its twin, in Amaranth's simulator: random runs of random programs, the
counts compared every cycle, and the partition (EMBED..HEAD add up to the busy cycles)."""

import random

import pytest
from amaranth.sim import Simulator

from model.config import MICRO
from model.schedule import Unit
from model.system.registers import PARTITION, STAGE_NAMES
from model.system.stage_counters import StageCounters as Twin, stage_units
from hw.system.stage_counters import StageCounters


def _trace(rng, order, cycles):
    """Inputs of one random run: START, then each unit busy for a while per stage of ``order``
    (a unit takes its next stage's command some cycles after its last, stages overlap but end
    in order), the
    MoE half routed partway, busy until a little after the last stage, and idle cycles around."""
    events = []
    ready = [1] * len(Unit)
    events.append(dict(start=1, busy=0, ready=tuple(ready), all_routed=0))
    pending = list(order)
    running = {}                                 # unit -> cycles left
    routed_after = {}
    cycle = 0
    while (pending or running) and cycle < cycles:
        cycle += 1
        freed = set()
        for unit in list(running):
            running[unit] -= 1
            if running[unit] == 0:
                del running[unit]
                ready[unit] = 1
                freed.add(unit)
        # The next stage may start when its unit is free (it may overlap the one before); a
        # unit's command port is ready for at least one cycle between two commands.
        if pending and pending[0] not in running.keys() | freed and rng.random() < 0.4:
            unit = pending.pop(0)
            # A stage ends after the one it takes its rows from, as in the machine.
            running[unit] = max(rng.randint(1, 12), max(running.values(), default=0) + 1)
            routed_after[unit] = rng.randint(0, running[unit])
            ready[unit] = 0
        routed = int(Unit.MOE in running and running[Unit.MOE] <= routed_after.get(Unit.MOE, 0)
                     or Unit.MOE not in running)
        events.append(dict(start=0, busy=1, ready=tuple(ready), all_routed=routed))
    events += [dict(start=0, busy=1, ready=tuple(ready), all_routed=1)] * rng.randint(1, 5)
    events += [dict(start=0, busy=0, ready=tuple(ready), all_routed=1)] * rng.randint(1, 5)
    return events


@pytest.mark.parametrize("seed", range(4))
def test_stage_counters_match_twin(seed):
    rng = random.Random(seed)
    order = stage_units(MICRO) if seed == 0 else tuple(
        rng.choice([Unit.ATTENTION, Unit.MLP, Unit.MOE]) for _ in range(rng.randint(1, 9)))
    dut, twin = StageCounters(order), Twin(order)
    runs = [_trace(rng, order, 400) for _ in range(3)]
    checked = []

    async def bench(ctx):
        for events in runs:
            busy_cycles = 0
            for event in events:
                for name, value in event.items():
                    if name == "ready":
                        ctx.set(dut.ready, sum(bit << u for u, bit in enumerate(value)))
                    else:
                        ctx.set(getattr(dut, name), value)
                busy_cycles += event["busy"] and not event["start"]
                await ctx.tick()
                twin.step(**event)
                got = {name: ctx.get(dut.counts[name.lower()]) for name in STAGE_NAMES}
                assert got == twin.counts
            assert sum(twin.counts[name] for name in PARTITION) == busy_cycles
            checked.append(dict(twin.counts))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) == len(runs)
    # Every stage of a run that went to the end was charged, HEAD after the last one.
    assert all(c["HEAD"] > 0 for c in checked)


def test_stage_units_of_micro():
    assert stage_units(MICRO) == (Unit.EMBED, Unit.ATTENTION, Unit.MLP, Unit.ATTENTION,
                                  Unit.MOE)


def test_stage_counters_refuse_an_empty_program():
    with pytest.raises(ValueError, match="at least one stage"):
        StageCounters(())
