"""The layout as a text table (:func:`summary`) or Markdown tables for docs/host.md
(:func:`markdown`), and the command line, ``python -m model.weight_image`` (:func:`main`)."""

import argparse
import json
import os
import struct
import sys
import tempfile

from ..config import CONFIGS, config_by_name
from ..numerics import DEFAULT
from model.weight_image.buffers import input_layout, output_layout
from model.weight_image.checking import _ports
from model.weight_image.format import _HEADER, FORMAT_VERSION, HEADER_FIELDS
from model.weight_image.packing import pack


def _describe(s):
    if s.kind == "linear":
        return (f"{s.out_features} x {s.in_features}, {s.weight_beats} weight + "
                f"{s.bias_beats} bias beats, shift[{s.shift}]")
    if s.kind == "experts":
        e = s.engine
        return (f"{e['experts']} x (fc1 {e['fc1_weight_beats']}+{e['fc1_bias_beats']}, fc2 "
                f"{e['fc2_weight_beats']}+{e['fc2_bias_beats']} beats at +{e['fc2_offset']:#x}),"
                f" stride 2**{e['stride_log2']}, shift[{e['fc1_shift_index']}], "
                f"shift[{e['fc2_shift_index']}]")
    if s.kind == "layernorm":
        return "gamma | beta groups"
    if s.kind == "shifts":
        return "one byte per linear layer"
    if s.kind == "pos_embed":
        return "tokens x dim int32"
    return f"{_HEADER.size} bytes used"


def summary(lay):
    """The layout as a text table."""
    lines = [f"weights image of {lay.config.name}: {lay.total_bytes} bytes "
             f"({lay.total_bytes / 2**20:.2f} MiB), {len(lay.sections)} sections, array "
             f"{lay.rows} x {lay.cols}, {lay.beat_bytes}-byte beats, "
             f"{_ports(lay.expert_ports)}, hash {lay.hash:#018x} (LAYOUT_HASH)",
             f"{'offset':>10} {'bytes':>9} {'beats':>7}  {'section':<14} contents"]
    for s in lay.sections:
        lines.append(f"{s.offset:#10x} {s.length:9d} {s.beats:7d}  {s.name:<14} {_describe(s)}")
    inp, out = input_layout(lay.config, lay.beat_bytes), output_layout(lay.config,
                                                                         lay.beat_bytes)
    lines.append(f"image buffer: {inp.length} bytes ({inp.rows} patches x {inp.values} "
                 f"pixel bytes); output buffer: {out.length} bytes ({out.rows} tokens x "
                 f"{out.row_bytes} bytes)")
    return "\n".join(lines)


def markdown(lay):
    """The layout as Markdown tables (for docs/host.md): header fields, sections, shift table."""
    inp, out = input_layout(lay.config, lay.beat_bytes), output_layout(lay.config,
                                                                         lay.beat_bytes)
    lines = [f"Weights image of **{lay.config.name}** ({lay.rows} x {lay.cols} array, "
             f"{lay.beat_bytes}-byte beats, {_ports(lay.expert_ports)}, format "
             f"{FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}): "
             f"**{lay.total_bytes} bytes**, hash `{lay.hash:#018x}` (the bitstream's "
             f"LAYOUT_HASH). Image buffer {inp.length} bytes, output buffer "
             f"{out.length} bytes ({out.rows} rows of {out.row_bytes}).", "",
             "Header (little-endian, packed, at offset 0):", "",
             "| offset | field | type | meaning |", "|---:|---|---|---|"]
    offset = 0
    for name, code, meaning in HEADER_FIELDS:
        size = struct.calcsize("<" + code)
        kind = {"I": "u32", "H": "u16", "Q": "u64", "d": "f64"}.get(code, f"{size} bytes")
        lines.append(f"| {offset} | {name} | {kind} | {meaning} |")
        offset += size
    lines += ["", "Sections:", "",
              "| offset | bytes | beats | section | contents |", "|---:|---:|---:|---|---|"]
    for s in lay.sections:
        lines.append(f"| 0x{s.offset:X} | {s.length} | {s.beats} | {s.name} | {_describe(s)} |")
    lines += ["", "Shift table (byte index: linear layer): " + ", ".join(
        f"{i}: {n}" for i, n in enumerate(lay.shift_names)) + "."]
    return "\n".join(lines) + "\n"


def _load(args, config):
    from ..quantize import quantize
    from ..weights import WeightsError, load_edge_moe, synthetic
    if args.synthetic is not None:
        return quantize(synthetic(config, seed=args.synthetic), DEFAULT)
    directory = os.path.abspath(args.weights)
    if not os.path.isdir(directory):
        raise SystemExit(f"error: weights directory {directory} does not exist (looked for "
                         f"<tensor>.float32.bin files there); the published Edge-MoE tensors "
                         f"live in ../shared/edge-moe/weights or $EDGEMOE_WEIGHTS, or use "
                         f"--synthetic SEED")
    try:
        return quantize(load_edge_moe(directory, config), DEFAULT)
    except WeightsError as e:
        raise SystemExit(f"error: {e}") from None


def main(argv=None):
    from . import __doc__ as overview     # the package's, which says what the image is
    parser = argparse.ArgumentParser(
        prog="python -m model.weight_image", description=overview.split("\n\n")[0],
        epilog="Without --out or --check, prints the layout only.")
    parser.add_argument("--config", default="m3vit-tiny",
                        help=f"model configuration: {', '.join(CONFIGS)} (default m3vit-tiny)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", metavar="DIR", help="Edge-MoE weight directory")
    source.add_argument("--synthetic", metavar="SEED", type=int,
                        help="seeded synthetic weights instead")
    parser.add_argument("--out", metavar="FILE",
                        help="write the image here (whole or not at all: through a temporary "
                             "file renamed into place)")
    parser.add_argument("--check", metavar="FILE",
                        help="check an existing image against the configuration and machine: "
                             "size, header, hash, CRC and shift table; exit 1 if it does not "
                             "fit")
    parser.add_argument("--machine", default="zcu102",
                        help="the machine preset the image is for (model.machine; default "
                             "zcu102): its array, memory beat and expert ports fix the layout")
    parser.add_argument("--json", action="store_true", help="print the layout as JSON")
    parser.add_argument("--markdown", action="store_true",
                        help="print the layout as Markdown tables")
    args = parser.parse_args(argv)
    try:
        from ..machine import machine_by_name
        config, machine = config_by_name(args.config), machine_by_name(args.machine)
        lay = machine.layout(config)
    except ValueError as e:
        parser.error(str(e))
    if args.out and args.weights is None and args.synthetic is None:
        parser.error("--out needs the weights: give --weights DIR or --synthetic SEED")
    if args.check:
        return _check_file(args.check, config, machine)
    if args.json:
        print(json.dumps(lay.to_json(), indent=1))
    elif args.markdown:
        sys.stdout.write(markdown(lay))
    else:
        print(summary(lay))
    if args.out:
        data = pack(_load(args, config), **machine.image_shape)
        _write_whole(args.out, data)
        print(f"wrote {len(data)} bytes to {args.out}", file=sys.stderr if args.json else
              sys.stdout)


def _write_whole(path, data):
    """Write ``data`` to ``path`` through a temporary file in the same directory, renamed into
    place: an interrupted write leaves the old file (or none), never half an image."""
    path = os.path.abspath(path)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".part",
                               dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _check_file(path, config, machine):
    """``--check``: one line saying whether the image at ``path`` fits; the exit status."""
    from .checking import ImageError, check
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        print(f"{path}: cannot read it: {e.strerror}", file=sys.stderr)
        return 1
    try:
        header = check(data, config, **machine.image_shape)
    except ImageError as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 1
    print(f"{path}: a weights image of {config.name} for the {machine.name} machine, "
          f"{len(data)} bytes, hash {header['config_hash']:#018x}, CRC and shift table good")
    return 0
