"""The batch scenario in the report (bench/report/batch.py): the largest batch per model, pairing and
source, tokens/s and memory per batch, never pooled across pairings; and sampled-context
generation rows drawn as points on the full mode's axes."""

from __future__ import annotations

import matplotlib
import pandas as pd

matplotlib.use("Agg")

from bench.report import batch, sections  # noqa: E402
from bench.report.load import load  # noqa: E402
from bench.report.plots import PLOTS, plot_generation_throughput  # noqa: E402
from report_fixtures import _config, _row, generation_rows, write_run  # noqa: E402

BUDGET = 12 * 2 ** 20


def batch_rows(model: str, run_id: str, pairing: str, largest: int, per_seq: float, speed: float,
               source: str = "measured") -> list[dict]:
    """A batch run: the search's answer and trials, then (measured only) timed batches 1, 2, 4, ..."""
    common = dict(pairing=pairing, source=source, measure="cpu" if source == "measured" else "simulate",
                  budget_bytes=BUDGET, budget_hardware="tiny_budget", prompt_len=64, device="cpu", hardware="cpu",
                  dtype="float32")
    search = dict(common, verdict="bounded", limiting_factor="activations")
    rows = [_row(run_id, "batch", model, batch_size=None, metric="max_batch", value=float(largest),
                 unit="sequences", **search),
            _row(run_id, "batch", model, batch_size=None, metric="peak_bytes_at_limit", value=largest * per_seq,
                 unit="bytes", **search)]
    for b in (1, 2, 4, 8, largest, largest + 1):
        rows.append(_row(run_id, "batch", model, batch_size=b, metric="trial_peak_bytes", value=b * per_seq,
                         unit="bytes", oom=b * per_seq > BUDGET, **search))
    if source == "measured":
        for b in sorted({1, 2, 4, 8, largest}):
            timed = dict(common, batch_size=int(b), decode_path="eager")
            for repeat in (0, 1):
                rows.append(_row(run_id, "batch", model, metric="generation_throughput", value=speed * b,
                                 unit="tokens/s", repeat=repeat, **timed))
                rows.append(_row(run_id, "batch", model, metric="rss", value=b * per_seq, unit="bytes",
                                 repeat=repeat, **timed))
            for metric in ("generation_throughput", "decode_throughput"):
                rows.append(_row(run_id, "batch", model, metric=metric, value=speed * b * (1.2 if "decode" in metric
                                                                                            else 1.0),
                                 unit="tokens/s", stat="median", **timed))
    return rows


def build(tmp_path):
    write_run(tmp_path / "mamba_best", batch_rows("tiny_mamba", "mb", "best", 11, 1e6, 100.0),
              _config("tiny_mamba", "batch"))
    write_run(tmp_path / "mamba_release", batch_rows("tiny_mamba", "mr", "release", 9, 1.2e6, 40.0),
              _config("tiny_mamba", "batch"))
    write_run(tmp_path / "llama_best", batch_rows("tiny_llama", "lb", "best", 5, 2.2e6, 80.0),
              _config("tiny_llama", "batch"))
    write_run(tmp_path / "llama_sim", batch_rows("tiny_llama", "ls", "best", 6, 2e6, 0.0, source="simulated"),
              _config("tiny_llama", "batch"))
    collection = load([tmp_path])
    table = collection.table()
    found = next(s for s in sections.build(collection, table, [], {}) if s.title == batch.TITLE)
    return table, [item for item in found.items if isinstance(item, pd.DataFrame)]


def test_largest_batch_and_per_batch_tables_keep_pairings_and_sources_apart(tmp_path):
    table, (largest, timed) = build(tmp_path)
    assert len(largest) == 4  # one per model, pairing and source: never pooled
    answers = {(m.split(" ")[0], p, s): v for m, p, s, v in
               zip(largest["model"], largest["pairing"], largest["source"], largest["largest batch"])}
    assert answers == {("tiny_mamba", "best", "measured"): "11", ("tiny_mamba", "release", "measured"): "9",
                       ("tiny_llama", "best", "measured"): "5", ("tiny_llama", "best", "simulated"): "6"}
    # Timed batches: 1, 2, 4, 8 and the largest, measured runs only (a simulation times nothing).
    mamba_best = timed[(timed["model"].str.startswith("tiny_mamba")) & (timed["pairing"] == "best")]
    assert list(mamba_best["batch"]) == ["1", "2", "4", "8", "11"]
    assert list(mamba_best["generation (tokens/s)"])[-1] == "1,100" and "rss" in mamba_best["peak memory"].iloc[0]
    assert not (timed["model"].str.startswith("tiny_llama") & (timed["batch"] == "6")).any()


def test_batch_figure_draws_throughput_and_trial_memory(tmp_path):
    table, _ = build(tmp_path)
    assert PLOTS["batch"][0] == "batch"
    fig = batch.plot_batch(table)
    left, right = fig.axes[:2]
    assert len([line for line in left.get_lines() if line.get_label() and not line.get_label().startswith("_")]) == 3
    assert right.get_xscale() == "log"
    # the simulated llama's memory is dotted; each trial that did not fit is a cross, off the lines
    dotted = [line for line in right.get_lines() if line.get_linestyle() == ":"]
    assert len(dotted) == 1 and "source=simulated" in dotted[0].get_label()
    trials = table[table["metric"] == "trial_peak_bytes"]
    assert sum(c.get_offsets().shape[0] for c in right.collections) == int(trials["oom"].astype(bool).sum()) > 0
    assert batch.plot_batch(table[table["scenario"] != "batch"]) is None


def test_sampled_windows_are_points_on_the_full_mode_axes(tmp_path):
    full = generation_rows("tiny_mamba", "f", lambda s: 100.0, lambda s: 1e9, mode="full")
    sampled = [r for r in generation_rows("tiny_mamba", "s", lambda s: 98.0, lambda s: 1e9, steps=[640, 2176],
                                          mode="sampled") if r["metric"] == "window_throughput"]
    write_run(tmp_path / "full", full, _config("tiny_mamba", "generation"))
    write_run(tmp_path / "sampled", sampled, _config("tiny_mamba", "generation"))
    fig = plot_generation_throughput(load([tmp_path]).table())
    lines = {line.get_label(): line for line in fig.axes[0].get_lines() if not line.get_label().startswith("roof")}
    assert len(lines) == 2  # one axis, two series: the modes are never pooled
    by_mode = {("sampled" if "mode=sampled" in k else "full"): v for k, v in lines.items()}
    assert by_mode["sampled"].get_linestyle() == "None" and by_mode["sampled"].get_marker() not in (None, "None")
    assert by_mode["full"].get_linestyle() == "-"
    assert list(by_mode["sampled"].get_xdata()) == [640, 2176]


def test_findings_name_the_mode_and_each_line_its_own_span(tmp_path):
    from bench.report.findings import findings

    write_run(tmp_path / "full", generation_rows("tiny_mamba", "f", lambda s: 100.0, lambda s: 1e9, steps=[64, 128],
                                                 mode="full"), _config("tiny_mamba", "generation"))
    write_run(tmp_path / "sampled", generation_rows("tiny_mamba", "s", lambda s: 98.0, lambda s: 1e9,
                                                    steps=[640, 4224], mode="sampled"),
              _config("tiny_mamba", "generation"))
    lines = [line for item in findings(load([tmp_path]).table(), []) if isinstance(item, list) for line in item]
    assert any("mode=full" in line and "over 128 generated tokens" in line for line in lines)
    assert any("mode=sampled" in line and "windows at contexts up to 4,224 generated tokens" in line for line in lines)
