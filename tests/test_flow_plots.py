"""The pictures of ``sim.bench --plot`` and ``model.accuracy --plot``: written, non-empty, and
drawn from the reports' JSON (the bars and lines hold the report's figures). The bench report
is a real run of micro in the cycle-accurate machine."""

import json

import pytest

from flow.plots import accuracy_figure, accuracy_series, bench_figure, bench_series, save
from model.accuracy import compare
from model.config import MICRO
from model.numerics import DEFAULT, EDGEMOE
from model.system.registers import PARTITION
from model.weights import synthetic, synthetic_image
from sim.bench import benchmark, main as bench_main


@pytest.fixture(scope="module")
def bench_report():
    return benchmark("micro", task=1)


def test_the_bench_report_holds_the_per_block_figures(bench_report):
    r = bench_report
    assert sum(r["stage_cycles"][n] for n in PARTITION) == r["total_cycles"]
    assert r["stage_cycles"]["GATE"] > 0 and r["stage_cycles"]["HEAD"] > 0
    blocks = ["embed"] + [f"block {b}" for b in range(MICRO.depth)]
    assert list(r["cycles_per_block"]) == blocks + ["head"]
    # Charged as the counters charge: the blocks add up to the run, and to the counters.
    assert sum(r["cycles_per_block"].values()) == r["total_cycles"]
    assert r["cycles_per_block"]["embed"] == r["stage_cycles"]["EMBED"]
    assert r["cycles_per_block"]["head"] == r["stage_cycles"]["HEAD"]
    halves = r["cycles_per_half_block"]
    assert sum(v for k, v in halves.items() if k.endswith("moe")) == \
        r["stage_cycles"]["GATE"] + r["stage_cycles"]["MOE"]
    assert sum(r["floor_cycles_per_block"].values()) == r["floor_cycles"]
    assert list(r["mac_utilisation_per_block"]) == blocks
    assert all(u > 0 for u in r["mac_utilisation_per_block"].values())
    # Every byte read during the run is charged to one block.
    assert sum(r["dram_bytes_read_per_block"].values()) == r["dram_bytes_read"]


def test_the_bench_picture_draws_the_report(bench_report, tmp_path):
    fig = bench_figure(bench_report)
    s = bench_series(bench_report)
    assert [p.get_width() for p in fig.axes[0].patches] == list(s["stages"].values())
    assert [p.get_height() for p in fig.axes[1].patches] == s["block_cycles"]
    assert [p.get_height() for p in fig.axes[2].patches] == pytest.approx(
        [100 * u for u in s["mac_utilisation"]])
    assert [p.get_height() for p in fig.axes[3].patches] == pytest.approx(
        [b / 1e6 for b in s["dram_bytes"]])
    path = tmp_path / "bench.svg"
    save(fig, str(path))
    assert path.stat().st_size > 1000 and b"<svg" in path.read_bytes()[:1000]


def test_the_bench_command_plots_an_earlier_report(bench_report, tmp_path, capsys):
    report = tmp_path / "r.json"
    report.write_text(json.dumps(bench_report))
    png = tmp_path / "bench.png"
    bench_main(["--config", "micro", "--from-json", str(report), "--plot", str(png), "--json"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(capsys.readouterr().out) == bench_report
    with pytest.raises(SystemExit):
        bench_main(["--config", "micro", "--from-json", str(report), "--plot", "x.gif"])


def test_the_accuracy_picture_draws_the_report(tmp_path):
    weights, image = synthetic(MICRO, 0), synthetic_image(MICRO, 0)
    report = {"upstream_reported_mse": 1.51e-3, "datasets": [{
        "name": "synthetic micro", "task": 0,
        "presets": [compare(weights, image, 0, n) for n in (DEFAULT, EDGEMOE)]}]}
    report = json.loads(json.dumps(report))          # as the command's JSON has it
    fig = accuracy_figure(report)
    lines = [list(line.get_ydata()) for line in fig.axes[0].get_lines()]
    series = accuracy_series(report)[0]["presets"]
    expected = [series[p][m] for p in ("default", "edgemoe") for m in ("held", "free")]
    assert lines[:4] == expected and len(expected[0]) == MICRO.depth
    path = tmp_path / "accuracy.pdf"
    save(fig, str(path))
    assert path.read_bytes()[:5] == b"%PDF-"
