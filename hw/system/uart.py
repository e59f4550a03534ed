"""A serial transmitter (UART, 8N1): how a board without a host prints a line.

:class:`UartTx` sends each byte of its stream as a start bit, eight data bits LSB first and a
stop bit, each bit ``divisor`` cycles long (217 at 25 MHz gives 115,200 baud).
"""

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw import checks

__all__ = ["UartTx"]


class UartTx(wiring.Component):
    """8N1 transmitter.

    Latency: ``tx`` falls for the start bit the cycle after a byte is taken. Throughput: one byte
    per ``10 * divisor`` cycles (``i.ready`` is high whenever the line is idle).

    Parameters
    ----------
    divisor : int
        Cycles per bit: the clock frequency over the baud rate, at least 1.

    Members
    -------
    i : ``In(stream.Signature(8))``
    tx : ``Out(1)``, idle high
    """

    def __init__(self, divisor):
        checks.positive("UartTx", "divisor", divisor)
        self._divisor = divisor
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        bits = Signal(9)                                # data bits then the stop bit, LSB first
        left = Signal(range(11))                        # bit times still to send
        timer = Signal(range(self._divisor))
        m.d.comb += self.i.ready.eq(left == 0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.tx.eq(0), bits.eq(Cat(self.i.payload, 1)), left.eq(10),
                         timer.eq(self._divisor - 1)]
        with m.Elif(left != 0):
            m.d.sync += timer.eq(timer - 1)
            with m.If(timer == 0):
                m.d.sync += [left.eq(left - 1), timer.eq(self._divisor - 1)]
                with m.If(left != 1):
                    m.d.sync += [self.tx.eq(bits[0]), bits.eq(bits >> 1)]
        return m
