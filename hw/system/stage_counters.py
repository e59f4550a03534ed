"""The per-stage cycle counters: each cycle of a run charged to the oldest unfinished stage.

Twin: :class:`model.system.stage_counters.StageCounters`, which states the rule. In short: the
run's stages are the program's unit commands in order; the oldest not yet finished moves on
when its unit's command port becomes ready again; a busy cycle adds one to the counter of the
oldest stage's kind (EMBED, ATTENTION, MLP, GATE or MOE by the MoE half's ``all_routed``, HEAD
once every stage has finished), so those counters add up to CYCLES_TOTAL; OVERLAP counts the
cycles in which two or more units run.

**Latency and depth.** The oldest stage is a register (its index and its unit, one-hot), moved
on by the unit's ready of the cycle, so a count includes the cycle that ended the stage. Each
counter is a 32-bit incrementer whose enable is one LUT of registers (``busy``, the one-hot unit,
``all_routed``); the next one-hot unit is a constant table of the index (one LUT level), chosen
by the rising ready (two levels).
"""

from amaranth import Array, C, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from model.schedule import Unit
from model.system.registers import STAGE_NAMES

from hw.system.registers import stage_layout

__all__ = ["StageCounters"]


class StageCounters(wiring.Component):
    """Counters of the stages of :data:`model.system.registers.STAGES`.

    Parameters
    ----------
    order : sequence of model.schedule.Unit
        The unit of each stage of a run (:func:`model.system.stage_counters.stage_units`).

    Members
    -------
    start : ``In(1)``
        A run starts: the counts clear and stage 0 becomes the oldest.
    busy : ``In(1)``
        The run goes on: this cycle is charged.
    ready : ``In(len(Unit))``
        Each unit's command-port ready, bit ``Unit.X`` for unit X (low while it runs).
    all_routed : ``In(1)``
        The MoE half has routed every token of its command (MOE rather than GATE).
    counts : ``Out(hw.system.registers.stage_layout())``
    oldest : ``Out(range(len(order) + 1))``
        The oldest unfinished stage (``len(order)`` once every one has finished), for benches.
    """

    def __init__(self, order):
        self.order = tuple(Unit(u) for u in order)
        if not self.order:
            raise ValueError("StageCounters: a run needs at least one stage")
        super().__init__({
            "start": In(1), "busy": In(1), "ready": In(len(Unit)), "all_routed": In(1),
            "counts": Out(stage_layout()),
            "oldest": Out(range(len(self.order) + 1), init=len(self.order)),
        })

    def elaborate(self, platform):
        m = Module()
        n = len(self.order)
        one_hot = [1 << unit for unit in self.order] + [0]        # stage n: every one finished
        oldest = self.oldest
        unit = Signal(len(Unit))                     # one-hot unit of the oldest stage, 0 once done
        ready_before = Signal(len(Unit), init=(1 << len(Unit)) - 1)
        m.d.sync += ready_before.eq(self.ready)
        finished = (unit & self.ready & ~ready_before).any()
        following = Array(C(one_hot[k + 1], len(Unit)) for k in range(n))
        with m.If(self.start):
            m.d.sync += [oldest.eq(0), unit.eq(one_hot[0])]
        with m.Elif(finished):
            m.d.sync += [oldest.eq(oldest + 1), unit.eq(following[oldest])]

        running = [~self.ready[u] for u in range(len(Unit))]
        charge = {
            "EMBED": unit[Unit.EMBED],
            "ATTENTION": unit[Unit.ATTENTION],
            "MLP": unit[Unit.MLP],
            "GATE": unit[Unit.MOE] & ~self.all_routed,
            "MOE": unit[Unit.MOE] & self.all_routed,
            "HEAD": ~unit.any(),
            "OVERLAP": sum(running) >= 2,
        }
        assert tuple(charge) == STAGE_NAMES
        for name, charged in charge.items():
            count = self.counts[name.lower()]
            with m.If(self.start):
                m.d.sync += count.eq(0)
            with m.Elif(self.busy & charged):
                m.d.sync += count.eq(count + 1)
        return m
