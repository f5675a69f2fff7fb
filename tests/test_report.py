"""bench.report on a fixture results tree (tests/report_fixtures.py): every output is written, bad
runs are named and skipped, sections follow the data, and the HTML renders in headless Chromium.

Then the report's promises, one test each: every job that is not ok is counted and listed with
its reason; rows that differ in a setting are never pooled; tables and figures name what their
rows record; a missing results directory or a crash never replaces the previous report; NaN and
inf are printed, never a crash; a parquet that fails validation falls back to the CSV; --strict
fails on any failed, invalid, incomplete or skipped job."""

from __future__ import annotations

import math
import re
import shutil
import subprocess

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

from bench.report import render, sections, write_report  # noqa: E402
from bench.report.__main__ import main  # noqa: E402
from bench.report.load import load  # noqa: E402
from bench.report.plots import (PLOTS, leaderboard_scores, plot_generation_throughput,  # noqa: E402
                                plot_max_prompt_len, roofline_tokens_per_s)
from bench.report.validate import validate  # noqa: E402
from bench.schema import COLUMNS  # noqa: E402
from report_fixtures import (_config, _row, failure_row, generation_rows, make_results, write_run,  # noqa: E402
                             write_staging)

# The figures of the scenarios the fixture has (vision, probes and batch have their own tests).
FIXTURE_SCENARIOS = ("generation", "implementation", "max_seq_len", "leaderboard")
FIXTURE_PLOTS = [name for name, (scenario, *_) in PLOTS.items() if scenario in FIXTURE_SCENARIOS]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The fixture tree and the report written from it (built once: plotting takes a few seconds)."""
    root = tmp_path_factory.mktemp("results")
    paths = make_results(root)
    report = write_report([root / "runs", root / "multirun"], root / "report")
    return root, paths, report


def section(md: str, title: str) -> str:
    """The text of the report.md section whose title starts with `title`."""
    return md.split(f"\n## {title}", 1)[1].split("\n## ", 1)[0]


def tables(root, title: str) -> list[pd.DataFrame]:
    """The tables of one section, built without drawing (fast)."""
    collection = load([root])
    built_sections = sections.build(collection, collection.table(), [], {})
    found = next(s for s in built_sections if s.title.startswith(title))
    return [item for item in found.items if isinstance(item, pd.DataFrame)]


def test_writes_every_output(built):
    root, _, report = built
    out = root / "report"
    for name in ("report.md", "report.html", "all_results.csv", "all_results.parquet"):
        assert (out / name).stat().st_size > 0, name
    assert sorted(report.figures) == sorted(FIXTURE_PLOTS)  # every figure of the fixture's scenarios
    for name in FIXTURE_PLOTS:
        assert (out / "plots" / f"{name}.png").stat().st_size > 1000
        assert (out / "plots" / f"{name}.svg").read_text().lstrip().startswith("<?xml")


def test_bad_runs_are_named_and_skipped(built):
    root, paths, report = built
    reasons = {s.path: s.reason for s in report.collection.skipped}
    assert set(reasons) == {paths["corrupt"], paths["partial"]}
    assert "results.parquet unreadable" in reasons[paths["corrupt"]]
    assert "no results file" in reasons[paths["partial"]] and "config.yaml" in reasons[paths["partial"]]
    skipped_section = (root / "report" / "report.md").read_text().split("## Skipped runs")[1]
    assert "corrupt" in skipped_section and "partial" in skipped_section


def test_good_runs_are_all_read(built):
    _, paths, report = built
    read = {r.path for r in report.collection.runs}
    assert read == {paths[k] for k in ("gen_mamba", "gen_llama", "gen_sim", "msl", "impl", "leaderboard",
                                       "gen_flagged", "gen_failed", "gen_failed_legacy", "gen_invalid")}
    assert not any(".hydra" in str(p) for p in read)  # Hydra's own config.yaml is not a run


def test_combined_table(built):
    root, _, report = built
    df = pd.read_parquet(root / "report" / "all_results.parquet")
    assert list(df.columns[:len(COLUMNS)]) == COLUMNS
    assert {"run_dir", "git_sha", "weights", "bandwidth_gbps", "status", "reason", "stale"} <= set(df.columns)
    assert set(df["scenario"]) == {"generation", "implementation", "max_seq_len", "leaderboard"}
    unbounded = df[(df["metric"] == "max_prompt_len") & (df["verdict"] == "unbounded")]["value"]
    assert len(unbounded) == 1 and math.isinf(unbounded.iloc[0])
    assert (df["status"] == "failed").sum() == 3 and df["stale"].isna().all()
    assert set(df.loc[df["model"] == "llama-160m", "weights"]) >= {"pretrained"}
    csv = pd.read_csv(root / "report" / "all_results.csv")
    assert len(csv) == len(df)


def test_report_sections_and_caveats(built):
    root, _, _ = built
    md = (root / "report" / "report.md").read_text()
    for heading in ("What ran", "Environment", "Caveats", "Generation", "Implementation",
                    "Maximum prompt length", "Leaderboard", "Failed", "Invalid", "Flagged", "Incomplete runs",
                    "Skipped runs"):
        assert f"## {heading}" in md, heading
    assert "0123456789abcdef" in md and "transformers" in md and "4.57.1" in md  # git sha, versions
    assert "**Simulated** rows" in md and "random weights" in md
    assert "dataset piqa not found offline" in md
    for name in FIXTURE_PLOTS:
        assert f"(plots/{name}.png)" in md


def test_max_prompt_table_shows_allocated_and_reserved_peaks_at_the_limit(built):
    """A capped GPU runs out of reserved bytes: the table puts them beside the allocated peak, on
    the row of the run and prefill mode they belong to."""
    root, _, _ = built
    (table,) = tables(root, "Maximum prompt length")
    row = table[(table["model"].str.startswith("mamba-130m")) & (table["prefill_mode"] == "parallel")].iloc[0]
    assert (row["peak allocated at limit"], row["peak reserved at limit"]) == ("21.50 GiB", "23.75 GiB")
    # the same run's other model and other prefill mode recorded none: nothing borrowed from this row
    for model, mode in (("mamba-130m", "sequential"), ("llama-160m", "parallel")):
        other = table[(table["model"].str.startswith(model)) & (table["prefill_mode"] == mode)].iloc[0]
        assert pd.isna(other["peak reserved at limit"]), (model, mode)


def test_two_runs_with_the_same_settings_keep_their_own_peaks_at_the_limit(tmp_path):
    """The at-limit peaks are matched to their max_prompt_len row by run too: two runs that agree on
    every setting (a rerun) each show their own."""
    for run_id, (limit, allocated, reserved) in {"msl_a": (1024, 1.0, 1.5), "msl_b": (2048, 2.0, 2.5)}.items():
        common = dict(prefill_mode="parallel", verdict="bounded", budget_bytes=24 * 2**30, source="simulated")
        rows = [_row(run_id, "max_seq_len", "mamba-130m", metric="max_prompt_len", value=limit, unit="tokens",
                     limiting_factor="activations", **common)]
        rows += [_row(run_id, "max_seq_len", "mamba-130m", metric=metric, value=v * 2**30, unit="bytes", **common)
                 for metric, v in (("peak_bytes_at_limit", allocated), ("peak_reserved_at_limit", reserved))]
        write_run(tmp_path / "runs" / run_id, rows, _config("mamba-130m", "max_seq_len"))
    (table,) = tables(tmp_path, "Maximum prompt length")
    shown = {(r["max prompt (tokens)"], r["peak allocated at limit"], r["peak reserved at limit"])
             for _, r in table.iterrows()}
    assert shown == {("1.02k", "1.00 GiB", "1.50 GiB"), ("2.05k", "2.00 GiB", "2.50 GiB")}


def test_html_is_self_contained(built):
    root, _, report = built
    html = (root / "report" / "report.html").read_text()
    md = (root / "report" / "report.md").read_text()
    assert html.count("data:image/png;base64,") == md.count("](plots/") - md.count("([SVG](plots/")
    assert html.count("data:image/png;base64,") >= len(report.figures)  # Findings shows some twice
    assert not re.search(r'src="(?!data:)', html)  # no external images, scripts or styles


def test_sections_follow_the_data(tmp_path):
    """Only a generation run: no other scenario's section or plot, and nothing skipped."""
    write_run(tmp_path / "runs" / "g", generation_rows("mamba-130m", "g", lambda s: 100.0, lambda s: 1e9),
              _config("mamba-130m", "generation"))
    report = write_report([tmp_path / "runs"], tmp_path / "report")
    assert sorted(report.figures) == ["generation_memory", "generation_throughput"]
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Maximum prompt length" not in md and "## Leaderboard" not in md
    assert "None: every run directory found was read." in md


def test_empty_input_still_writes_a_report(tmp_path):
    (tmp_path / "nothing").mkdir()
    report = write_report([tmp_path / "nothing"], tmp_path / "report")
    assert report.figures == [] and (tmp_path / "report" / "report.html").exists()


# --- every job that is not ok is counted and listed ---------------------------------------

def test_overview_counts_every_kind_of_job(built):
    root, _, report = built
    md = (root / "report" / "report.md").read_text()
    summary = "3 of 13 jobs failed, 1 invalid, 1 flagged, 0 stale, 1 incomplete, 2 skipped; 5 ok."
    assert summary in section(md, "What ran")
    assert md.index(summary) < md.index("## Generation")  # near the top


def test_failures_are_listed_with_their_reason(built):
    root, paths, report = built
    md = (root / "report" / "report.md").read_text()
    failed = section(md, "Failed")
    assert "gen_llama_oom" in failed and "OutOfMemoryError: CUDA out of memory" in failed
    # The runner's older failure rows (`error`, empty source) are failures, not malformed runs.
    assert "gen_llama_died" in failed and "RuntimeError: the measuring process died" in failed
    assert paths["gen_failed_legacy"] not in {s.path for s in report.collection.skipped}
    assert "dataset piqa not found offline" in failed
    assert "gen_llama`: a redo (" in failed  # meta.json last_attempt: previous results kept
    assert "non-finite logits at step 64" in section(md, "Invalid")
    assert "contended: load1 7.9 on 4 cores" in section(md, "Flagged")


def test_flagged_rows_are_marked_and_invalid_ones_left_out(built):
    root, _, _ = built
    gen = section((root / "report" / "report.md").read_text(), "Generation")
    mamba_h200 = [line for line in gen.splitlines() if line.startswith("| mamba-130m") and "h200" in line]
    assert len(mamba_h200) == 2  # ok and flagged: never one pooled row
    assert any("⚠ flagged" in line and "250 [" in line for line in mamba_h200)
    assert any("⚠" not in line and "410 [" in line for line in mamba_h200)
    assert "999" not in gen  # the invalid run's throughput


def test_incomplete_runs_are_listed_not_read(built):
    root, paths, report = built
    assert [job.path for job in report.collection.incomplete] == [paths["killed"]]
    incomplete = section((root / "report" / "report.md").read_text(), "Incomplete runs")
    assert "gen_llama_killed" in incomplete and "started 2025-01-01 12:05 by pid 4000000 on gpu-node-7" in incomplete


def test_stale_runs_are_kept_out_of_the_tables(tmp_path):
    write_run(tmp_path / "runs" / "current", generation_rows("mamba-130m", "c", lambda s: 410.0, lambda s: 1e9),
              _config("mamba-130m", "generation"))
    write_run(tmp_path / "runs" / "old", generation_rows("mamba-130m", "o", lambda s: 999.0, lambda s: 1e9),
              _config("mamba-130m", "generation"), fingerprint={"code": "0" * 16, "config": "fixture"})
    collection = load([tmp_path / "runs"])
    assert collection.states()["stale"] == 1
    [gen] = tables(tmp_path / "runs", "Generation")
    assert len(gen) == 1 and "999" not in gen.to_string()
    stale = next(s for s in sections.build(collection, collection.table(), [], {}) if s.title == "Stale runs")
    assert "code changed since the run" in stale.items[1].to_string()


# --- rows that differ in a setting are never pooled ---------------------------------------

def test_runs_differing_only_in_kv_cache_are_not_pooled(tmp_path):
    for cache, speed in (("dynamic", 20.8), ("static", 11.6)):
        write_run(tmp_path / cache, generation_rows("llama-160m", cache, lambda s, v=speed: v, lambda s: 1e9,
                                                    kv_cache=cache), _config("llama-160m", "generation"))
    [gen] = tables(tmp_path, "Generation")
    decode = dict(zip(gen["kv_cache"], gen["decode_throughput (tokens/s) median [min–max]"]))
    assert decode["dynamic"].startswith("20.8 [") and decode["static"].startswith("11.6 [")


def test_generation_runs_with_different_new_tokens_are_separate_curves(tmp_path):
    # Pooled, these made a fake KV-cache slowdown: 44 -> 19.6 tok/s, last/first 0.44.
    write_run(tmp_path / "short", generation_rows("llama-160m", "s", lambda s: 44.0, lambda s: 1e9, steps=[64, 128],
                                                  new_tokens=128), _config("llama-160m", "generation"))
    write_run(tmp_path / "long", generation_rows("llama-160m", "l", lambda s: 19.6, lambda s: 1e9, new_tokens=4096),
              _config("llama-160m", "generation"))
    [gen] = tables(tmp_path, "Generation")
    assert sorted(gen["new_tokens"]) == ["128", "4,096"] and set(gen["last/first"]) == {"1.00"}
    fig = plot_generation_throughput(load([tmp_path]).table())
    labels = [line.get_label() for line in fig.axes[0].get_lines() if not line.get_label().startswith("roofline")]
    assert len(labels) == 2 and any("new_tokens=128" in lbl for lbl in labels)


def test_leaderboard_scores_of_two_harnesses_are_not_averaged(tmp_path):
    rows = [_row("lb", "leaderboard", "tiny_mamba", metric="arithmetic", task="arithmetic", value=v, unit="score",
                 harness=harness) for harness, v in (("lm_eval", 20.0), ("lighteval", 0.0))]
    write_run(tmp_path / "lb", rows, _config("tiny_mamba", "leaderboard"))
    table = load([tmp_path]).table()
    scores = leaderboard_scores(table)
    assert dict(zip(scores["harness"], scores["value"])) == {"lm_eval": 20.0, "lighteval": 0.0}
    [lb] = tables(tmp_path, "Leaderboard")
    assert dict(zip(lb["harness"], lb["arithmetic"])) == {"lm_eval": "20.00", "lighteval": "0.00"}  # as published: 2 decimals


def _max_prompt_rows(run_id, source, measure, **kw) -> list[dict]:
    return [_row(run_id, "max_seq_len", "falcon_mamba_7b", prefill_mode=mode, metric="max_prompt_len", value=v,
                 unit="tokens", verdict="bounded", budget_bytes=23 * 2 ** 30, source=source, measure=measure, **kw)
            for mode, v in (("parallel", 71_680.0), ("sequential", 131_072.0))]


def test_measured_and_simulated_max_prompt_rows_say_their_source(tmp_path):
    write_run(tmp_path / "measured", _max_prompt_rows("m", "measured", "measure"), _config("falcon", "max_seq_len"))
    write_run(tmp_path / "simulated", _max_prompt_rows("s", "simulated", "simulate"), _config("falcon", "max_seq_len"))
    [msl] = tables(tmp_path, "Maximum prompt length")
    assert len(msl) == 4 and not msl.duplicated().any()
    assert sorted(zip(msl["source"], msl["measure"]))[::2] == [("measured", "measure"), ("simulated", "simulate")]


def test_emulated_hardware_labels_the_max_prompt_table_and_plot(tmp_path):
    write_run(tmp_path / "a10", _max_prompt_rows("s", "simulated", "simulate", hardware="h100_80gb",
                                                 budget_hardware="a10_24gb"), _config("falcon", "max_seq_len"))
    table = load([tmp_path]).table()
    md_section = next(s for s in sections.build(load([tmp_path]), table, [], {}) if s.title.startswith("Maximum"))
    captions = [item for item in md_section.items if isinstance(item, str)]
    assert any("emulated hardware (memory budget) a10_24gb" in caption for caption in captions)
    fig = plot_max_prompt_len(table)
    assert "a10_24gb" in fig.axes[0].get_title() and "a10_24gb" in fig._suptitle.get_text()


def test_checkpoint_and_params_name_the_model(tmp_path):
    write_run(tmp_path / "g", generation_rows("falcon_mamba_7b", "g", lambda s: 100.0, lambda s: 1e9,
                                              checkpoint="/data/checkpoints/falcon_mamba_7b/tiny", params=4_200_000),
              _config("falcon_mamba_7b", "generation"))
    name = "falcon_mamba_7b (checkpoint …/tiny, 4.2M params)"
    [gen] = tables(tmp_path, "Generation")
    assert list(gen["model"]) == [name]
    fig = plot_generation_throughput(load([tmp_path]).table())
    assert fig.axes[0].get_lines()[0].get_label() == name


# --- the previous report is never lost ------------------------------------------------------

def _one_run(root):
    write_run(root / "runs" / "g", [_row("g", "leaderboard", "tiny_mamba", metric="arc", task="arc", value=0.4,
                                         unit="score")], _config("tiny_mamba", "leaderboard"))


def test_missing_root_is_an_error_and_keeps_the_previous_report(tmp_path, capsys):
    _one_run(tmp_path)
    out = tmp_path / "report"
    assert main([str(tmp_path / "runs"), "--out", str(out)]) == 0
    before = (out / "report.md").read_text()
    capsys.readouterr()
    for strict in ([], ["--strict"]):
        assert main([str(tmp_path / "runz"), "--out", str(out), *strict]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "runz" in err
    assert (out / "report.md").read_text() == before


def test_a_crash_midway_keeps_the_previous_report(tmp_path, monkeypatch):
    _one_run(tmp_path)
    out = tmp_path / "report"
    write_report([tmp_path / "runs"], out)
    before = (out / "report.md").read_text()

    def crash(*args):
        raise RuntimeError("crash while writing")
    monkeypatch.setattr(render, "html_page", crash)  # after report.md is written
    write_run(tmp_path / "runs" / "h", [_row("h", "leaderboard", "tiny_llama", metric="arc", task="arc", value=0.3,
                                             unit="score")], _config("tiny_llama", "leaderboard"))
    with pytest.raises(RuntimeError):
        write_report([tmp_path / "runs"], out)
    assert (out / "report.md").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "runs"]  # no half-built directory left


def test_default_roots_need_one_to_exist(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([]) == 2 and "results/runs" in capsys.readouterr().err
    (tmp_path / "results" / "multirun").mkdir(parents=True)
    assert main([]) == 0 and capsys.readouterr().err == ""  # results/runs missing: fine, and not said


# --- NaN and inf, a bad parquet, --strict ---------------------------------------------------

@pytest.mark.parametrize("throughput, shown", [
    (lambda s: math.nan, "nan"), (lambda s: math.inf, "inf"), (lambda s: math.inf if s == 64 else 100.0, "inf")],
    ids=["all-nan", "all-inf", "one-inf"])
def test_non_finite_values_are_printed_not_a_crash(tmp_path, throughput, shown):
    write_run(tmp_path / "runs" / "g", generation_rows("mamba-130m", "g", throughput, lambda s: 1e9),
              _config("mamba-130m", "generation"))
    report = write_report([tmp_path / "runs"], tmp_path / "report")
    gen = section((tmp_path / "report" / "report.md").read_text(), "Generation")
    assert f"{shown} →" in gen or f"→ {shown}" in gen
    drawable = any(math.isfinite(throughput(s)) for s in (64, 128))
    assert ("generation_throughput" in report.figures) == drawable
    assert ("not drawn: none of its" in gen) != drawable


def test_parquet_failing_validation_falls_back_to_csv(tmp_path):
    path = write_run(tmp_path / "g", generation_rows("mamba-130m", "g", lambda s: 1.0, lambda s: 1e9),
                     _config("mamba-130m", "generation"))
    pd.DataFrame({"model": ["mamba-130m"], "tokens_per_s": [1.0]}).to_parquet(path / "results.parquet")
    collection = load([tmp_path])
    assert [r.path for r in collection.runs] == [path] and not collection.skipped
    assert any("results.parquet fails validation" in n and "used results.csv" in n for n in collection.runs[0].notes)


@pytest.mark.parametrize("kind", ["failed", "failed_legacy", "invalid", "incomplete", "skipped"])
def test_strict_fails_on_a_job_that_gave_no_valid_result(tmp_path, kind):
    runs = tmp_path / "runs"
    job = runs / "job"
    if kind.startswith("failed"):
        write_run(job, [failure_row("j", "generation", "llama-160m", "boom", legacy=kind == "failed_legacy")],
                  _config("llama-160m", "generation"))
    elif kind == "invalid":
        write_run(job, [_row("j", "generation", "llama-160m", metric="validity", value=math.nan, status="invalid",
                             reason="non-finite logits")], _config("llama-160m", "generation"))
    elif kind == "incomplete":
        write_staging(runs, "job")
    else:
        job.mkdir(parents=True)
        (job / "config.yaml").write_text("model: {}\n")
    args = [str(runs), "--out", str(tmp_path / "report")]
    assert main(args) == 0
    assert main(args + ["--strict"]) == 1


def test_strict_passes_flagged_jobs(tmp_path):
    write_run(tmp_path / "runs" / "lb", [_row("lb", "leaderboard", "tiny_mamba", metric="arc", task="arc", value=0.4,
                                              unit="score", status="flagged", reason="contended")],
              _config("tiny_mamba", "leaderboard"))
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "report"), "--strict"]) == 0


def _rows(**overrides) -> pd.DataFrame:
    row = {c: None for c in COLUMNS}
    row.update(run_id="r", scenario="generation", model="m", arch="ssm", metric="ttft", value=0.1, unit="s",
               source="measured")
    row.update(overrides)
    return pd.DataFrame([row])


@pytest.mark.parametrize("overrides, message", [
    ({"arch": "rnn"}, "column 'arch' has values ['rnn']"),
    ({"source": "guessed"}, "column 'source'"),
    ({"value": "fast"}, "column 'value' has 1 non-numeric"),
    ({"model": None}, "column 'model' is empty"),
    ({"verdict": "maybe"}, "column 'verdict'"),
    ({"status": "done"}, "column 'status'"),
    ({"status": "ok", "source": None}, "column 'source' is empty"),
])
def test_validation_errors(overrides, message):
    _, errors, _ = validate(_rows(**overrides))
    assert any(message in e for e in errors), errors


def test_failed_rows_need_no_source_or_value():
    df, errors, _ = validate(_rows(status="failed", source=None, value=None, metric="error", error="OOM"))
    assert errors == [] and df["reason"].iloc[0] == "OOM"  # the older `error` column is the reason


def test_validation_missing_columns_and_ok_rows():
    _, errors, _ = validate(_rows().drop(columns=["unit", "step"]))
    assert errors == ["missing required columns: step, unit"]
    df, errors, _ = validate(_rows(value="inf"))
    assert errors == [] and math.isinf(df["value"].iloc[0]) and df["status"].iloc[0] == "ok"


def test_roofline():
    # 1 GB of weights (5e8 fp16 params) at 1000 GB/s: 1000 steps/s; batch 4 makes 4000 tokens/s.
    assert roofline_tokens_per_s(5e8, "float16", 1000) == pytest.approx(1000)
    assert roofline_tokens_per_s(5e8, "torch.float16", 1000, batch_size=4) == pytest.approx(4000)
    assert math.isnan(roofline_tokens_per_s(5e8, "float16", float("nan")))


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.skipif(_chromium() is None, reason="no chromium on PATH (Debian: apt-get install -y chromium)")
def test_html_renders_in_headless_chromium(built, tmp_path):
    root, _, _ = built
    shot = tmp_path / "report.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,4000", f"--screenshot={shot}",
           (root / "report" / "report.html").as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=60)
    assert shot.exists(), "chromium wrote no screenshot"
    image = matplotlib.image.imread(shot)
    assert image.shape[:2] == (4000, 1280)
    # Not a blank page: text and pictures make many distinct colors and a spread of brightness.
    assert image[..., :3].std() > 0.05


@pytest.mark.parametrize("where", ["results", "parent", "file", "foreign"])
def test_out_that_is_not_a_report_is_refused_and_left_untouched(tmp_path, where):
    """The report replaces --out whole: it must never be the results, hold them, or be anything
    the report did not write."""
    from bench.report.__main__ import main as report_main

    results = tmp_path / "results"
    run = results / "run"
    run.mkdir(parents=True)
    (run / "results.csv").write_text("keep me")
    out = {"results": results, "parent": tmp_path, "file": tmp_path / "afile",
           "foreign": tmp_path / "mine"}[where]
    if where == "file":
        out.write_text("a file")
    if where == "foreign":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    before = sorted((p, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    assert report_main([str(results), "--out", str(out)]) == 2
    assert sorted((p, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()) == before


def test_a_report_directory_is_replaced_by_the_next_report(tmp_path):
    from bench.report.__main__ import main as report_main

    results = tmp_path / "results"
    results.mkdir()
    out = tmp_path / "report"
    assert report_main([str(results), "--out", str(out)]) == 0
    assert report_main([str(results), "--out", str(out)]) == 0  # its own marker: replaced


def test_a_run_id_that_looks_like_a_number_stays_text_in_the_csv_fallback(tmp_path):
    from bench.report.load import read_csv

    path = tmp_path / "results.csv"
    pd.DataFrame({"run_id": ["3e3891602191"], "value": [1.0]}).to_csv(path, index=False)
    assert read_csv(path)["run_id"].tolist() == ["3e3891602191"]


def test_a_prompt_length_that_is_not_a_number_is_not_called_unbounded():
    from bench.report.plots import format_tokens

    assert format_tokens(math.inf) == "unbounded"
    assert format_tokens(math.nan) == "nan" and format_tokens(-math.inf) == "-inf"
    assert (format_tokens(4096), format_tokens(2_500_000), format_tokens(2.5e9)) == ("4.1k", "2.5M", "2.5B")


def test_a_figure_with_finite_values_but_nothing_to_compare_gets_no_false_note(tmp_path):
    from bench.report.plots import draw_all
    from bench.schema import COLUMNS

    row = dict.fromkeys(COLUMNS)
    row.update(scenario="implementation", model="m", impl="ssm_bench", metric="decode_throughput", value=5.0,
               unit="tokens/s", source="measured", status="ok")
    names, notes = draw_all(pd.DataFrame([row]), tmp_path)  # no transformers baseline: no ratio to draw
    assert "implementation_ratios" not in names and "implementation_ratios" not in notes


def test_max_prompt_runs_that_differ_in_a_search_setting_stay_apart_and_a_capped_one_reads_as_a_bound(tmp_path):
    """Two tiny_llama searches that differ only in logits_to_keep, and one stopped at its probe cap."""
    from bench.report.sections import _max_seq_len

    base = dict(metric="max_prompt_len", unit="tokens", prefill_mode="parallel", source="simulated",
                budget_bytes=2**29, budget_hardware="a10_24gb")
    runs = {"a": dict(value=1020.0, verdict="bounded", logits_to_keep=1),
            "b": dict(value=56300.0, verdict="bounded", logits_to_keep=0),
            "c": dict(value=65536.0, verdict="exceeds_probe_cap", logits_to_keep=1, budget_bytes=2**33)}
    for name, kw in runs.items():
        write_run(tmp_path / name, [_row(name, "max_seq_len", "llama-160m", **{**base, **kw})],
                  {"model": {"name": "llama-160m"}})
    collection = load([tmp_path])
    assert not collection.skipped  # exceeds_probe_cap is a verdict the report reads
    table = next(i for i in _max_seq_len(collection.table()).items if isinstance(i, pd.DataFrame))
    assert len(table) == 3 and "logits_to_keep" in table
    assert sorted(table["max prompt (tokens)"]) == ["1.02k", "56.3k", "≥ 65.5k"]


def test_a_failed_job_counts_as_failed_even_when_stale(tmp_path):
    write_run(tmp_path / "run", [failure_row("r1", "generation", "llama-160m", "OutOfMemoryError: boom")],
              {"model": {"name": "llama-160m"}}, fingerprint=None)
    states = load([tmp_path]).states()
    assert (states["failed"], states["stale"]) == (1, 0)
