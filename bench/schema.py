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

# What a row's number is worth (the `status` column); `reason` says why for anything but ok.
#   ok       checked: finite outputs, strictly loaded weights, the model it claims to be
#   flagged  measured, but under a condition that may have distorted it (a contended machine,
#            a run that did not hold the measurement lock): shown, marked, never pooled with ok
#   invalid  the run finished but failed a validity check (non-finite logits or state)
#   failed   no measurement: an exception, an OOM, a bad config, a killed process
STATUSES = ("ok", "flagged", "invalid", "failed")
MEASURED = ("ok", "flagged")  # statuses that carry a number (flagged ones with their caveat)
# A job's state beyond its rows' statuses (the report counts them): stale (made from another
# config or code), incomplete (a staging directory whose process is gone), skipped (unreadable).
JOB_STATES = ("stale", "incomplete", "skipped")

# The settings a figure depends on. The report never pools rows that differ in any of these
# that are present: each distinct combination is its own line, row or bar.
SETTINGS = [
    "scenario", "model", "checkpoint", "arch", "family", "architecture", "impl", "weights", "params", "vocab_size",
    "n_layers", "d_model", "match_vocab", "vocab_resized_from", "tokenizer",
    "dtype", "device", "hardware", "budget_hardware", "budget_bytes", "measure", "threads", "seed", "kernels",
    "logits_to_keep", "start_len", "max_len", "growth", "resolution", "unbounded_slope_threshold", "flat_steps",
    "segment_addresses",
    "image_size", "attention", "memory",
    "prefill_mode", "chunk_size", "batch_size", "prompt_len", "new_tokens", "window", "warmup_tokens",
    "repeats", "kv_cache", "pairing", "decode_path", "mode", "harness", "suite", "tasks", "suite_complete", "limit", "doc_selection",
    "acc_norm_space", "fewshot_split", "tool", "source",
    "task", "seq_len", "steps", "lr", "weight_decay", "warmup_steps", "train_examples", "test_examples",
]
# Machine load recorded with every timed row (bench/contention.py): the report flags contention.
LOAD_COLUMNS = ["load1", "other_cpu", "other_cpu_peak"]
ARCHS = ("ssm", "transformer")
# With a limit, which documents lighteval scores (bench/evals/lighteval_runner.py says how each picks).
DOC_SELECTIONS = ("first_n", "spread", "lighteval")
# The probe scenario's tasks (bench/probes/tasks.py defines them).
PROBE_TASKS = ("mqar", "selective_copying", "induction_heads")
# crosscheck's `tool` column: our loop, transformers' generate() timed by us, optimum-benchmark.
CROSSCHECK_TOOLS = ("ssm-bench", "ssm-bench:generate", "optimum-benchmark")

# Units, as constants so that scenarios and the report agree on spelling.
TOKENS_PER_S = "tokens/s"
SECONDS = "s"
BYTES = "bytes"
TOKENS = "tokens"
RATIO = "ratio"
SCORE = "score"
