"""cocotb bench behind ``python -m host.run --sim``: one run of the whole accelerator on the
user's files, through the same driver and DRAM models as :mod:`sim.benches.accelerator`.

The configuration names the model and machine (as that bench's) and ``files``: ``weights`` (a
packed weights image), ``image`` (a ``.npy`` of pixel codes; a batch's images stacked),
``output`` (where the output's integers go, ``.npy``) and ``report`` (JSON: the counters and the
simulated cycles), plus ``task``. The bench checks the bitstream identity, loads the image through the driver (which
checks it), runs, checks the bus rules and the DMA windows, and writes the files; comparing the
output with the golden model is the caller's (``--compare``).
"""

import json

import cocotb
import numpy as np

from sim.benches.accelerator import System
from sim.runner import bench_config
from sim.stream import clock_and_reset


@cocotb.test()
async def test_run_files(dut):
    """The user's weights image and picture, one run; output and counters to files."""
    config = bench_config()
    files = config["files"]
    await clock_and_reset(dut)
    system = System(dut, config)
    driver = system.driver
    await driver.check_bitstream()
    with open(files["weights"], "rb") as f:
        await driver.load_weights(f.read())
    images = np.load(files["image"])            # [B][C][H][W] for a batch of B
    await driver.run(list(images) if system.machine.batch > 1 else images, config["task"])
    await system.wait()
    output = await driver.read_output()
    system.check_bus()
    counters = await driver.counters()
    np.save(files["output"], np.asarray(output, dtype=np.int64))
    with open(files["report"], "w") as f:
        json.dump({"total_cycles": counters.total, "stage_cycles": counters.stages}, f)
