"""Benchmark: one full inference of the whole accelerator in cycle-accurate simulation.

    python -m sim.bench [--config m3vit-tiny] [--machine zcu102] [--task 0]
                        [--memory zcu102-ddr4|ideal] [--json] [--plot FILE.svg]
                        [--from-json REPORT]

Builds the machine (Verilator, cached), runs one inference through the host driver against a
DRAM model (:mod:`sim.ddr`: the ZCU102's DDR4 by default, ``--memory ideal`` for a memory with
no latency and no bandwidth cap), checks the output against ``model.golden.forward`` bit for
bit, and prints the total cycles, the cycles per stage (the machine's counters) and per block
(charged as the counters charge them: to the oldest unfinished stage), the MAC utilisation
against the array's floor (in all and per block), the DRAM bytes read and written, the bytes
per cycle of each port, the cycles in which a port waited for memory, and the wall time. With
the published weights in ``../shared`` (m3vit-tiny) they are used, the missing expert matrices
synthetic. ``--plot`` draws the report (:mod:`flow.plots`); on a terminal a progress bar shows
the block being simulated, the cycles so far and the time left.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from flow.progress import ProgressBar, every

from model.config import CONFIGS, config_by_name
from model.machine import MACHINES, MAX_BATCH, ZCU102, machine_by_name
from model.system.registers import PARTITION
from sim.ddr import MEMORIES, ZCU102_DDR4, memory_by_name
from sim.runner import _tail, run

__all__ = ["benchmark", "by_block", "floor_cycles", "floor_cycles_per_stage", "touched_bytes",
           "add_model_arguments", "check_model_arguments", "following", "progress_bar",
           "run_logged", "main"]


def floor_cycles_per_stage(qm, image, task, machine=ZCU102):
    """Cycles of every linear layer at 100 % of the machine's array, for this image and task
    (the experts' tokens are the golden model's routes), plus the attention matmuls on nothing
    (they have their own multipliers): ``{"embed": n, "block 0": n, ...}``."""
    from model.golden import run
    from model.packer import tiles
    cfg = qm.config
    trace = run(qm, image, task, machine=machine)
    T, D = cfg.tokens, cfg.dim

    def linear(tokens, n_in, n_out):
        return tokens * tiles(n_in, machine.array_rows) * tiles(n_out, machine.array_cols)

    floors = {"embed": linear(cfg.patches, cfg.patch_in, D)}
    for b in range(cfg.depth):
        block = 4 * linear(T, D, D)
        if cfg.is_moe(b):
            block += linear(T, D, cfg.experts)
            chosen = trace.experts[b]
            for e in range(cfg.experts):
                n = int((chosen == e).sum())
                if n:
                    block += linear(n, D, cfg.expert_hidden) + linear(n, cfg.expert_hidden, D)
        else:
            block += linear(T, D, cfg.mlp_hidden) + linear(T, cfg.mlp_hidden, D)
        floors[f"block {b}"] = block
    return floors


def by_block(per_stage):
    """Figures of the run's stages (``embed``, ``block b attention``, ``block b moe``, ...,
    ``head``) added up per block."""
    blocks = {}
    for name, value in per_stage.items():
        key = " ".join(name.split()[:2]) if name.startswith("block ") else name
        blocks[key] = blocks.get(key, 0) + value
    return blocks


def floor_cycles(qm, image, task, machine=ZCU102):
    """The sum of :func:`floor_cycles_per_stage`."""
    return sum(floor_cycles_per_stage(qm, image, task, machine).values())


def touched_bytes(qm, images, task, machine=ZCU102):
    """The bytes a run of ``images`` (one image, or a batch's list) must read at least: the
    images, the shift table, every dense parameter once, and over the expert ports each MoE
    layer's gate for the task and every expert the golden model routes a token of any image to,
    once (:func:`sim.benches.accelerator.expert_bytes`); :func:`model.weight_image.layout`
    sizes each, in whole beats."""
    from model.golden import run
    from model.weight_image import input_layout
    from sim.benches.accelerator import expert_bytes
    cfg = qm.config
    images = images if isinstance(images, list) else [images]
    lay = machine.layout(cfg)
    traces = [run(qm, image, task, machine=machine) for image in images]
    names = ["shifts", "patch", "pos_embed"]
    for b in range(cfg.depth):
        p = f"l{b}."
        names += [p + n for n in ("ln1", "k", "q", "v", "proj", "ln2")]
        if not cfg.is_moe(b):
            names += [p + "fc1", p + "fc2"]
    return (len(images) * input_layout(cfg, machine.beat_bytes).length +
            sum(lay[n].length for n in names) + expert_bytes(qm, traces, task, machine))


def benchmark(config_name="m3vit-tiny", task=0, progress=None, machine_name=ZCU102.name,
              memory_name=ZCU102_DDR4.name, batch=1):
    """Run the benchmark: one run of ``batch`` images; returns a report dict.
    ``progress(stage, cycles)`` is called once a second while it simulates
    (:func:`following`)."""
    from model.weights import shared_weights_dir
    from sim.benches.accelerator import make_design, model_and_images
    model = config_by_name(config_name)
    machine = machine_by_name(machine_name).batched(batch)
    memory = memory_by_name(memory_name)
    config = dict(model=config_name, machine=machine_name, tasks=[task], memory=memory.name,
                  max_cycles=20_000_000 * batch)
    if batch > 1:
        config["batch"] = batch
    if config_name == "m3vit-tiny" and shared_weights_dir() is not None:
        config["weights"] = "edge-moe"
    with tempfile.TemporaryDirectory() as tmp:
        out, marks = os.path.join(tmp, "bench.json"), os.path.join(tmp, "progress")
        log = os.path.join(tmp, "simulation.log")
        start = time.perf_counter()
        with following(marks, model.depth, progress):
            run_logged(make_design(config), "sim.benches.accelerator", "test_inference",
                       config, {"EDGEMOE_MEASURE_OUT": out, "EDGEMOE_PROGRESS": marks}, log)
        wall = time.perf_counter() - start
        with open(out) as f:
            report = json.load(f)
    result = report["runs"][0]
    qm, images = model_and_images(config)
    images = images[:batch]                     # the run's images (test_inference's choice)
    floors = {}
    for image in images:
        for name, n in floor_cycles_per_stage(qm, image, task, machine).items():
            floors[name] = floors.get(name, 0) + n
    floor = sum(floors.values())
    touched = touched_bytes(qm, images, task, machine)
    read = sum(result["bytes_read"].values())
    launches = sorted(result["launch_cycles"].items(), key=lambda item: item[1])
    per_block = {name: nxt - cycle for (name, cycle), (_, nxt) in zip(launches, launches[1:])}
    cycles = by_block(result["charged_cycles"])
    total = result["total_cycles"]
    waits = result["memory_wait_cycles"]
    read_per_block = by_block(result["charged_bytes_read"])
    return {
        "config": config_name, "machine": machine.name, "task": task,
        "weights": config.get("weights", "synthetic"),
        "memory": memory.name, "memory_description": memory.describe(machine.clock_mhz),
        "batch": batch,
        "total_cycles": result["total_cycles"], "stage_cycles": result["stage_cycles"],
        "cycles_per_image": round(total / batch), "dram_bytes_read_per_image": round(read / batch),
        "cycles_between_launches": per_block,
        "floor_cycles": floor, "mac_utilisation": round(floor / result["total_cycles"], 4),
        "cycles_per_block": cycles,
        "floor_cycles_per_block": floors,
        "mac_utilisation_per_block": {name: round(floors[name] / cycles[name], 4)
                                      for name in floors},
        "dram_bytes_read_per_block": read_per_block,
        "cycles_per_half_block": result["charged_cycles"],
        "dram_bytes_read": read,
        "dram_bytes_touched": touched,
        "dram_read_over_touched": round(read / touched, 4),
        "dram_bytes_read_per_port": result["bytes_read"],
        "dram_bytes_written": result["bytes_written"],
        "dram_bytes_per_cycle_per_port": {
            **{name: round(n / total, 3) for name, n in result["bytes_read"].items()},
            "output_bus": round(result["bytes_written"] / total, 3)},
        "memory_wait_cycles": waits,
        "memory_wait_share": None if waits is None else round(waits / total, 4),
        "weight_image_load_bytes": sum(report["setup_bytes_read"].values()),
        "inference_wall_seconds": result["wall_seconds"],
        "total_wall_seconds": round(wall, 1),
    }


def stage_label(stage, depth):
    """What the sequencer's progress mark ``stage`` launched."""
    return ("embed" if stage == 0 else "output" if stage > depth
            else f"block {stage - 1} of {depth}")


@contextmanager
def following(marks, depth, progress):
    """While the block runs a simulation that writes its progress marks to the file ``marks``
    (``stage cycles``, :func:`sim.benches.accelerator.watch_progress`), call
    ``progress(stage, cycles)`` once a second with the last one."""
    if progress is None:
        yield
        return

    def poll():
        try:
            with open(marks) as f:
                stage, cycles = (int(v) for v in f.read().split())
        except (OSError, ValueError):
            return                       # not written yet, or caught half-written
        progress(stage, cycles)
    with every(1.0, poll):
        yield


def progress_bar(depth, *, enabled=True):
    """A :class:`flow.progress.ProgressBar` over the stages of a model of ``depth`` blocks, and
    the ``progress`` callback for :func:`following` that draws it."""
    bar = ProgressBar(depth + 2, enabled=enabled)
    return bar, lambda stage, cycles: bar.update(stage, stage_label(stage, depth), cycles)


def run_logged(design, module, testcase, config, env, log):
    """:func:`sim.runner.run` with the simulator's output in ``log``, whose last lines go to
    stderr if the simulation fails."""
    try:
        return run(design, module, testcase=testcase, config=config, extra_env=env,
                   log_file=log)
    except Exception:
        sys.stderr.write(f"\nthe simulation's last lines:\n{_tail(Path(log))}\n")
        raise


def add_model_arguments(parser, *, config="m3vit-tiny"):
    """``--config`` and ``--machine``, as the simulation commands take them."""
    parser.add_argument("--config", default=config,
                        help=f"model configuration ({', '.join(CONFIGS)}; default {config})")
    parser.add_argument("--machine", default=ZCU102.name,
                        help=f"machine preset ({', '.join(MACHINES)}; default {ZCU102.name}), "
                             f"NAME-bB for one that takes B images per run")


def check_model_arguments(parser, args):
    """One clear line and exit status 2 for an unknown ``--config`` or ``--machine``."""
    if args.config not in CONFIGS:
        parser.error(f"unknown config {args.config!r}; choose from: {', '.join(CONFIGS)}")
    try:
        machine_by_name(args.machine)
    except ValueError as error:
        parser.error(str(error))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sim.bench",
                                     description=__doc__.split("\n\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--batch", type=int, default=1,
                        help=f"images per run, 1..{MAX_BATCH} (default 1): each layer's "
                             f"weights, above all each MoE layer's experts, read once for all")
    parser.add_argument("--memory", default=ZCU102_DDR4.name, choices=list(MEMORIES),
                        help=f"DRAM timing (sim/ddr.py; default {ZCU102_DDR4.name}; ideal: no "
                             f"latency, no bandwidth cap)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plot", metavar="FILE",
                        help="also draw the report (.svg, .png or .pdf): cycles per stage and "
                             "block, MAC utilisation and DRAM bytes per block")
    parser.add_argument("--from-json", metavar="REPORT",
                        help="do not simulate: take the report of an earlier --json run (to "
                             "--plot it)")
    args = parser.parse_args(argv)
    check_model_arguments(parser, args)
    if args.plot and os.path.splitext(args.plot)[1].lower() not in (".svg", ".png", ".pdf"):
        parser.error(f"--plot {args.plot}: the file must end in .svg, .png or .pdf")
    model = config_by_name(args.config)
    if not 0 <= args.task < model.tasks:
        parser.error(f"task must be in 0..{model.tasks - 1} for {args.config}")
    if not 1 <= args.batch <= MAX_BATCH:
        parser.error(f"--batch must be in 1..{MAX_BATCH} images, not {args.batch}")
    if not args.json and not args.from_json:
        print(f"{args.config}: building the machine (cached) and simulating one inference "
              f"(task {args.task}) ...", file=sys.stderr, flush=True)
    if args.from_json:
        with open(args.from_json) as f:
            r = json.load(f)
    else:
        bar, progress = progress_bar(model.depth, enabled=not args.json)
        try:
            r = benchmark(args.config, args.task, progress=progress,
                          machine_name=args.machine, memory_name=args.memory,
                          batch=args.batch)
        finally:
            bar.close()
    if args.plot:
        from flow.plots import bench_figure, save
        save(bench_figure(r), args.plot)
        print(f"drew {args.plot}", file=sys.stderr)
    if args.json:
        json.dump(r, sys.stdout, indent=1)
        print()
        return
    batch = r.get("batch", 1)
    print(f"{r['config']} on {r['machine']}, task {r['task']} ({r['weights']} weights): "
          f"{r['total_cycles']:,} "
          f"cycles, bit-exact with model.golden.forward" +
          (f"; a batch of {batch} images: {r['cycles_per_image']:,} cycles and "
           f"{r['dram_bytes_read_per_image']:,} DRAM bytes read per image" if batch > 1 else ""))
    if "memory_description" in r:                     # reports before sim.ddr have none
        print(f"  memory {r['memory_description']}")
    print(f"  floor of the array (every linear layer at 100 %): {r['floor_cycles']:,} cycles; "
          f"MAC utilisation {r['mac_utilisation']:.1%}")
    print("  cycles per stage (each cycle charged to the oldest unfinished stage): " +
          ", ".join(f"{k.lower()} {r['stage_cycles'][k]:,}" for k in PARTITION) +
          f"; two or more units at once {r['stage_cycles']['OVERLAP']:,}")
    print("  cycles per block (charged, as the stage counters): " +
          ", ".join(f"{k} {v:,}" for k, v in r["cycles_per_block"].items()))
    print("  MAC utilisation per block: " +
          ", ".join(f"{k} {v:.1%}" for k, v in r["mac_utilisation_per_block"].items()))
    print(f"  DRAM: {r['dram_bytes_read']:,} bytes read "
          f"({', '.join(f'{k} {v:,}' for k, v in r['dram_bytes_read_per_port'].items())}), "
          f"{r['dram_bytes_written']:,} written")
    print("  DRAM bytes per cycle: " + ", ".join(
        f"{k} {v:.2f}" for k, v in r.get("dram_bytes_per_cycle_per_port", {}).items()))
    if r.get("memory_wait_cycles") is not None:
        print(f"  cycles in which a port waited for memory: {r['memory_wait_cycles']:,} "
              f"({r['memory_wait_share']:.1%})")
    print(f"  DRAM read / (weights touched + image, {r['dram_bytes_touched']:,} bytes): "
          f"{r['dram_read_over_touched']:.4f}")
    print(f"  wall time: {r['inference_wall_seconds']} s for the inference, "
          f"{r['total_wall_seconds']} s in all (build, weights load)")


if __name__ == "__main__":
    main()
