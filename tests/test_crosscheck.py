"""The crosscheck scenario: one model measured by ssm-bench and by optimum-benchmark."""

import math

import pandas as pd
import pytest

from bench import runner
from bench.config import ConfigError
from bench.schema import CROSSCHECK_TOOLS, MEASURED
from tests.test_harness import load

LOOP, GENERATE, OPTIMUM = CROSSCHECK_TOOLS
FAST = ["scenario=crosscheck", "pairing=release", "scenario.new_tokens=12", "scenario.window=4", "scenario.repeats=2",
        "scenario.warmup_tokens=2", "scenario.rounds=1", "scenario.progress=false", "isolate=false",
        "threads=2"]


@pytest.mark.parametrize("model", ["mamba_d64", "tiny_llama"])
def test_both_tools_measure_the_same_model(model, tmp_path):
    cfg = load(FAST + [f"model={model}", "model.vocab_size=1024"])
    table = runner.run_job(cfg, tmp_path)
    assert table["status"].isin(MEASURED).all(), table.get("reason")
    assert set(table["vocab_size"]) == {1024}

    def value(tool, metric):
        rows = table[(table["tool"] == tool) & (table["metric"] == metric)]
        assert len(rows) == 1, (tool, metric)
        return rows["value"].iloc[0]

    for metric in ("decode_throughput", "ttft"):
        for tool in CROSSCHECK_TOOLS:
            assert value(tool, metric) > 0
    for tool in (LOOP, OPTIMUM):  # CPU memory: the process RSS, above what it held before the model
        assert value(tool, "peak_rss") >= value(tool, "baseline_rss") > 0
    ratios = table[table["metric"].str.endswith("_ratio")]
    assert set(ratios["metric"]) == {"decode_throughput_ratio", "ttft_ratio", "peak_rss_ratio"}
    for _, row in ratios.iterrows():
        ours, metric = row["tool"].split("/")[0], row["metric"].removesuffix("_ratio")
        assert math.isclose(row["value"], value(ours, metric) / value(OPTIMUM, metric))
        assert bool(row["agrees"]) == (abs(row["value"] - 1) <= cfg.scenario.tolerance)
    assert value(LOOP, "loop_drift") > 0
    overhead = value(f"{OPTIMUM}-{LOOP}", "decode_overhead")
    assert math.isclose(overhead, 1e3 / value(OPTIMUM, "decode_throughput") - 1e3 / value(LOOP, "decode_throughput"))
    assert (table["impl"] == "transformers").all()  # pairing=release: transformers' own classes on both sides


@pytest.mark.parametrize("override,message", [
    ("scenario.prefill_mode=sequential", "scenario.prefill_mode: optimum-benchmark prefills in parallel only"),
    ("scenario.new_tokens=1", "scenario.new_tokens: decode throughput needs >= 2 tokens"),
    ("scenario.tolerance=1.5", "scenario.tolerance"),
])
def test_impossible_settings_name_their_field(override, message):
    with pytest.raises(ConfigError, match=message):
        load(["scenario=crosscheck", override])


def test_crosscheck_runs_what_optimum_benchmark_runs():
    """optimum-benchmark runs transformers' defaults; pairing=best would compile our side only."""
    with pytest.raises(ConfigError, match=r"^pairing: the crosscheck scenario .* pairing=release, not 'best'"):
        load(["scenario=crosscheck", "pairing=best"])


def test_report_shows_the_tools_side_by_side(tmp_path):
    from bench.report.sections import _crosscheck

    rows = [{"model": "m", "dtype": "float32", "device": "cpu", "tool": tool, "metric": "decode_throughput",
             "value": v, "unit": "tokens/s"} for tool, v in zip(CROSSCHECK_TOOLS, (100.0, 90.0, 95.0))]
    rows.append({"model": "m", "dtype": "float32", "device": "cpu", "tool": f"{LOOP}/{OPTIMUM}",
                 "metric": "decode_throughput_ratio", "value": 100 / 95, "unit": "ratio", "agrees": True,
                 "tolerance": 0.1})
    table = next(item for item in _crosscheck(pd.DataFrame(rows)).items if isinstance(item, pd.DataFrame))
    row = table.iloc[0]
    assert (row[LOOP], row[GENERATE], row[OPTIMUM]) == ("100", "90", "95")
    assert row[f"{LOOP} / {OPTIMUM}"] == "1.05 ✓" and row[f"{GENERATE} / {OPTIMUM}"] == "—"


def test_every_metric_row_of_the_report_names_its_model():
    """The table's model cell must not be lost after the first metric of a model."""
    from bench.report.sections import _crosscheck

    rows = [{"model": "m", "dtype": "float32", "device": "cpu", "tool": tool, "metric": metric, "value": v,
             "unit": unit} for metric, unit in (("decode_throughput", "tokens/s"), ("peak_memory", "bytes"))
            for tool, v in zip(CROSSCHECK_TOOLS, (100.0, 90.0, 95.0))]
    table = next(item for item in _crosscheck(pd.DataFrame(rows)).items if isinstance(item, pd.DataFrame))
    assert table["model"].tolist() == ["m", "m"] and list(table.columns[:2]) == ["model", "metric"]
