# amaranth: UnusedElaboratable=no
"""Memory words <-> activation lanes (hw/streams/words.py) against the int32 layout of
model.weight_image, in Amaranth's simulator with idles and back-pressure."""

import numpy as np
import pytest

from hw.streams.words import LanesToWords, WordsToLanes
from model.weight_image import pack_output, unpack_output
from model.config import MICRO
from sim.pysim import stream_through

RNG = np.random.default_rng(0)


def _beats(data, beat_bytes):
    return [int.from_bytes(data[i:i + beat_bytes], "little")
            for i in range(0, len(data), beat_bytes)]


@pytest.mark.parametrize("data_width", [32, 64, 128])
@pytest.mark.parametrize("idle, backpressure", [(0.0, 0.0), (0.4, 0.5)])
def test_round_trip_through_memory_words(data_width, idle, backpressure):
    lanes, width = 16, 26
    values = RNG.integers(-(1 << 25), 1 << 25, size=(5, lanes))
    values[0, :2] = [-(1 << 25), (1 << 25) - 1]
    memory = values.astype("<i4").tobytes()
    beats = _beats(memory, data_width // 8)
    got, _, _ = stream_through(WordsToLanes(lanes=lanes, width=width, data_width=data_width),
                               beats, list, idle=idle, backpressure=backpressure,
                               expect=len(values))
    assert np.array(got).tolist() == values.tolist()
    words, _, _ = stream_through(LanesToWords(lanes=lanes, width=width, data_width=data_width),
                                 [list(map(int, row)) for row in values], int, idle=idle,
                                 backpressure=backpressure, expect=len(beats))
    assert words == beats


def test_output_layout_is_what_lanes_to_words_writes():
    """The machine's output (LanesToWords over token rows) is model.weight_image's layout."""
    values = RNG.integers(-(1 << 25), 1 << 25, size=(MICRO.tokens, MICRO.dim))
    rows = [list(map(int, chunk)) for chunk in values.reshape(-1, 16)]
    words, _, _ = stream_through(LanesToWords(lanes=16, width=26), rows, int,
                                 expect=len(rows) * 4)
    data = b"".join(w.to_bytes(16, "little") for w in words)
    assert data == pack_output(values, MICRO)
    assert (unpack_output(data, MICRO) == values).all()


def test_bad_widths():
    with pytest.raises(ValueError, match="whole 32-bit words"):
        WordsToLanes(lanes=16, width=26, data_width=48)
    with pytest.raises(ValueError, match="divides lanes"):
        LanesToWords(lanes=2, width=26, data_width=128)
