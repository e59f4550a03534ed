"""What makes a weights image fit a bitstream: the hash of the dimensions, the layout parameters,
the numerics and the format's major version, which the image's header carries and the bitstream
shows in its LAYOUT_HASH registers."""

import hashlib
import json

from ..numerics import DEFAULT
from model.weight_image.format import _DIMS, FORMAT_VERSION


def config_hash(config, rows=16, cols=16, beat_bytes=16, expert_ports=2, numerics=DEFAULT):
    """64-bit hash of what makes an image fit a bitstream: the dimensions (not the name), the
    layout parameters, the numerics preset and the format's major version."""
    key = {name: getattr(config, name) for name in _DIMS}
    key.update(ln_eps=repr(config.ln_eps), rows=rows, cols=cols, beat_bytes=beat_bytes,
               numerics=numerics.name, format=FORMAT_VERSION[0])
    if expert_ports != 1:           # (images for one port keep the hash they had before)
        key.update(expert_ports=expert_ports)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "little")
