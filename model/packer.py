"""Host-side layout of parameters exactly as the hardware reads them.

The shared compute unit (``hw/units/compute_unit.py``) holds a matrix as tiles of ``cols x rows``
weights, ``cols`` outputs by ``rows`` inputs, in the order it computes them: output tile by
output tile, and within one, input chunk by input chunk. Matrices that are not tile multiples
are padded with zero weights, so padded inputs contribute nothing whatever their value.

Each output tile also has ``cols`` bias words at accumulator precision, with the rounding half of
the output shift folded in: the array starts each dot product from this word, and a plain shift
of the sum then rounds half up, as ``numerics.shift_round`` does.
"""

import numpy as np

__all__ = ["tiles", "linear_weight_tiles", "weight_beats", "bias_words", "linear_record", "planes",
           "BIAS_WORD_BYTES", "WEIGHT_BYTES", "linear_record_beats", "expert_record_layout",
           "moe_layer_records", "moe_layer_image"]


def tiles(n, size):
    """Tiles of ``size`` needed for ``n`` elements."""
    return -(-n // size)


def linear_weight_tiles(w, rows, cols):
    """``w`` (int [out][in]) as tiles ``[out_tiles * in_tiles][cols][rows]`` in compute order."""
    w = np.asarray(w, dtype=np.int64)
    out, inp = w.shape
    ot, it = tiles(out, cols), tiles(inp, rows)
    padded = np.zeros((ot * cols, it * rows), dtype=np.int64)
    padded[:out, :inp] = w
    return padded.reshape(ot, cols, it, rows).transpose(0, 2, 1, 3).reshape(ot * it, cols, rows)


def weight_beats(tile_array, lanes):
    """Tiles as a stream of beats of ``lanes`` weights; tile element ``c * rows + r`` in order."""
    flat = np.asarray(tile_array).reshape(-1)
    if flat.size % lanes:
        raise ValueError(f"a tile of {tile_array.shape[1] * tile_array.shape[2]} weights does "
                         f"not split into beats of {lanes}")
    return flat.reshape(-1, lanes)


def bias_words(b, out, cols, acc_frac, shift):
    """Accumulator start values ``[out_tiles][cols]``: bias aligned to ``acc_frac`` fraction bits
    plus half an output LSB (``shift`` > 0 bits are dropped at the output)."""
    if shift < 1:
        raise ValueError(f"the output shift must be at least 1 bit, not {shift}")
    words = np.zeros(tiles(out, cols) * cols, dtype=np.int64)
    if b is not None:
        if b.fmt.frac > acc_frac:
            raise ValueError(f"bias with {b.fmt.frac} fraction bits cannot be aligned to "
                             f"{acc_frac}")
        words[:out] = np.asarray(b.ints, dtype=np.int64) << (acc_frac - b.fmt.frac)
    return (words + (1 << (shift - 1))).reshape(-1, cols)


#: Bytes of one bias word in memory (the accumulator is at most 64 bits wide).
BIAS_WORD_BYTES = 8
#: Bytes of one weight in memory.
WEIGHT_BYTES = 2


def linear_record_beats(out, inp, rows, cols, beat_bytes=16):
    """``(weight_beats, bias_beats)`` of :func:`linear_record` for an ``out x inp`` matrix, from
    its dimensions alone."""
    weight_bytes = tiles(out, cols) * tiles(inp, rows) * rows * cols * WEIGHT_BYTES
    bias_bytes = tiles(out, cols) * cols * BIAS_WORD_BYTES
    return tiles(weight_bytes, beat_bytes), tiles(bias_bytes, beat_bytes)


def expert_record_layout(dim, hidden, rows, cols, beat_bytes=16):
    """Where an expert's records lie relative to its slot, from dimensions alone: the expert
    engine's fields ``stride_log2`` (slot ``e`` at ``base + (e << stride_log2)``, the smallest
    power of two holding fc1 and fc2), ``fc2_offset`` (fc2 right after fc1) and the beats of
    each region."""
    fc1 = linear_record_beats(hidden, dim, rows, cols, beat_bytes)
    fc2 = linear_record_beats(dim, hidden, rows, cols, beat_bytes)
    fc1_bytes, fc2_bytes = sum(fc1) * beat_bytes, sum(fc2) * beat_bytes
    return dict(stride_log2=(fc1_bytes + fc2_bytes - 1).bit_length(), fc2_offset=fc1_bytes,
                fc1_weight_beats=fc1[0], fc1_bias_beats=fc1[1],
                fc2_weight_beats=fc2[0], fc2_bias_beats=fc2[1])


def linear_record(w, b, x_frac, out_frac, rows, cols, beat_bytes=16):
    """One linear layer as the hardware fetches it from memory: its weight tiles (16-bit
    little-endian, tile element ``c * rows + r`` in order), then its bias words (64-bit
    little-endian, ``cols`` per output tile), each region padded to whole beats.

    Returns ``(data, weight_beats, bias_beats, shift)``: the bytes, the beats of each region and
    the call's output shift.
    """
    # A product of an input (x_frac fraction bits) and a weight (w.fmt.frac) has the sum of
    # their fraction bits, and so has the dot product; dropping ``shift`` bits of it leaves
    # out_frac. The bias is aligned to the sum's fraction bits (bias_words), so its own format
    # does not enter the shift.
    shift = x_frac + w.fmt.frac - out_frac
    weights = linear_weight_tiles(w.ints, rows, cols).reshape(-1).astype("<i2").tobytes()
    words = bias_words(b, w.ints.shape[0], cols, x_frac + w.fmt.frac, shift)
    biases = words.reshape(-1).astype("<i8").tobytes()
    weights += bytes(-len(weights) % beat_bytes)
    biases += bytes(-len(biases) % beat_bytes)
    return weights + biases, len(weights) // beat_bytes, len(biases) // beat_bytes, shift


def planes(record, ports, port_bytes):
    """A record of ``ports x port_bytes``-byte beats as ``ports`` planes one after the other:
    plane ``p`` holds bytes ``p * port_bytes`` to ``(p + 1) * port_bytes`` of every beat, so
    memory port ``p`` reads it in plain bursts and the beats are whole again side by side
    (:class:`hw.movers.linear_fetch.LinearFetch`). One port: the record as it is."""
    beat = ports * port_bytes
    if len(record) % beat:
        raise ValueError(f"a record of {len(record)} bytes is not whole {beat}-byte beats")
    if ports == 1:
        return bytes(record)
    beats = np.frombuffer(bytes(record), np.uint8).reshape(-1, ports, port_bytes)
    return beats.transpose(1, 0, 2).tobytes()


def moe_layer_records(qm, block, rows, cols, *, beat_bytes=16, ports=1, gate_addrs,
                      experts_at):
    """Records of one MoE layer with one gate record per task: task ``t``'s gate at
    ``gate_addrs[t]``, expert ``e``'s fc1 record at ``experts_at + (e << stride_log2)`` with
    its fc2 record right after (:func:`expert_record_layout`). Read over ``ports`` memory ports
    of ``beat_bytes`` at once, a record counts beats of ``ports x beat_bytes`` and is stored as
    that many planes (:func:`planes`).

    Returns ``(records, fields, gates)``: ``{address: bytes}``; the expert engine's fields
    shared by every task (``base``, ``stride_log2``, ``fc2_offset``, beats and shifts of fc1
    and fc2); and per task the gate's fields ``{task: dict(gate_addr, gate_weight_beats,
    gate_bias_beats, gate_shift)}``.
    """
    cfg = qm.config
    if not cfg.is_moe(block):
        raise ValueError(f"block {block} is not a MoE block (MoE blocks: {cfg.moe_blocks})")
    from model.system.moe_half import expert_params
    act = qm.numerics.act.frac
    beat = ports * beat_bytes
    records, gates = {}, {}
    for task, addr in gate_addrs.items():
        if not (isinstance(task, int) and 0 <= task < cfg.tasks):
            raise ValueError(f"task must be an integer in 0..{cfg.tasks - 1}, not {task!r}")
        gate, wb, bb, shift = linear_record(qm.block(block, f"gate{task}_weight"), None, act,
                                            act, rows, cols, beat)
        records[addr] = planes(gate, ports, beat_bytes)
        gates[task] = dict(gate_addr=addr, gate_weight_beats=wb, gate_bias_beats=bb,
                           gate_shift=shift)
    shape = expert_record_layout(cfg.dim, cfg.expert_hidden, rows, cols, beat)
    for e in range(cfg.experts):
        w1, b1, w2, b2 = expert_params(qm, block, e)
        fc1 = linear_record(w1, b1, act, act, rows, cols, beat)
        fc2 = linear_record(w2, b2, act, act, rows, cols, beat)
        if e == 0:
            fields = dict(base=experts_at, **shape, fc1_shift=fc1[3], fc2_shift=fc2[3])
        records[experts_at + (e << shape["stride_log2"])] = (planes(fc1[0], ports, beat_bytes)
                                                              + planes(fc2[0], ports, beat_bytes))
    return records, fields, gates


def moe_layer_image(qm, block, task, rows, cols, *, beat_bytes=16, ports=1, gate_at=0x1000,
                    experts_at=0x10000):
    """Memory image of one MoE layer for the expert engine (``hw/units/expert_engine.py``): the
    task's
    gate record at ``gate_at``, expert ``e``'s fc1 record at ``experts_at + (e << stride_log2)``
    with its fc2 record right after.

    Records are counted in beats of ``ports x beat_bytes`` (the AXI ports' width), each stored
    as ``ports`` planes (:func:`moe_layer_records`). Returns ``(records,
    fields)``: ``{address: bytes}`` and the engine's layer command fields (without ``tokens``).
    :func:`moe_layer_records` lays out the gates of several tasks.
    """
    cfg = qm.config
    if not cfg.is_moe(block):
        raise ValueError(f"block {block} is not a MoE block (MoE blocks: {cfg.moe_blocks})")
    if not (isinstance(task, int) and 0 <= task < cfg.tasks):
        raise ValueError(f"task must be an integer in 0..{cfg.tasks - 1}, not {task!r}")
    records, fields, gates = moe_layer_records(qm, block, rows, cols, beat_bytes=beat_bytes,
                                               ports=ports, gate_addrs={task: gate_at},
                                               experts_at=experts_at)
    if gate_at + len(records[gate_at]) > experts_at:
        raise ValueError("the gate record overlaps the expert records")
    return records, {**fields, **gates[task]}
