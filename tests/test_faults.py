"""Fault injection on a real tiny sweep (`make test-faults`): kill the harness or its measuring
child at random moments, fill the disk, corrupt files, run two sweeps at once. After every
fault: no orphan process, no job directory mixing two runs, every job finished, failed with a
reason, or left as an incomplete staging directory, and the report builds. Good results are
never lost. The tally is printed at the end.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from bench import jobdir
from bench.report import write_report
from bench.report.load import read_csv
from bench.schema import MEASURED, STATUSES

pytestmark = pytest.mark.faults
REPO = Path(__file__).resolve().parent.parent
SWEEP = ["scenario=generation", "model=dummy", "model.arch=ssm,transformer", "scenario.new_tokens=300,600", "scenario.window=50",
         "scenario.repeats=1", "scenario.warmup_tokens=2", "scenario.progress=false", "allow_failures=true"]
TRIALS = int(os.environ.get("FAULT_TRIALS", "20"))
STARTED: list[subprocess.Popen] = []  # every sweep, killed at the end whatever a test left running
TALLY = {"trials": 0, "faults survived": 0, "kills while a child measured": 0, "results lost": 0}


def start(root: Path, *extra: str) -> subprocess.Popen:
    """The sweep in the background; its log (Hydra logs to stdout) goes to a file: proc.log()."""
    root.parent.mkdir(parents=True, exist_ok=True)
    log = root.parent / f"sweep-{time.time_ns()}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bench", "-m", f"results_dir={root}", *SWEEP, *extra],
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    proc.log = log.read_text
    STARTED.append(proc)
    return proc


def descendants(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def finished_runs(root: Path) -> dict[Path, str]:
    """Job directory -> run_id, for every job directory with results."""
    return {p.parent: pd.read_parquet(p, columns=["run_id"])["run_id"].iloc[0]
            for p in root.glob("multirun/*/*/results.parquet")}


def check_invariants(root: Path, seen: list[psutil.Process], report_out: Path) -> None:
    for p in seen:  # no orphan: every process the sweep started is gone
        try:
            p.wait(timeout=15)
        except psutil.TimeoutExpired:
            p.kill()
            raise AssertionError(f"orphan process {p.pid} outlived the harness")
        except psutil.NoSuchProcess:
            pass
    for run_dir in (p for p in root.glob("multirun/*/*") if p.is_dir() and not p.name.startswith(".")):
        names = {p.name for p in run_dir.iterdir()}
        assert {"results.parquet", "results.csv", "config.yaml", "meta.json"} <= names, (run_dir, names)
        table = pd.read_parquet(run_dir / "results.parquet")
        meta = json.loads((run_dir / "meta.json").read_text())
        csv = read_csv(run_dir / "results.csv")
        assert set(table["run_id"]) == set(csv["run_id"]) == {meta["run_id"]}, f"{run_dir} mixes two runs"
        assert table["status"].isin(STATUSES).all()
        assert table.loc[table["status"] == "failed", "reason"].notna().all(), f"{run_dir}: failure without reason"
        assert not [n for n in names if n.endswith(".tmp")], f"{run_dir}: temporary files left"
    for staging in root.glob("multirun/*/.*staging*"):  # incomplete: says who started it
        assert (staging / jobdir.JOB_FILE).is_file() or not any(staging.iterdir()), staging
    if (root / "multirun").is_dir():  # killed before the first job started: nothing to report
        write_report([root / "multirun"], report_out)


def _good(root: Path) -> dict[Path, str]:
    """Finished jobs with ok/flagged rows: these must survive every later fault unchanged."""
    good = {}
    for run_dir, run_id in finished_runs(root).items():
        if set(pd.read_parquet(run_dir / "results.parquet")["status"]) <= set(MEASURED):
            good[run_dir] = run_id
    return good


def test_random_kills_of_harness_and_child(tmp_path):
    rng = random.Random(1234)
    root = tmp_path / "results"
    for trial in range(TRIALS):
        before = _good(root) if root.exists() else {}
        # Every trial measures again (a finished sweep would otherwise only skip): a kill then
        # lands while a job replaces good results, which must survive it whole.
        proc = start(root, "skip_existing=false")
        seen: list[psutil.Process] = []
        deadline = time.time() + rng.uniform(4.0, 16.0)
        while time.time() < deadline and proc.poll() is None:
            seen += [p for p in descendants(proc) if p.pid not in {q.pid for q in seen}]
            time.sleep(0.1)
        target = rng.choice(["parent-9", "parent-15", "child-9"])
        injected = proc.poll() is None  # else the sweep finished first: a trial without a fault
        if injected:
            TALLY["kills while a child measured"] += bool(descendants(proc))
            if target == "child-9" and descendants(proc):
                descendants(proc)[0].kill()
            else:
                proc.send_signal(signal.SIGKILL if target == "parent-9" else signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"trial {trial}: the harness did not end after {target}")
        check_invariants(root, seen, tmp_path / "report")
        # A good job stays good: replaced only by a newer good run; a failed or killed redo
        # leaves it as it was.
        TALLY["results lost"] += len(before.keys() - _good(root).keys())
        assert TALLY["results lost"] == 0, f"trial {trial} ({target}) lost or replaced good results"
        TALLY["trials"] += 1
        TALLY["faults survived"] += injected
    final = start(root, "skip_existing=true")  # a clean rerun completes whatever the faults left
    assert final.wait(timeout=600) == 0, final.log()[-2000:]
    assert len(_good(root)) == 4


def test_corrupt_files_are_rerun_and_the_report_builds(tmp_path):
    root = tmp_path / "results"
    assert start(root).wait(timeout=600) == 0
    runs = sorted(finished_runs(root))
    (runs[0] / "results.parquet").write_bytes(b"not a parquet file")
    (runs[1] / "meta.json").write_text("{ half")
    write_report([root / "multirun"], tmp_path / "report")  # reads what it can, names the rest
    assert start(root).wait(timeout=600) == 0
    check_invariants(root, [], tmp_path / "report")
    assert len(_good(root)) == 4
    TALLY["trials"] += 2
    TALLY["faults survived"] += 2


def test_two_sweeps_at_once_never_mix_or_double_measure(tmp_path):
    root = tmp_path / "results"
    procs = [start(root), start(root)]
    codes = [p.wait(timeout=900) for p in procs]
    errs = [p.log() for p in procs]
    assert codes == [0, 0], [e[-1500:] for e in errs]
    check_invariants(root, [], tmp_path / "report")
    assert len(_good(root)) == 4
    assert "".join(errs).count("skipping") >= 4  # the second sweep found each job measured
    TALLY["trials"] += 1
    TALLY["faults survived"] += 1


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="needs root to mount a small tmpfs")
def test_a_full_disk_loses_nothing(tmp_path):
    root = tmp_path / "small"
    root.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(root)]).returncode != 0:
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        proc = start(root)
        proc.wait(timeout=600)
        err = proc.log()
        check_invariants(root, [], tmp_path / "report")
        assert proc.returncode != 0 or len(_good(root)) == 4, err[-2000:]
        assert not list(root.rglob("*.tmp"))
        TALLY["trials"] += 1
        TALLY["faults survived"] += 1
    finally:
        subprocess.run(["umount", "-l", str(root)])


def teardown_module(module):
    for proc in STARTED:
        if proc.poll() is None:
            proc.kill()
    print("\nfault tally: " + ", ".join(f"{k} {v}" for k, v in TALLY.items()))
