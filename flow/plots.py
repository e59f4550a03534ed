"""Pictures of the reports: ``python -m sim.bench --plot FILE`` and ``python -m model.accuracy
--plot FILE`` (SVG, PNG or PDF, by the file's extension; matplotlib, no display needed).

Each picture is drawn from the command's JSON report alone: :func:`bench_series` and
:func:`accuracy_series` take out what is drawn, so a test can hold the picture to the report.
"""

import os

__all__ = ["bench_series", "bench_figure", "accuracy_series", "accuracy_figure", "save"]


def bench_series(report):
    """What the bench picture draws: the cycles charged to each stage (the partition of the
    run), and per block (embed, block 0, ..., head) the cycles charged while it was the oldest
    unfinished stage and the DRAM bytes read meanwhile, and the MAC utilisation of each block
    against the array's floor."""
    from model.system.registers import PARTITION
    blocks = list(report["cycles_per_block"])
    computing = list(report["mac_utilisation_per_block"])
    return {
        "stages": {name: report["stage_cycles"][name] for name in PARTITION},
        "blocks": blocks,
        "block_cycles": [report["cycles_per_block"][b] for b in blocks],
        "dram_bytes": [report["dram_bytes_read_per_block"][b] for b in blocks],
        "computing": computing,
        "mac_utilisation": [report["mac_utilisation_per_block"][b] for b in computing],
    }


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def bench_figure(report):
    """Four panels: cycles per stage, cycles per block, MAC utilisation per block, DRAM bytes
    per block."""
    plt = _pyplot()
    s = bench_series(report)
    fig, axes = plt.subplots(4, 1, figsize=(9, 11), constrained_layout=True)
    title = (f"{report['config']} on {report['machine']}, task {report['task']}: "
             f"{report['total_cycles']:,} cycles")
    fig.suptitle(title)
    names = [n.lower() for n in s["stages"]]
    axes[0].barh(names, list(s["stages"].values()), color="tab:blue")
    axes[0].invert_yaxis()
    axes[0].set_xlabel("cycles charged (each cycle to the oldest unfinished stage)")
    axes[1].bar(s["blocks"], s["block_cycles"], color="tab:blue")
    axes[1].set_ylabel("cycles charged")
    axes[2].bar(s["computing"], [100 * u for u in s["mac_utilisation"]], color="tab:green")
    axes[2].set_ylabel("MAC utilisation (%)\nfloor / cycles charged")
    axes[3].bar(s["blocks"], [b / 1e6 for b in s["dram_bytes"]], color="tab:orange")
    axes[3].set_ylabel("DRAM read (MB)\nwhile charged")
    for ax in axes[1:]:
        ax.tick_params(axis="x", labelrotation=45)
    return fig


def accuracy_series(report):
    """What the accuracy picture draws: per data set and numerics preset, the MSE of every
    block's output against the float reference, held (the reference's routes) and free."""
    return [{"name": ds["name"], "task": ds["task"],
             "presets": {res["preset"]: {mode: [b["mse"] for b in res[mode]["blocks"]]
                                         for mode in ("held", "free")}
                         for res in ds["presets"]}}
            for ds in report["datasets"]]


def accuracy_figure(report):
    """One panel per data set: MSE per block, log scale, a line per preset and mode."""
    plt = _pyplot()
    series = accuracy_series(report)
    fig, axes = plt.subplots(len(series), 1, figsize=(9, 4 * len(series)), squeeze=False,
                             constrained_layout=True)
    for ax, ds in zip(axes[:, 0], series):
        for preset, modes in ds["presets"].items():
            for mode, style in (("held", "-o"), ("free", "--x")):
                mse = modes[mode]
                ax.plot(range(len(mse)), mse, style, label=f"{preset}, {mode}")
        ax.set_yscale("log")
        ax.set_xlabel("block")
        ax.set_ylabel("MSE vs float reference")
        ax.set_title(f"{ds['name']}, task {ds['task']}")
        ax.legend()
    if "upstream_reported_mse" in report:
        for ax in axes[:, 0]:
            ax.axhline(report["upstream_reported_mse"], color="grey", linewidth=0.8)
            ax.annotate("upstream's reported MSE", (0, report["upstream_reported_mse"]),
                        color="grey", fontsize=8, va="bottom")
    return fig


def save(fig, path):
    """Write ``fig`` to ``path`` (format from the extension) and close it."""
    plt = _pyplot()
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in ("svg", "png", "pdf"):
        plt.close(fig)
        raise ValueError(f"{path}: the picture's file must end in .svg, .png or .pdf")
    # No time stamp in the file, so that the same report draws the same bytes.
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(ext)
    fig.savefig(path, metadata=metadata)
    plt.close(fig)
