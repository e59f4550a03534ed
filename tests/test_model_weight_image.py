"""The weights image (model.weight_image): its layout from dimensions alone, the packed bytes
against the packer's records, the checks of malformed images, the buffers and the CLI."""

import json
import struct
import zlib

import numpy as np
import pytest

from model import weight_image as wi
from model.config import M3VIT_TINY, MICRO
from model.numerics import DEFAULT, EDGEMOE
from model.packer import linear_record, moe_layer_image
from model.units.patch_embed import PIXEL_FRAC
from model.quantize import quantize
from model.units.patch_embed import image_bytes
from model.weights import synthetic, synthetic_image



@pytest.fixture(scope="module")
def micro_qm():
    return quantize(synthetic(MICRO, seed=3), DEFAULT)


@pytest.fixture(scope="module")
def micro_image(micro_qm):
    return wi.pack(micro_qm)


def _with_header(data, **changes):
    """``data`` with header fields replaced (CRC kept unless given)."""
    header = wi.read_header(data)
    header.update(changes)
    for name in ("config_name", "numerics"):
        header[name] = header[name].encode() if isinstance(header[name], str) else header[name]
    packed = wi._HEADER.pack(*(header[name] for name, _, _ in wi.HEADER_FIELDS))
    return packed + data[len(packed):]


# The layout.

@pytest.mark.parametrize("config", [MICRO, M3VIT_TINY], ids=lambda c: c.name)
@pytest.mark.parametrize("rows, cols, beat_bytes, ports", [(16, 16, 16, 2), (8, 8, 32, 1)])
def test_layout_sections_are_aligned_and_disjoint(config, rows, cols, beat_bytes, ports):
    lay = wi.layout(config, rows, cols, beat_bytes, ports)
    names = [s.name for s in lay.sections]
    assert len(set(names)) == len(names)
    assert names[:4] == ["header", "shifts", "patch", "pos_embed"]
    for s in lay.sections:
        assert s.offset % wi.SECTION_ALIGN == 0, s.name
        assert s.length == s.beats * beat_bytes > 0, s.name
        if s.kind == "linear":
            # The gates' records count beats of all the expert ports.
            per_beat = ports if ".gate" in s.name else 1
            assert (s.weight_beats + s.bias_beats) * per_beat == s.beats, s.name
    for a, b in zip(lay.sections, lay.sections[1:]):
        assert a.end <= b.offset, (a.name, b.name)
    assert lay.total_bytes % wi.SECTION_ALIGN == 0 and lay.sections[-1].end <= lay.total_bytes


@pytest.mark.parametrize("config", [MICRO, M3VIT_TINY], ids=lambda c: c.name)
def test_layout_follows_the_machine_order(config):
    lay = wi.layout(config)
    for b in range(config.depth):
        tail = ([f"gate{t}" for t in range(config.tasks)] + ["experts"]
                if config.is_moe(b) else ["fc1", "fc2"])
        assert [s.name for s in lay.block_sections(b)] == [
            f"l{b}.{n}" for n in ["ln1", "k", "q", "v", "proj", "ln2", *tail]]
    # Every linear layer has one shift; the experts' two shifts follow their gates'.
    indices = sorted([s.shift for s in lay.sections if s.kind == "linear"]
                     + [i for s in lay.sections if s.kind == "experts"
                        for i in (s.engine["fc1_shift_index"], s.engine["fc2_shift_index"])])
    assert indices == list(range(len(lay.shift_names)))
    assert lay.shift_names[0] == "patch" and lay.shift_index("l0.q") == 2
    assert lay["l0.q"].out_frac == DEFAULT.query.frac and lay["patch"].x_frac == PIXEL_FRAC
    assert len(lay.shift_names) == 1 + 4 * config.depth + sum(
        config.tasks + 2 if config.is_moe(b) else 2 for b in range(config.depth))


def test_m3vit_tiny_figures():
    lay = wi.layout(M3VIT_TINY)
    fc1 = lay["l0.fc1"]
    assert (fc1.weight_beats, fc1.bias_beats) == (768 * 192 * 2 // 16, 768 * 8 // 16)
    e = lay["l1.experts"].engine
    assert e["stride_log2"] == 19 and e["base"] == lay["l1.experts"].offset
    assert lay["l0.ln1"].length == 192 * 2 * 4
    assert lay["pos_embed"].length == 129 * 192 * 4
    assert lay.total_bytes == 56958976


def test_layout_checks_arguments():
    with pytest.raises(ValueError, match="beat_bytes must be a power of two"):
        wi.layout(MICRO, beat_bytes=24)
    with pytest.raises(ValueError, match="rows must be a positive integer"):
        wi.layout(MICRO, rows=0)
    with pytest.raises(TypeError):
        wi.layout("micro")
    with pytest.raises(KeyError, match="no section"):
        wi.layout(MICRO)["l9.q"]


def test_hash_identifies_the_dimensions():
    assert wi.config_hash(MICRO) != wi.config_hash(M3VIT_TINY)
    assert wi.config_hash(MICRO) != wi.config_hash(MICRO, beat_bytes=32)
    assert wi.config_hash(MICRO) == wi.config_hash(MICRO)


# Packing.

def test_pack_is_the_layout_size_and_passes_check(micro_image):
    assert len(micro_image) == wi.layout(MICRO).total_bytes
    header = wi.check(micro_image, MICRO)
    assert header["config_name"] == "micro" and header["dim"] == MICRO.dim


def test_linear_sections_are_the_packer_records(micro_qm, micro_image):
    lay, act = wi.layout(MICRO), DEFAULT.act
    shifts = wi.read_shifts(micro_image, MICRO)
    cases = {"patch": (micro_qm["patch_weight"], micro_qm["patch_bias"], PIXEL_FRAC, act.frac)}
    for part in ("k", "q", "v", "proj"):
        cases[f"l0.{part}"] = (micro_qm.block(0, f"{part}_weight"),
                               micro_qm.block(0, f"{part}_bias"), act.frac,
                               (DEFAULT.query if part == "q" else act).frac)
    cases["l0.fc2"] = (micro_qm.block(0, "fc2_weight"), micro_qm.block(0, "fc2_bias"), act.frac,
                       act.frac)
    for name, (w, b, x_frac, out_frac) in cases.items():
        s = lay[name]
        data, wb, bb, shift = linear_record(w, b, x_frac, out_frac, 16, 16, 16)
        assert micro_image[s.offset:s.end] == data, name
        assert shifts[name] == shift


def test_moe_block_is_what_the_expert_engine_reads(micro_qm, micro_image):
    lay = wi.layout(MICRO)
    shifts = list(wi.read_shifts(micro_image, MICRO).values())
    base = 0x4000_0000
    for task in range(MICRO.tasks):
        gate = lay[f"l1.gate{task}"]
        records, fields = moe_layer_image(micro_qm, 1, task, 16, 16, ports=2,
                                          gate_at=gate.offset,
                                          experts_at=lay["l1.experts"].offset)
        for addr, data in records.items():
            assert micro_image[addr:addr + len(data)] == data
        engine = lay.expert_engine_fields(1, task, shifts=shifts)
        assert engine == fields
        moved = lay.expert_engine_fields(1, task, weights_addr=base, shifts=shifts)
        assert moved["base"] == base + fields["base"]
        assert moved["gate_addr"] == base + gate.offset
    with pytest.raises(ValueError, match="not a MoE block"):
        lay.expert_engine_fields(0, 0)
    with pytest.raises(ValueError, match="task must be"):
        lay.expert_engine_fields(1, 2)


def test_layernorm_and_position_embedding_words(micro_qm, micro_image):
    lay, L = wi.layout(MICRO), 16
    s = lay["l1.ln2"]
    words = np.frombuffer(micro_image[s.offset:s.end], dtype="<i4").reshape(-1, 2, L)
    assert words.shape[0] == MICRO.dim // L
    assert (words[:, 0].reshape(-1) == micro_qm.block(1, "norm2_weight").ints).all()
    assert (words[:, 1].reshape(-1) == micro_qm.block(1, "norm2_bias").ints).all()
    assert (words[:, 1] < 0).any()      # sign-extended
    s = lay["pos_embed"]
    pos = np.frombuffer(micro_image[s.offset:s.end], dtype="<i4").reshape(MICRO.tokens, -1)
    assert (pos[:, :MICRO.dim] == micro_qm["pos_embed"].ints).all()


def test_padding_is_zero(micro_image):
    lay = wi.layout(MICRO)
    used = np.zeros(len(micro_image), dtype=bool)
    for s in lay.sections:
        if s.kind == "experts":
            e = s.engine
            size = (e["fc1_weight_beats"] + e["fc1_bias_beats"] + e["fc2_weight_beats"]
                    + e["fc2_bias_beats"]) * lay.beat_bytes * lay.expert_ports
            for x in range(e["experts"]):
                start = s.offset + (x << e["stride_log2"])
                used[start:start + size] = True
        elif s.kind == "header":
            used[:wi._HEADER.size] = True
        elif s.kind == "shifts":
            used[s.offset:s.offset + len(lay.shift_names)] = True
        else:
            used[s.offset:s.end] = True
    assert not np.frombuffer(micro_image, dtype=np.uint8)[~used].any()


def test_pack_other_array_and_port():
    qm = quantize(synthetic(MICRO, seed=1), DEFAULT)
    data = wi.pack(qm, rows=8, cols=8, beat_bytes=32)
    wi.check(data, MICRO, 8, 8, 32)
    s = wi.layout(MICRO, 8, 8, 32)["l0.k"]
    w = qm.block(0, "k_weight")
    assert data[s.offset:s.end] == linear_record(w, qm.block(0, "k_bias"), DEFAULT.act.frac,
                                                 DEFAULT.act.frac, 8, 8, 32)[0]


def test_pack_m3vit_tiny():
    data = wi.pack(quantize(synthetic(M3VIT_TINY, seed=0), DEFAULT))
    assert wi.check(data, M3VIT_TINY)["total_bytes"] == len(data)


def test_pack_refuses_other_numerics():
    with pytest.raises(ValueError, match="default numerics"):
        wi.pack(quantize(synthetic(MICRO), EDGEMOE))


# Malformed images.

@pytest.mark.parametrize("mangle, message", [
    (lambda d: d[:64], "too short"),
    (lambda d: b"ELF\x7f" + d[4:], "not a weights image"),
    (lambda d: _with_header(d, version=2 << 16), r"format 2\.0, this software reads 1\.x"),
    (lambda d: _with_header(d, config_hash=1, dim=64),
     r"other dimensions than micro: dim 64 \(want 32\)"),
    (lambda d: _with_header(d, config_hash=1, beat_bytes=32),
     "packed for a 16 x 16 array, 32-byte beats and 2 expert ports"),
    (lambda d: _with_header(d, config_hash=1, expert_ports=1), "and 1 expert port,"),
    (lambda d: _with_header(d, config_hash=1, numerics=b"edgemoe"), "numerics 'edgemoe'"),
    (lambda d: _with_header(d, total_bytes=4096), "header says 4096 bytes"),
    (lambda d: d[:-4096], "truncated"),
    (lambda d: d + bytes(16), "followed by extra bytes"),
    (lambda d: d[:0x3000] + bytes([d[0x3000] ^ 1]) + d[0x3001:], "damaged: CRC-32"),
])
def test_check_says_what_is_wrong(micro_image, mangle, message):
    with pytest.raises(wi.ImageError, match=message) as info:
        wi.check(mangle(micro_image), MICRO)
    if "too short" not in message:
        assert "python -m model.weight_image --config micro" in str(info.value)


def test_check_names_both_configurations(micro_image):
    with pytest.raises(ValueError, match=r"weights image was packed for micro, this bitstream "
                                         r"is m3vit-tiny: run python -m model\.weight_image "
                                         r"--config m3vit-tiny"):
        wi.check(micro_image, M3VIT_TINY)


def test_check_covers_the_shift_table(micro_image):
    table = wi.layout(MICRO)["shifts"].offset
    bad = bytearray(micro_image)
    bad[table] += 1
    with pytest.raises(wi.ImageError, match="CRC"):
        wi.check(bytes(bad), MICRO)
    assert zlib.crc32(micro_image[4096:]) == wi.read_header(micro_image)["body_crc32"]


# The image and output buffers.

def test_output_round_trip_sign_extended():
    rng = np.random.default_rng(0)
    act = DEFAULT.act
    y = rng.integers(act.min_int, act.max_int + 1, (MICRO.tokens, MICRO.dim))
    data = wi.pack_output(y, MICRO)
    out = wi.output_layout(MICRO)
    assert len(data) == out.length == MICRO.tokens * out.row_bytes
    assert struct.unpack_from("<i", data, 0)[0] == y[0, 0]
    assert (wi.unpack_output(data, MICRO) == y).all()
    assert wi.output_layout(M3VIT_TINY).length == 129 * 192 * 4
    with pytest.raises(ValueError, match="bytes, not"):
        wi.unpack_output(data[:-1], MICRO)
    with pytest.raises(ValueError, match="output must be"):
        wi.pack_output(y[1:], MICRO)


def test_input_is_the_patch_major_image():
    image = synthetic_image(MICRO, seed=2)
    data = wi.input_bytes(image, MICRO)
    assert data == image_bytes(image, MICRO.patch)
    assert len(data) == wi.input_layout(MICRO).length == 3 * 16 * 16
    assert wi.input_layout(M3VIT_TINY).length == 3 * 128 * 256
    with pytest.raises(ValueError, match="the image of micro is"):
        wi.input_bytes(image[:, :8], MICRO)


# The command line.

def test_cli_prints_the_layout(capsys):
    wi.main(["--config", "micro"])
    out = capsys.readouterr().out
    assert "weights image of micro: 122880 bytes" in out and "l1.experts" in out
    wi.main(["--config", "micro", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["total_bytes"] == wi.layout(MICRO).total_bytes
    assert [s["name"] for s in doc["sections"]][:2] == ["header", "shifts"]
    wi.main(["--config", "micro", "--markdown"])
    assert "| 0x16000 |" in capsys.readouterr().out


def test_cli_writes_an_image(tmp_path, capsys):
    path = tmp_path / "micro.img"
    wi.main(["--config", "micro", "--synthetic", "5", "--out", str(path)])
    data = path.read_bytes()
    wi.check(data, MICRO)
    assert data == wi.pack(quantize(synthetic(MICRO, seed=5), DEFAULT))
    assert f"wrote {len(data)} bytes" in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        wi.main(["--config", "m3vit-huge"])
    assert "choose one of: m3vit-tiny, micro, nano" in capsys.readouterr().err
    with pytest.raises(SystemExit, match=f"weights directory {tmp_path}/absent does not exist"):
        wi.main(["--config", "micro", "--weights", str(tmp_path / "absent"), "--out",
                 str(tmp_path / "x.img")])
    with pytest.raises(SystemExit):
        wi.main(["--config", "micro", "--out", str(tmp_path / "x.img")])
    assert "give --weights DIR or --synthetic SEED" in capsys.readouterr().err


def test_docs_hold_the_generated_layout():
    from pathlib import Path
    docs = (Path(__file__).resolve().parent.parent / "docs" / "host.md").read_text()
    assert wi.markdown(wi.layout(M3VIT_TINY)) in docs, (
        "docs/host.md differs from model/weight_image.py; paste the output of "
        "`python -m model.weight_image --config m3vit-tiny --markdown` into it")
    assert wi.summary(wi.layout(MICRO)) in docs


def test_cli_checks_an_image(tmp_path, capsys):
    path = tmp_path / "micro.img"
    assert wi.main(["--config", "micro", "--synthetic", "5", "--out", str(path)]) is None
    assert [p.name for p in tmp_path.iterdir()] == ["micro.img"], "a temporary file was left"
    capsys.readouterr()
    assert wi.main(["--config", "micro", "--check", str(path)]) == 0
    assert "a weights image of micro for the zcu102 machine" in capsys.readouterr().out
    assert wi.main(["--config", "m3vit-tiny", "--check", str(path)]) == 1
    assert "packed for micro, this bitstream is m3vit-tiny" in capsys.readouterr().err
    path.write_bytes(path.read_bytes()[:-16])
    assert wi.main(["--config", "micro", "--check", str(path)]) == 1
    assert "truncated" in capsys.readouterr().err
    assert wi.main(["--config", "micro", "--check", str(tmp_path / "none.img")]) == 1
    assert "cannot read it: No such file" in capsys.readouterr().err


def test_check_refuses_a_shift_outside_the_field():
    data = bytearray(wi.pack(quantize(synthetic(MICRO, seed=5), DEFAULT)))
    lay = wi.layout(MICRO)
    data[lay["shifts"].offset] = wi.MAX_SHIFT + 1        # would wrap to 0 in 6 bits
    # ... under a valid CRC, as a packer with another idea of the field would write it.
    names = [name for name, _, _ in wi.HEADER_FIELDS]
    crc_at = struct.calcsize("<" + "".join(f for _, f, _ in wi.HEADER_FIELDS[:names.index(
        "body_crc32")]))
    data[crc_at:crc_at + 4] = zlib.crc32(data[lay.sections[1].offset:]).to_bytes(4, "little")
    with pytest.raises(wi.ImageError, match=r"outside 1..63 \(the compute unit.s shift "
                                             r"field\): patch 64"):
        wi.check(bytes(data), MICRO)
