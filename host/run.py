"""One run of the machine, from a weights image and a photo to the output, on a board or in the
cycle-accurate simulation.

    python -m host.run --weights tiny.img --image photo.png --task 0            # on the board
    python -m host.run --weights tiny.img --image photo.png --task 0 --sim      # simulated
    python -m host.run ... --compare          # also the golden model, and the difference
    python -m host.run --weights tiny.img --image a.png b.png --machine zcu102-b2 ...  # a batch

It reads the photo (PNG, JPEG, or a ``.npy`` of pixel codes; :mod:`host.picture` fits it to the
model's frame), checks the weights image against the configuration named in its header (or
``--config``), checks the bitstream's identity, runs the task, and prints the time, the cycles
per stage and where it wrote the output: a ``.npy`` of the last block's ``[tokens][dim]``
integers in ``DEFAULT.act`` (value = integer / 2**frac).

``--weights`` is a packed weights image (``python -m model.weight_image ... --out FILE``), a
directory of the published float32 tensors, or ``synthetic:SEED``; the last two are packed here.
``--compare`` needs those tensors: from ``--weights`` when it is a directory or synthetic, else
from ``--reference`` (which must pack to the very image given).

Backends (``--backend``, on a board): ``pynq`` (a PYNQ image), ``linux`` (FPGA manager, UIO and
u-dma-buf) and ``devmem`` (``/dev/mem``, root); docs/host.md says how to set each up.
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time

import numpy as np

from model.config import CONFIGS, config_by_name
from model.machine import MACHINES, ZCU102, machine_by_name
from model.numerics import DEFAULT
from model.system.registers import PARTITION

from host.driver import AcceleratorError, BitstreamError, MachineBusy
from host.picture import PictureError, load_picture

__all__ = ["main", "RunError"]

BACKENDS = ("pynq", "linux", "devmem")


class RunError(RuntimeError):
    """Something the user can fix: the message says what and how."""


def _tensors(source, config):
    """The quantized model of ``source``: a tensor directory or ``synthetic:SEED``; None for a
    file (a packed image)."""
    from model.quantize import quantize
    from model.weights import WeightsError, load_edge_moe, synthetic
    if source.startswith("synthetic"):
        _, _, seed = source.partition(":")
        try:
            return quantize(synthetic(config, seed=int(seed or 0)), DEFAULT)
        except ValueError:
            raise RunError(f"{source!r}: the seed after 'synthetic:' must be an integer") from None
    if os.path.isdir(source):
        try:
            return quantize(load_edge_moe(source, config), DEFAULT)
        except WeightsError as e:
            raise RunError(str(e)) from None
    return None


def _config_of(args):
    """The model configuration: ``--config``, else the one named in the image's header."""
    if args.config:
        return config_by_name(args.config)
    if os.path.isfile(args.weights):
        from model.weight_image import ImageError, read_header
        with open(args.weights, "rb") as f:
            head = f.read(4096)
        try:
            name = read_header(head)["config_name"]
        except ImageError as e:
            raise RunError(f"{args.weights}: {e}") from None
        if name not in CONFIGS:
            raise RunError(f"{args.weights} was packed for {name!r}, which this release does "
                           f"not know (it knows {', '.join(CONFIGS)}): give --config")
        return config_by_name(name)
    return config_by_name("m3vit-tiny")


def _weights(args, config, machine):
    """The packed weights image (bytes) and the quantized model behind it (or None)."""
    from model.weight_image import ImageError, check, pack
    qm = _tensors(args.weights, config)
    if qm is not None:
        data = pack(qm, **machine.image_shape)
    elif os.path.isfile(args.weights):
        with open(args.weights, "rb") as f:
            data = f.read()
    else:
        raise RunError(f"--weights {args.weights}: no such file or directory (a packed image, "
                       f"a directory of float32 tensors, or synthetic:SEED)")
    try:
        check(data, config, **machine.image_shape)
    except ImageError as e:
        raise RunError(f"{args.weights}: {e}") from None
    return data, qm


def _reference(args, config, machine, data, qm):
    """The quantized model to compare with: the one packed, or ``--reference``'s, which must
    pack to the same image."""
    if qm is not None:
        return qm
    if not args.reference:
        raise RunError("--compare needs the tensors the weights image was packed from: give "
                       "--reference DIR (or synthetic:SEED), or --weights DIR")
    from model.weight_image import pack
    ref = _tensors(args.reference, config)
    if ref is None:
        raise RunError(f"--reference {args.reference}: not a directory of float32 tensors or "
                       f"synthetic:SEED")
    if pack(ref, **machine.image_shape) != data:
        raise RunError(f"--reference {args.reference} does not pack to the weights image "
                       f"{args.weights}: compare against the tensors it was made from")
    return ref


def simulate(data, image, task, config, machine, *, progress=True):
    """One run of the cycle-accurate machine (Verilator, cached) through the driver (``image``
    a list of images for a machine that takes a batch): returns the output integers, the
    counters and the wall seconds of the simulation."""
    from sim.bench import following, progress_bar, run_logged
    from sim.benches.accelerator import make_design
    with tempfile.TemporaryDirectory() as tmp:
        files = {name: os.path.join(tmp, name) for name in
                 ("weights", "image.npy", "output.npy", "report", "progress", "log")}
        with open(files["weights"], "wb") as f:
            f.write(data)
        np.save(files["image.npy"], np.asarray(image))
        bench = dict(model=config.name, machine=machine.name, task=task,
                     max_cycles=20_000_000,
                     files=dict(weights=files["weights"], image=files["image.npy"],
                                output=files["output.npy"], report=files["report"]))
        bar, on_progress = progress_bar(config.depth, enabled=progress)
        start = time.perf_counter()
        try:
            with following(files["progress"], config.depth, on_progress):
                run_logged(make_design(bench), "sim.benches.run_files", "test_run_files", bench,
                           {"EDGEMOE_PROGRESS": files["progress"]}, files["log"])
        finally:
            bar.close()
        with open(files["report"]) as f:
            report = json.load(f)
        return np.load(files["output.npy"]), report, time.perf_counter() - start


def _on_board(args, data, image, config, machine):
    """One run on a board through the chosen backend: the output, the counters and the wall
    seconds of the run (START to DONE, as the host sees it)."""
    from host.boards import open_backend
    from host.driver import Driver
    memory, buffers, interrupt = open_backend(args, config, machine)
    try:
        driver = Driver(memory, config, buffers, machine)

        async def run():
            await driver.check_bitstream()
            await driver.load_weights(data)
            start = time.perf_counter()
            await driver.run(image, args.task)
            counters = await driver.wait(args.timeout, interrupt=interrupt)
            seconds = time.perf_counter() - start
            return await driver.read_output(), counters, seconds
        output, counters, seconds = asyncio.run(run())
    finally:
        close = getattr(memory, "close", None)
        if close:
            close()
    return output, {"total_cycles": counters.total, "stage_cycles": counters.stages}, seconds


def _report(args, config, output, report, seconds, compared):
    total, stages = report["total_cycles"], report["stage_cycles"]
    where = "simulated (Verilator), wall time" if args.sim else "on the board, START to DONE"
    lines = [f"{config.name} task {args.task}: {total:,} cycles, {seconds:.3f} s {where}"]
    if not args.sim:
        lines[0] += f" ({total / seconds / 1e6:.1f} M cycles/s)" if seconds > 0 else ""
    width = max(len(n) for n in PARTITION)
    for name in PARTITION:
        share = stages[name] / total if total else 0
        lines.append(f"  {name.lower():{width}s} {stages[name]:>12,} cycles  {share:6.1%}")
    lines.append(f"  {'overlap':{width}s} {stages['OVERLAP']:>12,} cycles (two or more units "
                 f"at once)")
    images = f"{output.shape[0]} images x " if output.ndim == 3 else ""
    lines.append(f"output: {args.out} ({images}{output.shape[-2]} tokens x {output.shape[-1]}, "
                 f"integers of value k / 2**{DEFAULT.act.frac})")
    if compared is not None:
        diff = np.abs(output.astype(np.int64) - compared)
        lines.append("golden model: bit-exact" if not diff.any() else
                     f"golden model: {int((diff != 0).sum()):,} of {diff.size:,} values differ, "
                     f"by up to {int(diff.max())} LSB")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m host.run",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True,
                        help="packed weights image, directory of float32 tensors, or "
                             "synthetic:SEED")
    parser.add_argument("--image", required=True, nargs="+",
                        help="PNG, JPEG, or .npy of pixel codes; several for a machine that "
                             "takes a batch (--machine NAME-bB, e.g. zcu102-b2)")
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--config", help=f"model configuration ({', '.join(CONFIGS)}); default: "
                                         f"the weights image's")
    parser.add_argument("--machine", default=ZCU102.name,
                        help=f"machine preset ({', '.join(MACHINES)}; default {ZCU102.name})")
    parser.add_argument("--out", default="output.npy", help="where the output goes (.npy)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--sim", action="store_true",
                       help="run the cycle-accurate simulation instead of a board")
    where.add_argument("--backend", choices=BACKENDS, default=None,
                       help="how to reach the board (default: pynq if importable, else linux)")
    parser.add_argument("--compare", action="store_true",
                        help="also run the golden model and report the difference")
    parser.add_argument("--reference", help="tensors the weights image was packed from "
                                            "(directory or synthetic:SEED), for --compare")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for the board (default 10)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    from host.boards import add_backend_arguments
    add_backend_arguments(parser)
    args = parser.parse_args(argv)
    try:
        machine = machine_by_name(args.machine)
    except ValueError as e:
        parser.error(str(e))
    if len(args.image) != machine.batch:
        parser.error(f"machine {machine.name} takes {machine.batch} image"
                     f"{'s' * (machine.batch > 1)} per run; --image gave {len(args.image)}")
    try:
        config = _config_of(args)
        if not 0 <= args.task < config.tasks:
            raise RunError(f"task must be in 0..{config.tasks - 1} for {config.name}")
        data, qm = _weights(args, config, machine)
        images = [load_picture(path, config) for path in args.image]
        image = images if machine.batch > 1 else images[0]
        reference = _reference(args, config, machine, data, qm) if args.compare else None
        if args.sim:
            output, report, seconds = simulate(data, image, args.task, config, machine,
                                               progress=not args.json)
        else:
            output, report, seconds = _on_board(args, data, image, config, machine)
    except (RunError, PictureError, ValueError, OSError, ImportError, AcceleratorError,
            BitstreamError, MachineBusy) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    output = np.asarray(output, dtype=np.int64)
    np.save(args.out, output)
    compared = None
    if reference is not None:
        from model.golden import forward
        compared = np.asarray([forward(reference, one, args.task, machine=machine)
                               for one in images]).reshape(output.shape)
    if args.json:
        json.dump({"config": config.name, "machine": machine.name, "task": args.task,
                   "sim": args.sim, "seconds": round(seconds, 6), "output": args.out,
                   "bit_exact": None if compared is None else bool((output == compared).all()),
                   **report}, sys.stdout, indent=1)
        print()
    else:
        print(_report(args, config, output, report, seconds, compared))
    return 0 if compared is None or (output == compared).all() else 1


if __name__ == "__main__":
    sys.exit(main())
