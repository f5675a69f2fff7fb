"""The tidy result schema: one row per measurement, the same columns for every scenario.

Scenarios return rows with the measurement-specific columns (metric, value, unit, step, ...);
the runner adds the columns that describe the run (model, dtype, device, ...). Extra columns
are allowed and kept (e.g. `repeat`, `stat`, `budget_bytes`, `slope`, `error`).
"""

from __future__ import annotations

# Every row has these, in this order.
COLUMNS = [
    "run_id", "scenario", "model", "arch", "impl", "params", "vocab_size", "dtype", "device",
    "hardware", "prefill_mode", "chunk_size", "batch_size", "prompt_len", "step",
    "metric", "value", "unit", "source",
]
SOURCES = ("measured", "simulated", "published")
ARCHS = ("ssm", "transformer")
# crosscheck's `tool` column: our loop, transformers' generate() timed by us, optimum-benchmark.
CROSSCHECK_TOOLS = ("ssm-bench", "ssm-bench:generate", "optimum-benchmark")

# Units, as constants so that scenarios and the report agree on spelling.
TOKENS_PER_S = "tokens/s"
SECONDS = "s"
BYTES = "bytes"
TOKENS = "tokens"
RATIO = "ratio"
SCORE = "score"
