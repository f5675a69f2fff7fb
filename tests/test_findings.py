"""The report's Findings: each line's numbers come from the shown rows, with their source, and
rows that differ in a setting other than the model's description never share a line."""

import math

import pandas as pd

from bench.report.findings import findings
from tests.report_fixtures import _row, generation_rows


def max_len_rows(model, arch, parallel, sequential, slope_seq, **columns):
    common = dict(arch=arch, source="measured", measure="cpu", budget_bytes=72 * 2**20, device="cpu",
                  hardware="cpu", budget_hardware="smoke_budget", **columns)
    return [
        _row(f"{model}-msl", "max_seq_len", model, metric="max_prompt_len", value=parallel, unit="tokens",
             prefill_mode="parallel", verdict="bounded", slope=7304.0, **common),
        _row(f"{model}-msl", "max_seq_len", model, metric="max_prompt_len", value=sequential, unit="tokens",
             prefill_mode="sequential", chunk_size=256, slope=slope_seq,
             verdict="unbounded" if math.isinf(sequential) else "bounded", **common),
    ]


def lines(rows):
    items = findings(pd.DataFrame(rows), figures=[])
    return [line for item in items if isinstance(item, list) for line in item]


def test_max_prompt_line_states_each_model_and_the_ssm_to_transformer_ratio():
    rows = max_len_rows("tiny_mamba", "ssm", 2048.0, math.inf, 8.0) + \
        max_len_rows("tiny_llama", "transformer", 1792.0, 16128.0, 904.0)
    (line,) = lines(rows)
    assert line.startswith("measured, cpu, float16, smoke_budget, budget 72.0 MiB:")  # where the numbers come from
    assert "tiny_mamba (162M params) unbounded, 8 B/token" in line and "tiny_llama (162M params) 16.1k" in line
    assert "1.14× the longest Transformer's" in line  # parallel: 2048 / 1792


def test_rows_that_differ_in_a_setting_get_their_own_line_and_failed_rows_none():
    rows = max_len_rows("tiny_mamba", "ssm", 2048.0, math.inf, 8.0) + \
        max_len_rows("tiny_llama", "transformer", 1792.0, 16128.0, 904.0, dtype="bfloat16")
    rows += [{**r, "model": "broken", "status": "failed", "value": 1e9}
             for r in max_len_rows("broken", "ssm", 1.0, 1.0, 1.0)]
    found = lines(rows)
    assert len(found) == 2 and not any("broken" in line for line in found)


def test_generation_line_says_constant_state_and_the_kv_cache_growth():
    weights = 162_322_944 * 2  # the fixture's params, float16: state_bytes = memory - weights
    rows = generation_rows("tiny_mamba", "g1", throughput=lambda s: 500.0, memory=lambda s: weights + 4096.0,
                           arch="ssm")
    rows += generation_rows("tiny_llama", "g2", throughput=lambda s: 500.0 - s / 16,
                            memory=lambda s: weights + 512.0 * s, arch="transformer")
    (line,) = [line for line in lines(rows) if "window throughput" in line]
    assert "tiny_mamba" in line and "constant" in line
    assert "tiny_llama (162M params) grows 512 B/token" in line and "(0.50×)" not in line


def test_flagged_rows_different_models_and_chunk_sizes_are_never_pooled():
    rows = max_len_rows("tiny_mamba", "ssm", 2048.0, math.inf, 8.0)
    rows += max_len_rows("tiny_llama", "transformer", 1792.0, 16128.0, 904.0)
    rows += [{**r, "chunk_size": 1024} for r in max_len_rows("tiny_llama", "transformer", 1792.0, 512.0, 904.0)
             if r["prefill_mode"] == "sequential"]
    rows += [{**r, "status": "flagged", "value": 10.0 * r["value"]}
             for r in max_len_rows("tiny_mistral", "transformer", 1792.0, 16128.0, 904.0)]
    found = lines(rows)
    assert len(found) == 2 and sum("flagged" in line for line in found) == 1  # its own line
    (ok,) = [line for line in found if "flagged" not in line]
    assert "(chunks of 256): " in ok and "(chunks of 1024): tiny_llama (162M params) 512" in ok
    weights = 162_322_944 * 2
    gen = generation_rows("m", "a", throughput=lambda s: 100.0, memory=lambda s: weights + 1.0, arch="ssm")
    gen += generation_rows("m", "b", throughput=lambda s: 900.0, memory=lambda s: weights + 1.0, arch="ssm",
                           params=1_000_000)
    (line,) = [line for line in lines(gen) if "window throughput" in line]
    assert "m (162M params) 101 → 101" in line and "m (1M params) 909 → 909" in line  # two entries, not one median
