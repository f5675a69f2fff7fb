"""Trust in a number: nothing wrong recorded as ok, every failure visible, no run corrupting another.

Each test reproduces one observation of the trust issue: a failure that used to be recorded
as ok, hidden, or lost. Most use the dummy backend (milliseconds); the process tests run the
real `python -m bench` and kill it.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bench import jobdir, runner
from bench.config import job_dirname, register_configs
from bench.contention import measurement_lock
from bench.fingerprint import config_hash
from bench.report.validate import validate
from bench.schema import MEASURED

REPO = Path(__file__).resolve().parent.parent
register_configs()
QUICK = ["scenario.new_tokens=24", "scenario.window=8", "scenario.repeats=1", "scenario.warmup_tokens=2",
         "scenario.progress=false"]


def load(overrides=()):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return OmegaConf.to_object(compose(config_name="config", overrides=list(overrides)))


def dummy(*overrides, isolate=False):
    return load(["model=dummy", *QUICK, f"isolate={str(isolate).lower()}", *overrides])


def bench(results: Path, *overrides, timeout=300, wait=True):
    flags = [o for o in overrides if o.startswith("-")]  # Hydra's flags go before the overrides
    if not any(o.startswith("scenario=") for o in overrides):  # the default experiment sweeps scenarios
        overrides = ("scenario=generation", *overrides)
    cmd = [sys.executable, "-m", "bench", *flags, f"results_dir={results}", *[o for o in overrides if o not in flags]]
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)


def rows(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(Path(run_dir) / runner.RESULTS)


# --- 2. failures are rows the report reads ------------------------------------------------

def test_a_failure_row_is_valid_against_the_schema(tmp_path):
    table = runner.run_job(dummy("hardware.device=cuda") if not torch.cuda.is_available() else
                           dummy("model.vocab_size=0"), tmp_path / "run")
    assert table["status"].tolist() == ["failed"]
    assert table["source"].tolist() == ["measured"] and "cuda" in table["reason"].iloc[0]
    _, errors, _ = validate(rows(tmp_path / "run"))
    assert errors == []


# --- 4, 5. exit codes; one bad value does not stop a sweep ----------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a host without CUDA")
def test_a_failed_job_exits_non_zero_unless_failures_are_allowed(tmp_path):
    out = bench(tmp_path, "hydra.mode=RUN", "model=dummy", "hardware.device=cuda", *QUICK)
    assert out.returncode == 1, out.stdout[-2000:]
    assert "failed" in out.stdout and "cuda" in out.stdout
    allowed = bench(tmp_path, "hydra.mode=RUN", "model=dummy", "hardware.device=cuda", "allow_failures=true", *QUICK)
    assert allowed.returncode == 0, allowed.stdout[-2000:]


def test_a_bad_value_in_a_sweep_is_a_failure_row_and_the_other_jobs_run(tmp_path):
    out = bench(tmp_path, "-m", "model=dummy", "scenario.new_tokens=16,-5,32", *QUICK[1:])
    assert out.returncode == 1
    assert out.stdout.index("1 of 3 jobs are invalid") < out.stdout.index("Launching 3 jobs")  # checked first
    runs = {int(t["new_tokens"].iloc[0]): t for t in (rows(p.parent) for p in tmp_path.glob("multirun/smoke/*/results.parquet"))}
    # MEASURED: flagged too, when the machine is busy (e.g. other test processes)
    assert {n: t["status"].iloc[0] in MEASURED for n, t in runs.items()} == {16: True, -5: False, 32: True}
    assert runs[-5]["status"].iloc[0] == "failed"
    bad = runs[-5]
    assert "scenario.new_tokens: must be >= 1" in bad["reason"].iloc[0]


def test_a_job_that_does_not_compose_stops_the_sweep_before_anything_runs(tmp_path):
    out = bench(tmp_path, "-m", "model=dummy", "scenario.new_tokens=16,many", *QUICK[1:])
    assert out.returncode != 0 and "does not compose" in out.stdout
    assert not list(tmp_path.glob("multirun/smoke/*/results.parquet"))


# --- 6. reruns never lose or mix data --------------------------------------------------------

def test_a_failed_redo_keeps_the_previous_good_results(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    good = runner.run_job(dummy(), run_dir)
    monkeypatch.setattr(runner, "measure", _raise_oom)
    cfg = dummy()
    cfg.skip_existing = False
    redo = runner.run_job(cfg, run_dir)
    assert redo["status"].tolist() == ["failed"]
    kept = rows(run_dir)
    assert len(kept) == len(good) and (kept["run_id"] == good["run_id"].iloc[0]).all()
    meta = json.loads((run_dir / "meta.json").read_text())
    assert "simulated OOM" in meta["last_attempt"]["reason"]
    assert not jobdir.staging_dirs(run_dir)


def _raise_oom(cfg, out_dir=None):
    raise torch.OutOfMemoryError("simulated OOM")


def test_a_write_failing_part_way_leaves_the_old_run_whole(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    good = runner.run_job(dummy(), run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    real, calls = runner.write_atomic, []

    def disk_full(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(runner, "write_atomic", disk_full)
    cfg = dummy("scenario.new_tokens=32")
    with pytest.raises(OSError):
        runner.run_job(cfg, run_dir)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before  # not one file replaced
    assert rows(run_dir)["run_id"].iloc[0] == good["run_id"].iloc[0]
    assert not jobdir.staging_dirs(run_dir) and not list(tmp_path.rglob("*.tmp"))


def test_results_of_another_config_are_stale_and_rerun(tmp_path):
    run_dir = tmp_path / "run"
    runner.run_job(dummy(), run_dir)
    assert runner.run_job(dummy(), run_dir) is None  # same config and code: skipped
    assert config_hash(dummy("scenario.new_tokens=25")) != config_hash(dummy())
    assert config_hash(dummy("scenario.progress=true")) == config_hash(dummy())  # not a measurement setting
    meta = json.loads((run_dir / "meta.json").read_text())
    meta["fingerprint"]["config"] = "from-an-older-default"  # as if a YAML default changed since
    (run_dir / "meta.json").write_text(json.dumps(meta))
    assert runner.previous(run_dir, runner.fingerprint(dummy())) == "stale"
    assert runner.run_job(dummy(), run_dir) is not None  # rerun


# --- 7. one measurement at a time; contention is recorded and flagged ------------------------

def test_a_timing_taken_without_the_lock_is_flagged(tmp_path):
    cfg = dummy("lock=false", f"results_dir={tmp_path}")
    with measurement_lock(tmp_path):  # another sweep is measuring
        table = runner.run_job(cfg, tmp_path / "run")
    assert set(table["status"]) == {"flagged"}
    assert "without the measurement lock" in table["reason"].iloc[0]


def test_a_timing_on_a_busy_machine_is_flagged(tmp_path):
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        time.sleep(0.5)
        table = runner.run_job(dummy("scenario.new_tokens=3000", "scenario.window=500",
                                     f"results_dir={tmp_path}"), tmp_path / "run")
    finally:
        for hog in hogs:
            hog.kill()
    assert set(table["status"]) == {"flagged"}, table[["status", "other_cpu"]].head()
    assert table["other_cpu"].iloc[0] > 0.5 and "contended" in table["reason"].iloc[0]


def _detached_hog(seconds: float) -> None:
    """Another process, not ours (double-forked: init adopts it), busy for `seconds`."""
    subprocess.run(["sh", "-c", f"{sys.executable} -c 'import time; t = time.time() + {seconds}\n"
                                "while time.time() < t: pass' &"], check=True)


def test_a_burst_on_a_quiet_average_is_flagged():
    """Another process busy for under a second of a ten-second job: the average stays well under
    the threshold (room for a CI box's own background), the busiest second does not, and the job
    is flagged for it."""
    from bench.contention import CONTENDED_CORES, LoadMeter, contention_reason

    meter = LoadMeter(sample_s=0.25)
    time.sleep(1.0)
    _detached_hog(0.7)
    time.sleep(9.0)
    load = meter.read()
    assert load["other_cpu"] < CONTENDED_CORES < load["other_cpu_peak"], load
    assert "in its busiest second" in contention_reason(load)


def test_a_half_second_job_on_a_busy_machine_is_flagged():
    """Too short for a sampled second, long enough for the average: it still reads, and flags."""
    from bench.contention import LoadMeter, contention_reason

    for _ in range(os.cpu_count() or 2):
        _detached_hog(2.0)
    time.sleep(0.3)
    meter = LoadMeter()
    time.sleep(0.5)
    load = meter.read()
    assert load["other_cpu"] > 0.5 and "on average" in contention_reason(load), load
    time.sleep(1.5)  # the hogs end before the next test


def test_the_jobs_own_children_are_not_contention():
    """A measuring child (isolate=true runs one) is the job's own CPU, live or waited for."""
    from bench.contention import BURST_CORES, LoadMeter, contention_reason

    meter = LoadMeter(sample_s=0.25)
    child = subprocess.Popen([sys.executable, "-c", "import time; t = time.time() + 1.5\nwhile time.time() < t: pass"])
    child.wait()
    time.sleep(0.5)
    load = meter.read()
    assert load["other_cpu_peak"] < BURST_CORES and contention_reason(load) is None, load


def test_two_sweeps_at_once_measure_each_job_once(tmp_path):
    procs = [bench(tmp_path, "hydra.mode=RUN", "model=dummy", *QUICK, wait=False) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    stderr = "".join(log for log, _ in outs)
    assert "made while this job waited" in stderr or "current results already there" in stderr
    (run,) = [p.parent for p in tmp_path.glob("runs/smoke/*/results.parquet")]
    table = rows(run)  # measured once; flagged if the other sweep's start-up overlapped the timing
    assert table["run_id"].nunique() == 1 and set(table["status"]) <= set(MEASURED)


# --- 8. the host is protected ------------------------------------------------------------------

def test_a_prompt_that_would_exhaust_the_host_is_refused_before_it_runs(tmp_path):
    t0 = time.perf_counter()
    table = runner.run_job(load(["model=tiny_mamba", "model.vocab_size=512", "isolate=false", *QUICK,
                                 "scenario.prompt_len=4000000"]), tmp_path / "run")
    assert table["status"].tolist() == ["failed"]
    assert "host memory guard" in table["reason"].iloc[0] and "GiB" in table["reason"].iloc[0]
    assert time.perf_counter() - t0 < 60


# --- 3. the measuring child never outlives the harness -----------------------------------------

@pytest.fixture
def long_job(tmp_path):
    """A harness measuring for ever, and its measuring child; killed at the end whatever happens."""
    proc, child = _start_long_job(tmp_path)
    yield proc, child
    for p in (proc, child):
        try:
            p.kill()
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass


def _start_long_job(tmp_path):
    proc = bench(tmp_path, "hydra.mode=RUN", "model=dummy", "scenario.new_tokens=10000000", "scenario.window=1000",
                 "scenario.repeats=1", "scenario.progress=false", "memory_guard=false", wait=False)
    deadline = time.time() + 120
    while time.time() < deadline:
        children = psutil.Process(proc.pid).children()
        if children and list(tmp_path.glob("runs/smoke/.*staging*/job.pkl")):
            return proc, children[0]
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the measuring child never started: " + proc.stdout.read()[-2000:])


def _gone(process: psutil.Process, within: float = 10) -> bool:
    try:
        process.wait(timeout=within)
        return True
    except psutil.TimeoutExpired:
        return False


def test_sigterm_marks_the_job_and_kills_the_child(tmp_path, long_job):
    proc, child = long_job
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert _gone(child)
    (run,) = [p.parent for p in tmp_path.glob("runs/smoke/*/results.parquet")]
    assert rows(run)["reason"].iloc[0] == "Interrupted: interrupted: the harness received SIGTERM"


def test_kill_9_of_the_harness_takes_the_child_with_it(tmp_path, long_job):
    proc, child = long_job
    proc.kill()
    proc.wait(timeout=30)
    assert _gone(child), "orphaned measuring process"
    (staging,) = tmp_path.glob("runs/smoke/.*staging*")  # left for the report as incomplete
    assert json.loads((staging / jobdir.JOB_FILE).read_text())["pid"] == proc.pid


def test_kill_9_of_the_child_is_a_failure_not_an_oom(tmp_path, long_job):
    proc, child = long_job
    child.kill()
    assert proc.wait(timeout=60) == 1
    (run,) = [p.parent for p in tmp_path.glob("runs/smoke/*/results.parquet")]
    table = rows(run)
    assert table["status"].tolist() == ["failed"] and not table["oom"].iloc[0]
    assert "killed by signal 9 (SIGKILL)" in table["reason"].iloc[0]


# --- 10. isolation works under the README's parallel launcher -----------------------------------

def test_isolated_jobs_run_under_the_joblib_launcher(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    out = bench(tmp_path, "-m", "hydra/launcher=joblib_local", "model=dummy", "model.arch=ssm,transformer",
                "isolate=true", *QUICK)
    assert out.returncode == 0, out.stdout[-3000:]
    tables = [rows(p.parent) for p in tmp_path.glob("multirun/smoke/*/results.parquet")]
    assert len(tables) == 2 and all(set(t["status"]) <= set(MEASURED) for t in tables)


# --- 12. names and paths -------------------------------------------------------------------------

def test_long_or_path_overrides_give_a_short_flat_directory_name():
    long = ",".join(f"scenario.field{i}=value{i}" for i in range(13))
    name = job_dirname(long)
    assert len(name) <= 100 and name != job_dirname(long + "x")
    assert "/" not in job_dirname("model.path=/abs/path/to/ckpt,model.weights=pretrained")
    assert job_dirname("model=tiny_mamba") == "model=tiny_mamba"


def test_generated_outputs_are_git_ignored():
    for path in ("results/evals/x.json", "results/runs/x", "results/report/x"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0, path


def test_rounds_interleave_the_models_of_a_sweep():
    from bench.precheck import expand

    jobs = expand(["round=0,1", "model=tiny_mamba,tiny_llama"])
    assert [j[1].split("=")[1][5:] + j[0][-1] for j in jobs] == ["mamba0", "llama0", "mamba1", "llama1"]
    assert dummy("round=1").round == 1


def test_killing_a_parallel_sweep_kills_its_workers_and_their_children(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    proc = bench(tmp_path, "-m", "hydra/launcher=joblib_local", "model=dummy", "scenario.new_tokens=20000000,20000001",
                 "scenario.window=1000", "scenario.repeats=1", "scenario.progress=false", "memory_guard=false",
                 wait=False)
    try:
        deadline, measuring = time.time() + 120, []
        while time.time() < deadline and not measuring:  # one measures; the other worker waits for the lock
            family = psutil.Process(proc.pid).children(recursive=True)
            measuring = [p for p in family if "bench.isolation" in " ".join(p.cmdline())]
            time.sleep(0.3)
        assert measuring, proc.stdout.read()[-2000:] if proc.poll() is not None else "no measuring child"
        time.sleep(1)
        family = psutil.Process(proc.pid).children(recursive=True)  # loky workers and their children
    finally:
        proc.kill()
    proc.wait(timeout=30)
    for p in family:
        assert _gone(p, within=15), f"{p.pid} outlived the harness"
    assert not list(tmp_path.glob("multirun/smoke/*/results.parquet"))  # nothing written after the kill


# --- 1. NaN hidden where the short probe does not look -----------------------------------------

@pytest.fixture
def hidden_nan_mamba(tmp_path):
    """A tiny Mamba checkpoint whose embedding rows are NaN except the tokens the probe feeds."""
    from bench.backends.base import PROBE_TOKENS
    from bench.evals.local_tasks import local_tokenizer
    from models.hf import to_hf
    from models.mamba import MambaConfig, MambaLM

    torch.manual_seed(0)
    model = MambaLM(MambaConfig(vocab_size=512, tie_word_embeddings=False))  # else the head shows the NaN rows
    probe = torch.randint(0, 512, (1, PROBE_TOKENS), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        used = set(probe[0].tolist()) | {int(model(probe)[0, -1].argmax())}
        hidden = torch.ones(512, dtype=torch.bool)
        hidden[list(used)] = False
        model.backbone.embeddings.weight[hidden] = float("nan")
    path = tmp_path / "ckpt"
    to_hf(model).save_pretrained(path)
    local_tokenizer().save_pretrained(path)
    return path


@pytest.mark.parametrize("scenario", [
    ["scenario=leaderboard", "scenario.limit=2", "scenario.tasks=[compare]"],
    ["scenario=implementation", "scenario.prompt_len=64", "scenario.memory_prompt_len=64", "scenario.decode_tokens=4",
     "scenario.repeats=1", "scenario.warmup=0"],
])
def test_nan_hidden_from_the_probe_is_still_invalid(hidden_nan_mamba, tmp_path, scenario):
    cfg = load(["model=tiny_mamba", "model.vocab_size=512", "model.weights=pretrained", f"model.path={hidden_nan_mamba}",
                "isolate=false", f"results_dir={tmp_path}", *scenario])
    table = runner.run_job(cfg, tmp_path / "run")
    assert table["status"].tolist() == ["invalid"], table[["metric", "status", "value"]]
    assert "non-finite" in table["reason"].iloc[0], table["reason"].iloc[0]


def test_new_weights_under_the_same_path_are_not_current(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"first weights")
    cfg = load(["model=tiny_mamba", "model.weights=pretrained", f"model.path={ckpt}"])
    before = config_hash(cfg)
    (ckpt / "model.safetensors").write_bytes(b"other weights, other size")
    assert config_hash(cfg) != before


def test_the_report_splits_architectures_and_pools_rounds_with_their_full_spread(tmp_path):
    from bench.report import sections, write_report

    # Same model, same parameter count: only the architecture dict tells the first run apart.
    for name, extra in (("a", ["+model.architecture.scan_chunk_size=64"]),
                        ("b", ["+model.architecture.scan_chunk_size=1"]),
                        ("b1", ["+model.architecture.scan_chunk_size=1", "round=1"])):
        runner.run_job(dummy("scenario.repeats=2", *extra), tmp_path / "runs" / name)
    report = write_report([tmp_path / "runs"], tmp_path / "report")
    table = report.collection.table()
    (gen,) = [s for s in sections.build(report.collection, table, [], {}) if s.title.startswith("Generation")]
    (frame,) = [i for i in gen.items if isinstance(i, pd.DataFrame)]
    one = "hidden_size=16,scan_chunk_size=1"
    assert len(frame) == 2 and frame["architecture"].tolist() == [one, "hidden_size=16,scan_chunk_size=64"]
    pooled = table[(table["architecture"] == one) & (table["metric"] == "decode_throughput")
                   & table["stat"].isna()]["value"]
    spread = frame.loc[frame["architecture"] == one].iloc[0].filter(like="decode_throughput").iloc[0]
    assert len(pooled) == 4 and spread.endswith(f"–{sections.fmt_value(pooled.max(), 'tokens/s')}]")


def test_one_new_token_gives_no_decode_figure_rather_than_nan(tmp_path):
    table = runner.run_job(dummy("scenario.new_tokens=1", "scenario.window=1"), tmp_path / "run")
    assert "decode_throughput" not in set(table["metric"]) and table["value"].notna().all()


def test_the_memory_guard_estimates_pretrained_checkpoints(hidden_nan_mamba, tmp_path):
    from bench.memory.guard import estimate_peak_bytes

    pretrained = load(["model=tiny_mamba", "model.weights=pretrained", f"model.path={hidden_nan_mamba}",
                       "model.match_vocab=false", *QUICK])
    assert estimate_peak_bytes(pretrained, 4096) < estimate_peak_bytes(pretrained, 4_000_000)
    table = runner.run_job(load(["model=tiny_mamba", "model.weights=pretrained", f"model.path={hidden_nan_mamba}",
                                 "isolate=false", *QUICK, "scenario.prompt_len=40000000"]), tmp_path / "run")
    assert "host memory guard" in table["reason"].iloc[0]


def test_a_simulated_max_prompt_search_runs_on_a_pretrained_checkpoint(hidden_nan_mamba, tmp_path):
    table = runner.run_job(load(["model=tiny_mamba", "model.weights=pretrained", f"model.path={hidden_nan_mamba}",
                                 "model.match_vocab=false", "isolate=false", "scenario=max_seq_len",
                                 "scenario.measure=simulate", "scenario.max_len=8192", "hardware=tiny_budget"]),
                           tmp_path / "run")
    assert set(table["status"]) == {"ok"} and set(table["source"]) == {"simulated"}, table["reason"].dropna().head()


def test_a_job_killed_while_it_waits_for_the_lock_is_left_as_incomplete(tmp_path):
    with measurement_lock(tmp_path):  # another sweep is measuring
        proc = bench(tmp_path, "hydra.mode=RUN", "model=dummy", *QUICK, wait=False)
        try:
            deadline = time.time() + 120
            while time.time() < deadline and not list(tmp_path.glob("runs/smoke/.*staging*/job.json")):
                time.sleep(0.2)
        finally:
            proc.kill()
            proc.wait(timeout=30)
    (staging,) = tmp_path.glob("runs/smoke/.*staging*")
    assert json.loads((staging / jobdir.JOB_FILE).read_text())["pid"] == proc.pid
