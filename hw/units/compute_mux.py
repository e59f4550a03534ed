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
no register on any stream: ``valid``, ``ready`` and payloads pass through multiplexers, so it
costs no cycle. Up to ``depth`` commands may be in flight; ``cmd`` waits while the queues are
full.

Clients share the unit's ``error`` and ``busy``. A command the unit rejects (``error``) gets no
beats, so its client waits: the machine treats ``error`` as fatal and resets.
"""

from amaranth import Module, Signal
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from hw import checks

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
        owner_shape = range(max(N, 2))
        cmd = self.unit.cmd.payload

        # The command: the lowest-index client offering one, while every queue has room.
        beats = unit.beats(cmd)
        queues = {}
        for name in ("w", "b", "x", "o"):
            count_width = len(beats[name])
            layout = data.StructLayout({"owner": owner_shape, "beats": count_width})
            queue = fifo.SyncFIFOBuffered(width=layout.size, depth=self._depth)
            m.submodules[f"{name}_owners"] = queue
            queues[name] = (queue, layout)
        room = Signal()
        m.d.comb += room.eq(1)
        for queue, _ in queues.values():
            with m.If(~queue.w_rdy):
                m.d.comb += room.eq(0)
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
        for name, (queue, layout) in queues.items():
            entry = data.View(layout, queue.w_data)
            m.d.comb += [entry.owner.eq(chosen), entry.beats.eq(beats[name]),
                         queue.w_en.eq(accepted)]

        # Each stream: the oldest command's owner, until that command's beats have passed.
        for name, (queue, layout) in queues.items():
            head = data.View(layout, queue.r_data)
            count = Signal(len(head.beats), name=f"{name}_count")
            unit_port = getattr(self.unit, name)
            transfer = unit_port.valid & unit_port.ready
            with m.If(transfer):
                with m.If(count == head.beats - 1):
                    m.d.sync += count.eq(0)
                    m.d.comb += queue.r_en.eq(1)
                with m.Else():
                    m.d.sync += count.eq(count + 1)
            for index in range(N):
                client_port = getattr(self.clients[index], name)
                selected = queue.r_rdy & (head.owner == index)
                if name == "o":                           # unit -> client
                    m.d.comb += client_port.payload.eq(unit_port.payload)
                    m.d.comb += client_port.valid.eq(selected & unit_port.valid)
                    with m.If(selected):
                        m.d.comb += unit_port.ready.eq(client_port.ready)
                else:                                     # client -> unit
                    with m.If(selected):
                        m.d.comb += [unit_port.valid.eq(client_port.valid),
                                     unit_port.payload.eq(client_port.payload)]
                    m.d.comb += client_port.ready.eq(selected & unit_port.ready)

        for index in range(N):
            m.d.comb += [self.clients[index].error.eq(self.unit.error),
                         self.clients[index].busy.eq(self.unit.busy)]
        return m
