"""An existing weights image: :func:`check` validates it against the configuration a bitstream
was built for, and says how to make one that fits; :func:`read_header` and :func:`read_shifts`
read it."""

import zlib

from ..numerics import DEFAULT
from model.weight_image.format import (_DIMS, _HEADER, FORMAT_MAGIC, FORMAT_VERSION, HEADER_FIELDS,
                                       MAX_SHIFT)
from model.weight_image.sections import layout


class ImageError(ValueError):
    """A weights image that does not fit the configuration, or is damaged."""


def read_header(data):
    """The header of an image as a dict (no checks beyond its length)."""
    if len(data) < _HEADER.size:
        raise ImageError(f"{len(data)} bytes are too short for a weights image (its header "
                         f"alone is {_HEADER.size} bytes)")
    values = dict(zip((name for name, _, _ in HEADER_FIELDS),
                      _HEADER.unpack_from(bytes(data[:_HEADER.size]))))
    for name in ("config_name", "numerics"):
        values[name] = values[name].rstrip(b"\0").decode("ascii", "replace")
    return values


def _ports(n):
    return f"{n} expert port{'s' * (n != 1)}"


def _repack_hint(config, rows, cols, beat_bytes, expert_ports):
    from ..machine import MACHINES
    shape = dict(rows=rows, cols=cols, beat_bytes=beat_bytes, expert_ports=expert_ports)
    names = [m.name for m in MACHINES.values() if m.image_shape == shape]
    machine = (f" --machine {names[0]}" if names else
               f" --machine <a preset of a {rows} x {cols} array, {beat_bytes}-byte beats and "
               f"{_ports(expert_ports)} (model.machine)>")
    return (f"run python -m model.weight_image --config {config.name}{machine} "
            f"--weights DIR --out FILE")


def check(data, config, rows=16, cols=16, beat_bytes=16, expert_ports=2):
    """Validate a weights image for a machine built for ``config`` (and these layout
    parameters); return its header.

    Raises
    ------
    ImageError
        (a ``ValueError``) saying what is wrong and how to make a fitting image.
    """
    lay = layout(config, rows, cols, beat_bytes, expert_ports)
    hint = _repack_hint(config, rows, cols, beat_bytes, expert_ports)
    h = read_header(data)
    if h["magic"] != FORMAT_MAGIC:
        raise ImageError(f"not a weights image: it starts with {h['magic']!r}, not "
                         f"{FORMAT_MAGIC!r}; {hint}")
    major, minor = h["version"] >> 16, h["version"] & 0xFFFF
    if major != FORMAT_VERSION[0]:
        raise ImageError(f"weights image format {major}.{minor}, this software reads "
                         f"{FORMAT_VERSION[0]}.x: {hint}")
    if h["config_hash"] != lay.hash:
        theirs = {name: h[name] for name in _DIMS}
        ours = {name: getattr(config, name) for name in _DIMS}
        if h["config_name"] != config.name:
            what = f"was packed for {h['config_name']}, this bitstream is {config.name}"
        elif theirs != ours:
            diff = ", ".join(f"{k} {theirs[k]} (want {ours[k]})" for k in ours
                             if theirs[k] != ours[k])
            what = f"has other dimensions than {config.name}: {diff}"
        elif (h["rows"], h["cols"], h["beat_bytes"], h["expert_ports"] or 1) != (
                rows, cols, beat_bytes, expert_ports):
            what = (f"was packed for a {h['rows']} x {h['cols']} array, {h['beat_bytes']}-byte "
                    f"beats and {_ports(h['expert_ports'] or 1)}, this machine has {rows} x "
                    f"{cols}, {beat_bytes} and {expert_ports}")
        elif h["numerics"] != DEFAULT.name:
            what = f"was packed for numerics {h['numerics']!r}, the machine uses {DEFAULT.name!r}"
        else:
            what = f"does not fit {config.name} (hash {h['config_hash']:#x}, want {lay.hash:#x})"
        raise ImageError(f"weights image {what}: {hint}")
    if h["total_bytes"] != lay.total_bytes:
        raise ImageError(f"weights image header says {h['total_bytes']} bytes, the layout of "
                         f"{config.name} has {lay.total_bytes}: {hint}")
    if len(data) != lay.total_bytes:
        state = "truncated" if len(data) < lay.total_bytes else "followed by extra bytes"
        raise ImageError(f"weights image is {len(data)} bytes, not {lay.total_bytes}: it is "
                         f"{state} (copy it again, or {hint})")
    crc = zlib.crc32(memoryview(data)[lay.sections[1].offset:])
    if crc != h["body_crc32"]:
        raise ImageError(f"weights image is damaged: CRC-32 {crc:#010x}, the header says "
                         f"{h['body_crc32']:#010x} (copy it again, or {hint})")
    shifts = read_shifts(data, config, rows, cols, beat_bytes, expert_ports)
    bad = [f"{name} {value}" for name, value in shifts.items() if not 1 <= value <= MAX_SHIFT]
    if bad:
        raise ImageError(f"weights image's shift table has entries outside 1..{MAX_SHIFT} "
                         f"(the compute unit's shift field): {', '.join(bad[:5])}; it was not "
                         f"made by model.weight_image.pack: {hint}")
    return h


def read_shifts(data, config, rows=16, cols=16, beat_bytes=16, expert_ports=2):
    """``{layer name: output shift}`` from an image's shift table."""
    lay = layout(config, rows, cols, beat_bytes, expert_ports)
    table = lay["shifts"]
    return dict(zip(lay.shift_names, data[table.offset:table.offset + len(lay.shift_names)]))
