"""The two pairings: one table decides impl, KV cache and decode path; rows and the report keep them apart."""

import re

import pytest
import torch

from bench import pairing, runner
from bench.backends import get_backend_class
from bench.config import ConfigError
from bench.schema import SETTINGS
from tests.test_harness import FAST, load

CPU = torch.device("cpu")


@pytest.mark.parametrize("name,model,impl,kv_cache,decode", [
    ("release", "tiny_mamba", "transformers", "dynamic", "eager"),
    ("release", "tiny_llama", "transformers", "dynamic", "eager"),
    ("release", "tiny_mistral", "transformers", "dynamic", "eager"),
    ("best", "tiny_mamba", "ssm_bench", "dynamic", "graph"),
    ("best", "small_mamba", "ssm_bench", "dynamic", "graph"),
    ("best", "tiny_llama", "transformers", "static", "compile"),
    ("best", "tiny_mistral", "transformers", "static", "compile"),
])
def test_the_table_decides_impl_cache_and_decode(name, model, impl, kv_cache, decode):
    cfg = load([f"pairing={name}", f"model={model}"])
    assert (cfg.model.impl, cfg.scenario.kv_cache, pairing.decode(cfg)) == (impl, kv_cache, decode)
    # An explicit value the pairing agrees with is accepted as is.
    assert load([f"pairing={name}", f"model={model}", f"model.impl={impl}"]).model.impl == impl


def test_best_is_the_default():
    assert load([]).pairing == pairing.DEFAULT == "best"
    assert {"pairing", "decode_path"} <= set(SETTINGS)


@pytest.mark.parametrize("overrides,message", [
    (["pairing=release", "model=tiny_mamba", "model.impl=ssm_bench"],
     "model.impl: 'ssm_bench' contradicts pairing=release, which runs ssm models with impl 'transformers'"),
    (["pairing=best", "model=tiny_mamba", "model.impl=transformers"],
     "model.impl: 'transformers' contradicts pairing=best, which runs ssm models with impl 'ssm_bench'"),
    (["pairing=best", "model=tiny_llama", "scenario.kv_cache=dynamic"],
     "scenario.kv_cache: 'dynamic' contradicts pairing=best, which gives the Transformers a static cache"),
    (["pairing=release", "model=tiny_llama", "scenario.kv_cache=static"],
     "scenario.kv_cache: 'static' contradicts pairing=release"),
    (["pairing=fastest"], "pairing: 'fastest' is not one of ['release', 'best']"),
])
def test_a_contradicting_override_is_a_one_line_config_error(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        load(overrides)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name,impl,decode_path", [("best", "ssm_bench", "eager"), ("release", "transformers", "eager")])
def test_rows_carry_the_pairing_and_the_decode_path(name, impl, decode_path, tmp_path):
    cfg = load([f"pairing={name}", "model=tiny_mamba", *FAST])
    table = runner.run_job(cfg, tmp_path)
    assert table["status"].isin(["ok", "flagged"]).all(), table.get("reason")
    assert set(table["pairing"]) == {name} and set(table["impl"]) == {impl}
    assert set(table["decode_path"]) == {decode_path}  # a CPU has no CUDA graph
    assert "compile_time" not in set(table["metric"])  # nothing was compiled or captured
    assert table["kv_cache"].isna().all()  # an SSM keeps no KV cache, whatever scenario.kv_cache says


@pytest.mark.parametrize("model,kv_cache", [("tiny_mamba", None), ("tiny_llama", "static")])
def test_a_failed_jobs_row_records_the_cache_as_a_measured_one_would(model, kv_cache):
    cfg = load(["pairing=best", f"model={model}", *FAST])
    (row,) = runner.to_table([runner.failure_row(RuntimeError("the checkpoint is corrupt"))], cfg, "r").to_dict("records")
    assert row["status"] == "failed" and row["kv_cache"] == kv_cache


@pytest.fixture(scope="module")
def compiled_llama():
    """tiny_llama (512-token vocabulary) as pairing=best runs it on a CPU, prepared once."""
    cfg = load(["pairing=best", "model=tiny_llama", "model.vocab_size=512"])
    backend = get_backend_class(cfg.model.impl)(cfg.model, CPU, torch.float32, kv_cache="static", max_cache_len=40,
                                                decode="compile")
    backend.load()
    backend.probe()
    return cfg, backend, backend.prepare_decode(1)


def test_compile_time_is_its_own_row_and_cpu_keeps_the_fastest_path(compiled_llama):
    _, backend, rows = compiled_llama
    by_metric = {}
    for row in rows:
        by_metric.setdefault(row["metric"], []).append(row)
    assert set(by_metric) == {"compile_time", "decode_path_throughput"}
    (compile_row,) = by_metric["compile_time"]
    assert compile_row["unit"] == "s" and compile_row["value"] > 0 and compile_row["decode_path"] == "compiled"
    rates = {(r["decode_path"], r["kv_cache"]): r["value"] for r in by_metric["decode_path_throughput"]}
    # release's path (eager over a dynamic cache) is among them: best is never slower than release
    assert set(rates) == {("eager", "dynamic"), ("eager", "static"), ("compiled", "static")}
    assert all(v > 0 for v in rates.values())
    chosen = (backend.decode_path, backend.kv_cache)
    assert chosen == max(rates, key=rates.get)  # the fastest one, as measured
    assert [(r["decode_path"], r["kv_cache"]) for r in by_metric["decode_path_throughput"] if r["chosen"]] == [chosen]


@pytest.mark.parametrize("winner", [("eager", "dynamic"), ("eager", "static"), ("compiled", "static")])
def test_the_rows_record_the_cache_and_path_the_cpu_chose(monkeypatch, winner):
    """Whichever path the calibration finds fastest (forced here: timings are noisy) is what the
    scenario runs and what every row records; the compile_time row keeps what was compiled."""
    from bench.backends.transformers import COMPILE_WARMUP_STEPS, TransformersBackend
    from bench.scenarios import generation

    cfg = load(["pairing=best", "model=tiny_llama", "scenario=generation", *FAST])
    backend = TransformersBackend(cfg.model, CPU, torch.float32, **TransformersBackend.run_options(cfg))
    backend.load()

    def fake_rate(self, batch_size, steps, compiled):
        if steps == COMPILE_WARMUP_STEPS:
            return 0.0  # the compile warm-up: not a calibration figure
        return 100.0 if (("compiled" if compiled else "eager"), self.kv_cache) == winner else 10.0

    backend.prefill(torch.zeros(1, 3, dtype=torch.long))  # the static cache the real calibration leaves behind
    assert backend._static is not None
    monkeypatch.setattr(TransformersBackend, "_decode_tokens", fake_rate)
    rows = backend.prepare_decode(1)
    (compile_row,) = [r for r in rows if r["metric"] == "compile_time"]
    assert (compile_row["decode_path"], compile_row["kv_cache"]) == ("compiled", "static")
    assert [(r["decode_path"], r["kv_cache"]) for r in rows if r.get("chosen")] == [winner]
    assert (backend.decode_path, backend.kv_cache) == winner
    assert (backend._static is None) == (winner[1] == "dynamic")  # a losing static cache is not kept
    generated = [{**backend.describe(), **r} for r in generation.run(cfg, backend)]  # as the runner records them
    assert cfg.scenario.kv_cache == "static"  # the pairing's setting...
    assert {r["kv_cache"] for r in generated} == {winner[1]}  # ...but the rows say what ran
    assert backend.describe()["decode_path"] == winner[0]
    cache = backend.prefill(torch.zeros(1, 3, dtype=torch.long))[1]
    assert type(cache).__name__ == ("StaticCache" if winner[1] == "static" else "DynamicCache")


def test_compiled_static_decode_matches_eager_dynamic_decode(compiled_llama):
    cfg, backend, _ = compiled_llama
    eager = get_backend_class("transformers")(cfg.model, CPU, torch.float32)  # DynamicCache, eager
    eager.model = backend.model
    prompt = torch.randint(0, 512, (1, 7), generator=torch.Generator().manual_seed(1))
    backend.decode_path, backend.kv_cache = "compiled", "static"  # whichever path the CPU kept, check this one
    (a, cache_a), (b, cache_b) = backend.prefill(prompt), eager.prefill(prompt)
    assert type(cache_a).__name__ == "StaticCache" and type(cache_b).__name__ == "DynamicCache"
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    token = a.argmax(-1)
    for _ in range(12):
        a, b = backend.step(token, cache_a), eager.step(token, cache_b)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        token = a.argmax(-1)
    # A new sequence reuses (and resets) the same StaticCache: the compiled graph's tensors.
    assert backend.prefill(prompt)[1] is cache_a


def test_the_report_never_pools_or_divides_across_pairings():
    import pandas as pd

    from bench.report.plots import implementation_ratios
    from bench.report.rows import series

    rows = pd.DataFrame([{"scenario": "implementation", "model": "small_mamba", "metric": "decode_throughput",
                          "impl": impl, "value": value, "status": "ok", "pairing": name}
                         for name, impl, value in (("release", "transformers", 10.0), ("release", "ssm_bench", 20.0),
                                                   ("best", "transformers", 40.0), ("best", "ssm_bench", 120.0))])
    assert "pairing" in series(rows)
    ratios = implementation_ratios(rows)
    # one ratio per pairing, each between rows of that pairing (never 120 / 10 or 20 / 40)
    assert dict(zip(ratios["pairing"], ratios["ratio"])) == {"release": 2.0, "best": 3.0}


def test_the_generation_table_keeps_path_preparation_apart():
    """compile_time and the CPU's per-path calibration have their own decode path and cache: in
    the Generation section they make a table of their own, not empty rows beside the measured one."""
    import pandas as pd

    from bench.report import sections

    base = {"scenario": "generation", "model": "m", "arch": "transformer", "pairing": "best", "status": "ok",
            "step": 64}
    measured = [{**base, "decode_path": "compiled", "kv_cache": "static", "metric": "decode_throughput",
                 "value": v, "unit": "tokens/s"} for v in (240.0, 250.0)]
    prepared = [{**base, "decode_path": "compiled", "kv_cache": "static", "metric": "compile_time", "value": 25.5,
                 "unit": "s"}] + \
        [{**base, "decode_path": p, "kv_cache": c, "metric": "decode_path_throughput", "value": v, "unit": "tokens/s",
          "chosen": p == "compiled"} for p, c, v in (("eager", "dynamic", 160.0), ("eager", "static", 150.0),
                                                     ("compiled", "static", 246.0))]
    tables = [i for i in sections._generation(pd.DataFrame(measured + prepared)).items if isinstance(i, pd.DataFrame)]
    main, prep = tables
    assert len(main) == 1 and "decode_path" not in main  # one measured row, no empty calibration groups
    assert len(prep) == 1
    assert prep["compiled, static cache (tokens/s)"].iloc[0].endswith("✓")
    assert not prep["eager, dynamic cache (tokens/s)"].iloc[0].endswith("✓")
    assert prep["compile time (s)"].iloc[0].startswith("25.5")
