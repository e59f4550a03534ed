"""Which stage each cycle of a run is charged to: twin of
:class:`hw.system.stage_counters.StageCounters`.

A run's stages are its unit commands, in the program's order (:func:`stage_units`): the patch
embedding, then per block the attention half and the MLP or MoE half. Units overlap (a stage's
weights load while the one before it computes), so "the cycles a unit runs" add up to more than
the run. The counters instead charge every cycle of the run to **the oldest stage not yet
finished**, the one whose results the rest of the machine waits for:

* the run starts at stage 0; stage ``k`` finishes in the cycle its unit's command port becomes
  ready again (a rising ``ready``), and the oldest moves to ``k + 1``; a stage's unit finishes its
  stages in order, and a stage cannot finish before the one it takes its rows from, so no
  finish is missed;
* a cycle is charged to the oldest stage's counter: EMBED, ATTENTION, MLP, or for an MoE stage
  GATE until the half reports every token routed (``all_routed``) and MOE after; once every
  stage has finished, HEAD (the output write until DONE);
* OVERLAP counts, besides, the cycles in which two or more units run (``ready`` low).

So EMBED to HEAD (:data:`model.system.registers.PARTITION`) add up to CYCLES_TOTAL.

Cycle semantics (what the hardware does at each clock edge): the charge is taken from the state
before the edge; ``start`` clears the counts and makes stage 0 the oldest; a ``busy`` cycle adds
one to its charge (and to OVERLAP if two units run); a rising ``ready`` of the oldest stage's
unit moves the oldest on.
"""

from model.machine import ZCU102
from model.schedule import Unit, commands
from model.system.registers import STAGE_NAMES

__all__ = ["StageCounters", "stage_units"]


def stage_units(config, machine=ZCU102):
    """The unit of each stage of a run of ``config``, in order (the same for every task)."""
    return tuple(op.unit for op in commands(config, 0, machine))


class StageCounters:
    """The counters of one machine, stepped one clock edge at a time (:meth:`step`).

    ``order`` is :func:`stage_units`; ``counts`` maps each name of
    :data:`model.system.registers.STAGE_NAMES` to its 32-bit count.
    """

    def __init__(self, order):
        self.order = tuple(Unit(u) for u in order)
        self.oldest = len(self.order)            # no run yet: nothing left but HEAD
        self.ready_before = (1,) * len(Unit)
        self.counts = dict.fromkeys(STAGE_NAMES, 0)

    def charge(self, all_routed):
        """The stage charged now, given the MoE half's ``all_routed``."""
        if self.oldest == len(self.order):
            return "HEAD"
        unit = self.order[self.oldest]
        if unit == Unit.MOE:
            return "MOE" if all_routed else "GATE"
        return unit.name

    def step(self, *, start, busy, ready, all_routed):
        """One clock edge; ``ready`` holds the units' command-port readies, indexed by
        :class:`model.schedule.Unit`."""
        charge = self.charge(all_routed)
        if start:
            self.counts = dict.fromkeys(STAGE_NAMES, 0)
            self.oldest = 0
        else:
            if busy:
                self.counts[charge] = (self.counts[charge] + 1) & 0xFFFF_FFFF
                if sum(1 for r in ready if not r) >= 2:
                    self.counts["OVERLAP"] = (self.counts["OVERLAP"] + 1) & 0xFFFF_FFFF
            if self.oldest < len(self.order):
                unit = self.order[self.oldest]
                if ready[unit] and not self.ready_before[unit]:
                    self.oldest += 1
        self.ready_before = tuple(ready)
