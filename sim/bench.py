"""Benchmark: one full inference of the whole accelerator in cycle-accurate simulation.

    python -m sim.bench [--config m3vit-tiny] [--machine zcu102] [--task 0] [--json]

Builds the machine (Verilator, cached), runs one inference through the host driver against DRAM
models, checks the output against ``model.golden.forward`` bit for bit, and prints the total
cycles, the cycles per stage (the machine's counters) and per block (between the sequencer's
launches), the MAC utilisation against the array's floor, the DRAM bytes read and written, and
the wall time. With the published weights in ``../shared`` (m3vit-tiny) they are used, the
missing expert matrices synthetic.
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from model.config import CONFIGS, config_by_name
from model.machine import MACHINES, ZCU102, machine_by_name

__all__ = ["benchmark", "floor_cycles", "touched_bytes", "add_model_arguments",
           "check_model_arguments", "main"]


def floor_cycles(qm, image, task, machine=ZCU102):
    """Cycles of every linear layer at 100 % of the machine's array, for this image and task
    (the experts' tokens are the golden model's routes), plus the attention matmuls on nothing
    (they have their own multipliers)."""
    from model.golden import run
    from model.packer import tiles
    cfg = qm.config
    trace = run(qm, image, task, machine=machine)
    T, D = cfg.tokens, cfg.dim

    def linear(tokens, n_in, n_out):
        return tokens * tiles(n_in, machine.array_rows) * tiles(n_out, machine.array_cols)

    total = linear(cfg.patches, cfg.patch_in, D)
    for b in range(cfg.depth):
        total += 4 * linear(T, D, D)
        if cfg.is_moe(b):
            total += linear(T, D, cfg.experts)
            chosen = trace.experts[b]
            for e in range(cfg.experts):
                n = int((chosen == e).sum())
                if n:
                    total += linear(n, D, cfg.expert_hidden) + linear(n, cfg.expert_hidden, D)
        else:
            total += linear(T, D, cfg.mlp_hidden) + linear(T, cfg.mlp_hidden, D)
    return total


def touched_bytes(qm, image, task, machine=ZCU102):
    """The bytes an inference must read at least: the image, the shift table, and every
    parameter it uses once (the task's gates, the experts the golden model routes tokens to);
    :func:`model.weight_image.layout` sizes each, in whole beats."""
    from model.golden import run
    from model.weight_image import input_layout
    cfg = qm.config
    lay = machine.layout(cfg)
    beat_bytes, expert_ports = machine.beat_bytes, machine.expert_ports
    trace = run(qm, image, task, machine=machine)
    names = ["shifts", "patch", "pos_embed"]
    total = input_layout(cfg, beat_bytes).length
    for b in range(cfg.depth):
        p = f"l{b}."
        names += [p + n for n in ("ln1", "k", "q", "v", "proj", "ln2")]
        if cfg.is_moe(b):
            names.append(f"{p}gate{task}")
            e = lay[p + "experts"].engine
            per_expert = sum(e[f"{m}_{k}_beats"] for m in ("fc1", "fc2")
                             for k in ("weight", "bias")) * expert_ports * beat_bytes
            total += per_expert * len(set(int(x) for x in trace.experts[b].flat))
        else:
            names += [p + "fc1", p + "fc2"]
    return total + sum(lay[n].length for n in names)


def benchmark(config_name="m3vit-tiny", task=0, progress=None, machine_name=ZCU102.name):
    """Run the benchmark; returns a report dict. ``progress(stage, stages)`` is called as the
    sequencer moves on."""
    from model.weights import shared_weights_dir
    from sim.benches.accelerator import make_design, model_and_images
    from sim.runner import _tail, run
    model = config_by_name(config_name)
    machine = machine_by_name(machine_name)
    config = dict(model=config_name, machine=machine_name, tasks=[task],
                  max_cycles=20_000_000)
    if config_name == "m3vit-tiny" and shared_weights_dir() is not None:
        config["weights"] = "edge-moe"
    with tempfile.TemporaryDirectory() as tmp:
        out, marks = os.path.join(tmp, "bench.json"), os.path.join(tmp, "progress")
        done = threading.Event()

        def poll():
            while not done.wait(1.0):
                if progress and os.path.exists(marks):
                    try:
                        stage = int(open(marks).read() or 0)
                    except ValueError:
                        continue
                    progress(stage, model.depth + 1)
        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        log = os.path.join(tmp, "simulation.log")
        start = time.perf_counter()
        try:
            run(make_design(config), "sim.benches.accelerator", testcase="test_inference",
                config=config, extra_env={"EDGEMOE_MEASURE_OUT": out, "EDGEMOE_PROGRESS": marks},
                log_file=log)
        except Exception:
            # The simulator's log is kept out of the report; on a failure its end tells why.
            sys.stderr.write(f"\nthe simulation's last lines:\n{_tail(Path(log))}\n")
            raise
        finally:
            done.set()
        wall = time.perf_counter() - start
        with open(out) as f:
            report = json.load(f)
    result = report["runs"][0]
    qm, images = model_and_images(config)
    floor = floor_cycles(qm, images[0], task, machine)
    touched = touched_bytes(qm, images[0], task, machine)
    read = sum(result["bytes_read"].values())
    launches = sorted(result["launch_cycles"].items(), key=lambda item: item[1])
    per_block = {name: nxt - cycle for (name, cycle), (_, nxt) in zip(launches, launches[1:])}
    return {
        "config": config_name, "machine": machine.name, "task": task,
        "weights": config.get("weights", "synthetic"),
        "total_cycles": result["total_cycles"], "stage_cycles": result["stage_cycles"],
        "cycles_between_launches": per_block,
        "floor_cycles": floor, "mac_utilisation": round(floor / result["total_cycles"], 4),
        "dram_bytes_read": read,
        "dram_bytes_touched": touched,
        "dram_read_over_touched": round(read / touched, 4),
        "dram_bytes_read_per_port": result["bytes_read"],
        "dram_bytes_written": result["bytes_written"],
        "weight_image_load_bytes": sum(report["setup_bytes_read"].values()),
        "inference_wall_seconds": result["wall_seconds"],
        "total_wall_seconds": round(wall, 1),
    }


_shown = []


def _bar(stage, stages, width=30):
    if _shown and _shown[-1] == stage:
        return
    _shown.append(stage)
    filled = int(width * min(stage, stages) / stages)
    label = "embed" if stage == 0 else "output" if stage > stages - 1 else f"block {stage - 1}"
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {label:9s}")
    sys.stderr.flush()


def add_model_arguments(parser, *, config="m3vit-tiny"):
    """``--config`` and ``--machine``, as the simulation commands take them."""
    parser.add_argument("--config", default=config,
                        help=f"model configuration ({', '.join(CONFIGS)}; default {config})")
    parser.add_argument("--machine", default=ZCU102.name,
                        help=f"machine preset ({', '.join(MACHINES)}; default {ZCU102.name})")


def check_model_arguments(parser, args):
    """One clear line and exit status 2 for an unknown ``--config`` or ``--machine``."""
    if args.config not in CONFIGS:
        parser.error(f"unknown config {args.config!r}; choose from: {', '.join(CONFIGS)}")
    if args.machine not in MACHINES:
        parser.error(f"unknown machine {args.machine!r}; choose from: {', '.join(MACHINES)}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sim.bench",
                                     description=__doc__.split("\n\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    check_model_arguments(parser, args)
    model = config_by_name(args.config)
    if not 0 <= args.task < model.tasks:
        parser.error(f"task must be in 0..{model.tasks - 1} for {args.config}")
    if not args.json:
        print(f"{args.config}: building the machine (cached) and simulating one inference "
              f"(task {args.task}) ...", file=sys.stderr, flush=True)
    r = benchmark(args.config, args.task, progress=None if args.json else _bar,
                  machine_name=args.machine)
    if args.json:
        json.dump(r, sys.stdout, indent=1)
        print()
        return
    print(file=sys.stderr)
    print(f"{r['config']} on {r['machine']}, task {r['task']} ({r['weights']} weights): "
          f"{r['total_cycles']:,} "
          f"cycles, bit-exact with model.golden.forward")
    print(f"  floor of the array (every linear layer at 100 %): {r['floor_cycles']:,} cycles; "
          f"MAC utilisation {r['mac_utilisation']:.1%}")
    print("  cycles per stage (unit running; stages overlap): " +
          ", ".join(f"{k.lower()} {v:,}" for k, v in r["stage_cycles"].items() if v))
    print("  cycles between the sequencer's launches: " +
          ", ".join(f"{k} {v:,}" for k, v in r["cycles_between_launches"].items()))
    print(f"  DRAM: {r['dram_bytes_read']:,} bytes read "
          f"({', '.join(f'{k} {v:,}' for k, v in r['dram_bytes_read_per_port'].items())}), "
          f"{r['dram_bytes_written']:,} written")
    print(f"  DRAM read / (weights touched + image, {r['dram_bytes_touched']:,} bytes): "
          f"{r['dram_read_over_touched']:.4f}")
    print(f"  wall time: {r['inference_wall_seconds']} s for the inference, "
          f"{r['total_wall_seconds']} s in all (build, weights load)")


if __name__ == "__main__":
    main()
