"""One compute unit shared by several clients: twin of :func:`model.units.compute_mux.serve`.

Every linear layer of the machine (the patch embedding, Q, K, V, the projection, the dense and
expert MLPs, the gates) runs on one :class:`hw.units.compute_unit.ComputeUnit`. The units that use
it are *clients*: each has a port ``cu`` shaped like the unit's own interface seen from outside
(``cmd``, ``w``, ``b``, ``x`` out; ``o`` in), as if it owned the unit. The mux forwards their
commands in the order it accepts them and routes every stream of a command between the unit and
the client that issued it::

    client 0 ─┐  cmd: whichever client offers one (lowest index first)       ┌─ ComputeUnit
    client 1 ─┼─ w, b: from the owner of the oldest command still loading    ─┼─
    client 2 ─┘  x: from the owner of the oldest command still taking rows     │
                 o: to the owner of the oldest command still giving results ◀──┘

Each routing decision is a queue of owners with the command's beat count
(:meth:`hw.units.compute_unit.ComputeUnit.beats`), so a client may issue several commands ahead, and
the unit's overlap of one call's weight load with the previous call's compute is kept. The mux adds
no register on any stream: ``valid``, ``ready`` and payloads pass through multiplexers. Its
decisions are registered, so that every path stays short (at most 4 LUT levels on UltraScale+):

* a command's beat counts are computed in 4 stages after it is accepted (its chunks and tiles,
  then products in multipliers with their registers), while ``cmd`` waits (a cycle more, for
  its registered room); the unit checks a command for as long before it takes weights, so the
  first ``w`` beat is not later for it;
* each stream takes the head of its queue into registers (one-hot owner, beats left, last beat)
  before routing it, so it idles one cycle between two commands.

Up to ``depth`` commands may be in flight; ``cmd`` waits while the queues are full.

Clients share the unit's ``error`` and ``busy``. A command the unit rejects (``error``) gets no
beats, so its client waits: the machine treats ``error`` as fatal and resets.
"""

from amaranth import Array, Cat, Module, Signal, Value
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from model.packer import tiles

from hw import checks
from hw.arith.multiplier import Multiplier
from hw.streams.pipeline import delay

__all__ = ["ComputeMux"]


class ComputeMux(wiring.Component):
    """``clients`` users of one compute unit.

    Parameters
    ----------
    unit : hw.units.compute_unit.ComputeUnit
        The shared unit (its configuration sets the streams' shapes; the mux does not add it).
    clients : int
        Number of clients, at least 1.
    depth : int
        Commands in flight (accepted and not yet finished on every stream).

    Members
    -------
    clients : ``Out(unit.signature).array(clients)``
        Per client, the unit's own interface (``cmd`` in, ``o`` out), as a client expects it.
    unit : ``In(unit.signature)``
        To the shared unit: ``wiring.connect(m, mux.unit, unit)``.
    """

    def __init__(self, unit, *, clients, depth=4):
        checks.positive("ComputeMux", "clients", clients)
        checks.positive("ComputeMux", "depth", depth)
        self._unit, self._clients, self._depth = unit, clients, depth
        super().__init__({
            "clients": Out(unit.signature).array(clients),
            "unit": In(unit.signature),
        })

    def elaborate(self, platform):
        m = Module()
        unit, N = self._unit, self._clients
        R, C = unit.rows, unit.cols
        owner_shape = range(max(N, 2))
        cmd = self.unit.cmd.payload

        # The command: the lowest-index client offering one, while the beat counts of the last
        # one are not still being computed and every queue has room.
        queues = {}
        room = Signal()
        chosen = Signal(owner_shape)
        offered = Signal()
        for index in reversed(range(N)):
            with m.If(self.clients[index].cmd.valid):
                m.d.comb += [chosen.eq(index), offered.eq(1)]
        for index in range(N):
            with m.If(chosen == index):
                m.d.comb += cmd.eq(self.clients[index].cmd.payload)
            m.d.comb += self.clients[index].cmd.ready.eq(
                room & (chosen == index) & self.unit.cmd.ready)
        m.d.comb += self.unit.cmd.valid.eq(offered & room)
        accepted = self.unit.cmd.valid & self.unit.cmd.ready

        # Its beat counts (ComputeUnit.beats), a step per stage from registers: the chunks and
        # tiles, then the products in multipliers with their registers (DSP48E2 slices), not
        # multipliers and adders behind the clients' command ports.
        owner0 = Signal(owner_shape)
        taken = Signal.like(cmd)
        with m.If(accepted):
            m.d.sync += [owner0.eq(chosen), taken.eq(cmd)]
        chunks = Signal(range(tiles(unit.max_in, R) + 1))
        out_tiles = Signal(range(tiles(unit.max_out, C) + 1))
        # A tile's results come as C / O beats (ComputeUnit.out_lanes), the padded ones left
        # out: an output dimension of out_dim takes ceil(out_dim / O) beats per token.
        O = unit.out_lanes
        m.d.sync += [chunks.eq((taken.in_dim + R - 1) >> exact_log2(R)),
                     out_tiles.eq((taken.out_dim + C - 1) >> exact_log2(C))]
        out_beats = out_tiles
        if O != C:
            out_beats = Signal(range(tiles(unit.max_out, O) + 1))
            m.d.sync += out_beats.eq((taken.out_dim + O - 1) >> exact_log2(O))
        tokens = delay(m, taken.tokens, 1, name="tokens")
        steps = [accepted]                            # steps[n]: the command n stages on
        for stage in range(1, 5):
            steps.append(delay(m, steps[-1], 1, name="beats_step", first=stage))
        # Each count feeds two multipliers, once as ``a``, loaded only when the counts are
        # ready, once as ``b``, loaded every cycle: no two operand registers are alike, so
        # that synthesis keeps each in its own slice (A or B register) instead of merging two
        # into one register that feeds two slices.
        groups = R * C // unit.weight_lanes            # beats of w per tile
        beats = {}
        for name, a, b in (("w", chunks * groups, out_tiles), ("x", tokens, chunks),
                           ("o", out_beats, tokens)):
            mul = Multiplier(a_width=len(a), b_width=len(b), signed=False, a_enable=True)
            m.submodules[f"{name}_beats"] = mul
            m.d.comb += [mul.a.eq(a), mul.b.eq(b), mul.en.eq(1), mul.a_en.eq(steps[2])]
            beats[name] = mul.p
        assert mul.latency == 2                      # the products are there with steps[4]
        # (And b's count, a third copy of out_tiles, is loaded at yet another step.)
        beats["b"] = Signal.like(out_tiles, name="b_beats")
        with m.If(steps[3]):
            m.d.sync += beats["b"].eq(out_tiles)
        owner = delay(m, owner0, 3, name="owner")
        push = steps[4]

        for name in ("w", "b", "x", "o"):
            layout = data.StructLayout({"owner": owner_shape, "beats": len(beats[name])})
            queue = fifo.SyncFIFOBuffered(width=layout.size, depth=self._depth)
            m.submodules[f"{name}_owners"] = queue
            queues[name] = (queue, layout)
            entry = data.View(layout, queue.w_data)
            m.d.comb += [entry.owner.eq(owner), entry.beats.eq(beats[name]), queue.w_en.eq(push)]
        # No command is accepted while one is in the pipeline: the queues' room holds for it.
        # `room` is a register, judged a cycle ahead: nothing in the pipeline next cycle (no
        # command accepted now, none in steps 1 to 3) and room in every queue now with no push
        # now (pops only add room). It costs a cycle after each push.
        m.d.sync += room.eq(~accepted & ~Cat(*steps[1:5]).any() &
                            Cat(queue.w_rdy for queue, _ in queues.values()).all())

        # Each stream: the oldest command's owner, until that command's beats have passed. The
        # head of the queue goes into registers first (one-hot owner, beats left, last beat),
        # so that a transfer decides nothing in the queue: a stream idles one cycle between
        # two commands.
        for name, (queue, layout) in queues.items():
            head = data.View(layout, queue.r_data)
            active = Signal(name=f"{name}_active")
            serving = Signal(N, name=f"{name}_owner")
            # The owner also in binary, to select the payload: a 4:1 choice per bit is one
            # LUT6 (two selects, four data), where a one-hot and-or of four needs two levels.
            serving_index = Signal(owner_shape, name=f"{name}_owner_index")
            left = Signal(len(head.beats), name=f"{name}_left")
            at_last = Signal(name=f"{name}_last")
            unit_port = getattr(self.unit, name)
            transfer = unit_port.valid & unit_port.ready
            m.d.comb += queue.r_en.eq(~active)
            with m.If(~active):
                with m.If(queue.r_rdy):
                    m.d.sync += [active.eq(1),
                                 serving.eq(Cat(*[head.owner == i for i in range(N)])),
                                 serving_index.eq(head.owner),
                                 left.eq(head.beats), at_last.eq(head.beats == 1)]
            with m.Elif(transfer):
                m.d.sync += [left.eq(left - 1), at_last.eq(left == 2)]
                with m.If(at_last):
                    m.d.sync += [active.eq(0), serving.eq(0)]
            for index in range(N):
                client_port = getattr(self.clients[index], name)
                selected = serving[index]
                if name == "o":                           # unit -> client
                    m.d.comb += client_port.payload.eq(unit_port.payload)
                    m.d.comb += client_port.valid.eq(selected & unit_port.valid)
                    with m.If(selected):
                        m.d.comb += unit_port.ready.eq(client_port.ready)
                else:                                     # client -> unit
                    with m.If(selected):
                        m.d.comb += unit_port.valid.eq(client_port.valid)
                    m.d.comb += client_port.ready.eq(selected & unit_port.ready)
            if name != "o":
                payloads = Array(Value.cast(getattr(client, name).payload)
                                 for client in self.clients)
                m.d.comb += unit_port.payload.eq(payloads[serving_index])

        for index in range(N):
            m.d.comb += [self.clients[index].error.eq(self.unit.error),
                         self.clients[index].busy.eq(self.unit.busy)]
        return m
