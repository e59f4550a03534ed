"""Accuracy report: the golden model (both numerics presets) against the float reference.

    python -m model.accuracy [--weights DIR] [--task N] [--json]

Runs on the published Edge-MoE weights when present (synthetic experts, seed 0) and on a
synthetic m3vit-tiny set (seed 0), and prints per-block and final MSE, MAE and max abs error,
in two modes, because top-k routing is discontinuous:

* **free**: the golden model routes by its own gate;
* **held**: the golden model takes the float reference's expert choices, so the figure is pure
  arithmetic error.

It counts routing decisions (token x MoE block) that differ from the reference, with the
reference's margin between the k-th and (k+1)-th gate probability for each, and measures each
function unit against its exact function.
"""

import argparse
import json
import math
import sys
import time
import warnings

import numpy as np

from model import reference
from model.config import M3VIT_TINY
from model.machine import ZCU102
from model.arith.exp import exp2
from model.arith.gelu import gelu
from model.golden import run as golden_run
from model.units.layernorm import layer_norm
from model.numerics import DEFAULT, EDGEMOE, EXP_FRAC, MANT_FRAC, PROB_FRAC, SUM_FRAC
from model.quantize import LOG2E, quantize
from model.arith.reciprocal import reciprocal
from model.arith.rsqrt import rsqrt
from model.units.softmax import softmax
from model.weights import load_edge_moe, load_image, shared_weights_dir, synthetic, synthetic_image

__all__ = ["compare", "unit_errors", "main", "FLIP_MARGIN"]

#: Routing decisions whose reference margin exceeds this must not flip (default preset).
FLIP_MARGIN = 2e-3


def _errors(a, b):
    d = np.asarray(a) - np.asarray(b)
    return {"mse": float(np.mean(d * d)), "mae": float(np.mean(np.abs(d))),
            "max_abs": float(np.max(np.abs(d)))}


def _flips(config, golden_trace, ref_trace):
    """Routing decisions that differ, and those among tokens that agreed in every earlier block."""
    k = config.top_k
    agreed = np.ones(config.tokens, dtype=bool)
    flips, clean = [], []
    for b in config.moe_blocks:
        mine = np.sort(golden_trace.experts[b], axis=1)
        theirs = np.sort(ref_trace.experts[b], axis=1)
        differs = (mine != theirs).any(axis=1)
        probs = np.sort(ref_trace.gate_probs[b], axis=1)[:, ::-1]
        margin = probs[:, k - 1] - probs[:, k] if k < config.experts else np.full(len(probs), 1.0)
        for t in np.nonzero(differs)[0]:
            flip = {"block": int(b), "token": int(t), "margin": float(margin[t])}
            flips.append(flip)
            if agreed[t]:
                clean.append(flip)
        agreed &= ~differs
    return flips, clean


def compare(weights, image, task, numerics, *, ref_trace=None):
    """Golden vs reference for one preset, free and held. Returns a dict of figures."""
    ref_trace = ref_trace or reference.run(weights, image, task)
    qm = quantize(weights, numerics)
    result = {"preset": numerics.name, "saturated_parameters": qm.saturated}
    for mode, routes in (("free", None), ("held", ref_trace.experts)):
        start = time.perf_counter()
        g = golden_run(qm, image, task, routes=routes)
        seconds = time.perf_counter() - start
        blocks = [_errors(g.to_float(x), r) for x, r in zip(g.blocks, ref_trace.blocks)]
        entry = {"final": blocks[-1], "blocks": blocks, "seconds": seconds}
        if mode == "free":
            flips, clean = _flips(weights.config, g, ref_trace)
            entry.update(flips=len(flips), flips_after_agreement=len(clean),
                         max_margin_of_clean_flip=max((f["margin"] for f in clean), default=0.0),
                         flip_list=flips)
        result[mode] = entry
    return result


def _score_rows(weights, ref_trace, fmt):
    """Every real attention score row, in base 2 and quantised as the engine sees it."""
    cfg = weights.config
    rows = []
    for b, x in enumerate([ref_trace.embedded] + ref_trace.blocks[:-1]):
        h = reference.layer_norm(x, weights.block(b, "norm1_weight"),
                                 weights.block(b, "norm1_bias"), cfg.ln_eps)
        qkv = h @ weights.block(b, "qkv_weight").T + weights.block(b, "qkv_bias")
        q, k, _ = np.split(qkv, 3, axis=1)
        for hd in range(cfg.heads):
            cols = slice(hd * cfg.head_dim, (hd + 1) * cfg.head_dim)
            scores = q[:, cols] @ k[:, cols].T / math.sqrt(cfg.head_dim) * LOG2E
            rows.append(fmt.quantize(scores)[0])
    return np.concatenate(rows)


def unit_errors(weights, image, numerics=DEFAULT, *, ref_trace=None):
    """Each function unit against its exact function (act format of ``numerics``)."""
    fmt = numerics.act
    F = fmt.frac
    out = {}
    x = np.arange(-8 << F, (8 << F) + 1, max(1, 1 << (F - 16)))
    out["gelu_max_abs_on_[-8,8]"] = float(np.max(np.abs(
        fmt.to_float(gelu(x, fmt)) - reference.gelu(fmt.to_float(x)))))
    x = np.arange(-8 << F, 1, max(1, 1 << (F - 16)))
    exact = np.exp2(fmt.to_float(x))
    out["exp2_max_rel_on_[-8,0]"] = float(np.max(np.abs(exp2(x, F) / 2.0 ** EXP_FRAC - exact)
                                                 / exact))
    s = np.arange(1 << SUM_FRAC, 256 << SUM_FRAC, 97)
    r, k = reciprocal(s)
    out["reciprocal_max_rel_on_[1,256)"] = float(np.max(np.abs(
        r * 2.0 ** -(MANT_FRAC + k) * (s / 2.0 ** SUM_FRAC) - 1)))
    S = np.unique(np.random.default_rng(0).integers(1, 1 << 46, 1 << 18))
    r, e = rsqrt(S)
    out["rsqrt_max_rel"] = float(np.max(np.abs(r * 2.0 ** -(MANT_FRAC + e) * np.sqrt(S) - 1)))

    ref_trace = ref_trace or reference.run(weights, image, 0)
    cfg = weights.config
    scores = _score_rows(weights, ref_trace, fmt)
    # Row r is query r mod tokens; the engine streams its keys from query mod slots.
    start = np.arange(len(scores)) % cfg.tokens % ZCU102.attention_slots
    p = softmax(scores, F, start) / 2.0 ** PROB_FRAC
    exact = reference.softmax(fmt.to_float(scores) / LOG2E)
    out["softmax_max_abs_on_real_rows"] = float(np.max(np.abs(p - exact)))

    worst = 0.0
    qm = quantize(weights, numerics)
    for b, x in enumerate([ref_trace.embedded] + ref_trace.blocks[:-1]):
        xi = fmt.quantize(x)[0]
        g, beta = qm.block(b, "norm1_weight"), qm.block(b, "norm1_bias")
        y = fmt.to_float(layer_norm(xi, fmt, g, beta, cfg.ln_eps, numerics))
        exact = reference.layer_norm(fmt.to_float(xi), g.to_float(), beta.to_float(), cfg.ln_eps)
        worst = max(worst, float(np.max(np.abs(y - exact))))
    out["layernorm_max_abs_on_real_rows"] = worst
    return out


def _datasets(weights_dir):
    sets = []
    if weights_dir:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = load_edge_moe(weights_dir, M3VIT_TINY, seed=0)
        sets.append(("edge-moe weights, synthetic experts (seed 0)", w,
                     load_image(weights_dir, M3VIT_TINY)))
    sets.append(("synthetic weights (seed 0)", synthetic(M3VIT_TINY, 0),
                 synthetic_image(M3VIT_TINY, 0)))
    return sets


def _print(report):
    for ds in report["datasets"]:
        print(f"\n== {ds['name']}, task {ds['task']} ==")
        for res in ds["presets"]:
            print(f"\n  preset {res['preset']}: saturated parameters "
                  f"{sum(res['saturated_parameters'].values())}")
            for mode in ("held", "free"):
                e = res[mode]
                f = e["final"]
                line = (f"    {mode:4s} final MSE {f['mse']:.3e}  MAE {f['mae']:.3e}  "
                        f"max {f['max_abs']:.3e}   ({e['seconds']:.1f} s)")
                if mode == "free":
                    line += (f"\n         routing flips {e['flips']} of {ds['decisions']}, "
                             f"{e['flips_after_agreement']} among tokens routed alike before; "
                             f"largest reference margin of those "
                             f"{e['max_margin_of_clean_flip']:.2e}")
                print(line)
            print("    per block MSE (held): " +
                  " ".join(f"{b['mse']:.1e}" for b in res["held"]["blocks"]))
        print("\n  function units (default preset):")
        for name, value in ds["units"].items():
            print(f"    {name:34s} {value:.3e}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m model.accuracy", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--weights", help="Edge-MoE weight directory (default: the shared one "
                                          "if present)")
    parser.add_argument("--task", type=int, default=0, help="task (default 0)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--plot", metavar="FILE",
                        help="also draw the MSE per block, both presets (.svg, .png or .pdf)")
    args = parser.parse_args(argv)
    if args.plot and not args.plot.lower().endswith((".svg", ".png", ".pdf")):
        parser.error(f"--plot {args.plot}: the file must end in .svg, .png or .pdf")
    if args.task not in range(M3VIT_TINY.tasks):
        parser.error(f"--task must be in 0..{M3VIT_TINY.tasks - 1}")
    weights_dir = args.weights or shared_weights_dir()
    try:
        datasets = _datasets(weights_dir)
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    report = {"upstream_reported_mse": 1.51e-3, "datasets": []}
    for name, weights, image in datasets:
        ref_trace = reference.run(weights, image, args.task)
        report["datasets"].append({
            "name": name, "task": args.task,
            "decisions": M3VIT_TINY.tokens * len(M3VIT_TINY.moe_blocks),
            "presets": [compare(weights, image, args.task, n, ref_trace=ref_trace)
                        for n in (DEFAULT, EDGEMOE)],
            "units": unit_errors(weights, image, DEFAULT, ref_trace=ref_trace),
        })
    if args.plot:
        from flow.plots import accuracy_figure, save
        save(accuracy_figure(report), args.plot)
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
    else:
        print(f"golden model vs float reference, m3vit-tiny "
              f"(upstream's fixed-point design: MSE {report['upstream_reported_mse']:.2e})")
        _print(report)


if __name__ == "__main__":
    main()
