"""A read-only memory behind several AXI4 read slave ports: on-chip DRAM for a board's self-test.

:class:`AxiRom` holds ``init`` (bytes, from address ``base``) in one block RAM as wide as the
data bus. Each port has its own burst in progress and its own small output FIFO, and the block
RAM's one read per cycle goes round robin to the ports with room in theirs; so a port whose
master holds ``rready`` low never stalls the others (a master may wait for one port's data before
it takes another's). Bursts are INCR of full-width beats (what :mod:`hw.movers.axi_reader`
issues), answered with their ID; a beat outside the memory reads as zero with SLVERR.

The read is a pipeline of registers: the chosen port's address, the block RAM's output, the
beat before its FIFO. On the ECP5 the memory spans most of the die's block RAMs, and an address
decided and sent in one cycle was the self-test's critical path (docs/build.md).
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In

from hw.movers.axi import axi4_read
from hw.streams.pipeline import select

__all__ = ["AxiRom"]

OKAY, SLVERR = 0, 2


class AxiRom(wiring.Component):
    """``init`` at ``base`` on AXI4 read ports named ``ports``.

    Latency: a burst's first beat is valid five cycles after its AR handshake when no other
    port reads (the burst taken, the address chosen, the read, the beat registered, then in
    its port's FIFO). Throughput: one beat per cycle over all ports, and one per cycle for a
    port alone (its FIFO of :attr:`FIFO_DEPTH` beats covers the read pipeline).

    Parameters
    ----------
    init : bytes
    base : int
        Address of ``init[0]``, a multiple of ``data_width / 8``.
    ports : sequence of str
        Names of the slave ports (members ``In(axi4_read(...))``).
    data_width, addr_width : int
    """

    #: Beats each port's output FIFO holds: a place comes back when its beat is taken, five
    #: edges after the read was chosen (the address, the read, the beat, the FIFO, the
    #: handshake), so five keep a port alone at one beat per cycle.
    FIFO_DEPTH = 5

    def __init__(self, init, *, base, ports, data_width=128, addr_width=40):
        beat = data_width // 8
        if base % beat:
            raise ValueError(f"AxiRom base {base:#x} is not a multiple of {beat} bytes")
        init = bytes(init) + bytes(-len(init) % beat)
        self._words = [int.from_bytes(init[i:i + beat], "little")
                       for i in range(0, len(init), beat)]
        self._base, self._beat, self._ports = base, beat, tuple(ports)
        super().__init__({name: In(axi4_read(addr_width=addr_width, data_width=data_width))
                          for name in self._ports})

    def elaborate(self, platform):
        m = Module()
        n, depth, shift = len(self._ports), len(self._words), self._beat.bit_length() - 1
        m.submodules.mem = mem = memory.Memory(shape=self._beat * 8, depth=depth,
                                               init=self._words)
        rd = mem.read_port()
        buses = [getattr(self, name) for name in self._ports]
        beat = data.StructLayout({"data": len(buses[0].rdata), "last": 1, "resp": 2,
                                  "id": len(buses[0].rid)})
        index_width = len(buses[0].araddr) - shift

        # The read pipeline: 1, the chosen port's beat and address; 2, the block RAM's output;
        # 3, the beat, into its port's FIFO on the next edge.
        chosen, found = Signal(range(n)), Signal()      # the port read this cycle
        stages = [{"valid": Signal(name=f"valid_{k}"), "port": Signal(range(n), name=f"port_{k}"),
                   "last": Signal(name=f"last_{k}"),
                   "id": Signal.like(buses[0].arid, name=f"id_{k}")} for k in (1, 2, 3)]
        for before, after in zip(stages, stages[1:]):
            m.d.sync += [after[key].eq(before[key]) for key in before]
        address = Signal(index_width)                   # stage 1's index
        inside = [Signal(name=f"inside_{k}") for k in (2, 3)]   # whether it is in the memory
        word = Signal(len(buses[0].rdata))              # stage 3's data
        m.d.comb += rd.addr.eq(address)
        m.d.sync += [inside[0].eq(address < depth), inside[1].eq(inside[0]),
                     word.eq(Mux(inside[0], rd.data, 0))]
        out = stages[2]

        ready, indices, lasts, ids = [], [], [], []
        for i, b in enumerate(buses):
            index = Signal(index_width, name=f"index_{i}")    # next beat to read
            left = Signal(9, name=f"left_{i}")                 # beats of the burst still to read
            more = Signal(name=f"more_{i}")                    # left != 0, as a register
            burst_id = Signal.like(b.arid, name=f"burst_id_{i}")
            # FIFO places neither holding a beat nor promised to a read in flight.
            credit = Signal(range(self.FIFO_DEPTH + 1), init=self.FIFO_DEPTH,
                            name=f"credit_{i}")
            m.submodules[f"fifo_{i}"] = fifo = SyncFIFO(width=beat.size, depth=self.FIFO_DEPTH)
            head = data.View(beat, fifo.r_data)
            m.d.comb += [b.rvalid.eq(fifo.r_rdy), b.rdata.eq(head.data), b.rlast.eq(head.last),
                         b.rresp.eq(head.resp), b.rid.eq(head.id), fifo.r_en.eq(b.rready),
                         fifo.w_en.eq(out["valid"] & (out["port"] == i)),
                         fifo.w_data.eq(Cat(word, out["last"],
                                            Mux(inside[1], OKAY, SLVERR), out["id"]))]
            issued = found & (chosen == i)
            m.d.sync += credit.eq(credit - issued + (b.rvalid & b.rready))
            ready.append(Signal(name=f"ready_{i}"))
            m.d.comb += ready[-1].eq(more & (credit != 0))
            with m.If(issued):
                m.d.sync += [index.eq(index + 1), left.eq(left - 1), more.eq(left != 1)]
            # The next burst once this one's beats are all read; its beats in flight carry
            # their own ID.
            m.d.comb += b.arready.eq(~more)
            with m.If(b.arvalid & b.arready):
                # An address below base wraps to an index past the end: read as outside.
                m.d.sync += [index.eq((b.araddr - self._base)[shift:]), left.eq(b.arlen + 1),
                             more.eq(1), burst_id.eq(b.arid)]
            indices.append(index)
            lasts.append(left == 1)
            ids.append(burst_id)

        # Round robin from turn; candidates are tried lowest priority first, so the highest is
        # assigned last.
        turn = Signal(range(n))                         # where the round robin looks first
        for k in reversed(range(n)):
            for i in range(n):
                with m.If((((turn + k) % n) == i) & ready[i]):
                    m.d.comb += [chosen.eq(i), found.eq(1)]
        first = stages[0]
        m.d.sync += [first["valid"].eq(found), first["port"].eq(chosen)]
        with m.If(found):
            m.d.sync += [turn.eq(chosen + 1), address.eq(select(chosen, indices)),
                         first["last"].eq(select(chosen, lasts)),
                         first["id"].eq(select(chosen, ids))]
        return m

