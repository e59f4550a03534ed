"""Twin of :mod:`hw.system.sequencer`: what the sequencer offers on each of its streams, in order,
when it runs a program (:func:`model.schedule.program`) for one task.

The golden model runs the program's unit commands (:func:`model.golden.run`); this twin gives
the transfers themselves: every read, fetch, command and write with its addresses and fields
resolved, the routes as they change and the stages as they are marked, so that a bench can
compare the hardware's streams with them one payload at a time.
"""

from model.schedule import Address, Command, Fetch, Mark, Read, Route, Shift, Write, Buffer, Port

__all__ = ["STREAMS", "transfers"]

#: The sequencer's output streams.
STREAMS = ("image_read", "params_read", "fetch", "write", "embed_cmd", "attention_cmd",
           "mlp_cmd", "moe_cmd")


def transfers(program, task, *, weights_addr, image_addr, output_addr, shifts):
    """The payloads of each stream (:data:`STREAMS`) as dicts of field values, plus
    ``"routes"`` (``(into_attention, attention_to, into_output)`` of each route operation) and
    ``"marks"`` (the stages marked), for a run of ``program`` for ``task`` with the host's buffer
    addresses and the image's shift table ``shifts``."""
    base = {Buffer.WEIGHTS: weights_addr, Buffer.IMAGE: image_addr}
    out = {name: [] for name in STREAMS + ("routes", "marks")}

    def value(v):
        if isinstance(v, Shift):
            return shifts[v.index]
        if isinstance(v, Address):
            return weights_addr + v.offset
        return int(v)

    for op in program:
        if isinstance(op, Read):
            name = "image_read" if op.port is Port.IMAGE else "params_read"
            out[name].append(dict(addr=base[op.buffer] + op.offset, beats=op.beats,
                                  to=int(op.to)))
        elif isinstance(op, Fetch):
            out["fetch"].append(dict(addr=weights_addr + op.offset, to=int(op.to),
                                     weight_beats=op.weight_beats, bias_beats=op.bias_beats,
                                     w_beats=op.w_beats, b_beats=op.b_beats))
        elif isinstance(op, Command) and op.applies(task):
            out[f"{op.unit.name.lower()}_cmd"].append(
                {name: value(v) for name, v in op.fields})
        elif isinstance(op, Write):
            out["write"].append(dict(addr=output_addr, beats=op.beats))
        elif isinstance(op, Route):
            out["routes"].append((int(op.into_attention), int(op.attention_to),
                                  int(op.into_output)))
        elif isinstance(op, Mark):
            out["marks"].append(op.stage)
    return out
