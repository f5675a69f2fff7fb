"""Measure in a fresh child process that never outlives its parent.

The child is a plain `python -m bench.isolation JOB_FILE` (not multiprocessing): it works the
same under every launcher (joblib's loky workers cannot spawn a multiprocessing child, their
start method does not exist in it), and its exit status tells how it ended.

- The child gets PR_SET_PDEATHSIG(SIGKILL) before it runs any Python (Linux), and a thread
  that watches its parent's pid (everywhere): if the harness dies, so does the measurement.
- It reads the pickled config from JOB_FILE and writes its rows, or its exception as a
  failure row, to ROWS next to it; it never writes to a pipe, so it can never block on one.
- The parent tells the causes of death apart: an exception (the child's own failure row),
  the kernel's OOM killer (the cgroup's oom_kill counter moved), or another signal.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROWS = "rows.pkl"
PR_SET_PDEATHSIG = 1
_current: subprocess.Popen | None = None  # the running child, for the parent's signal handler


class ChildDied(RuntimeError):
    """The measuring process ended without writing its rows; `oom` when the OOM killer did it."""

    def __init__(self, message: str, oom: bool):
        super().__init__(message)
        self.oom = oom


def measure_isolated(cfg, job_dir: Path, out_dir: Path) -> list[dict]:
    """measure(cfg, out_dir) in a child process; its rows, or ChildDied."""
    global _current
    job_dir = Path(job_dir)
    job_file, rows_file = job_dir / "job.pkl", job_dir / ROWS
    job_file.write_bytes(pickle.dumps((cfg, str(out_dir))))
    rows_file.unlink(missing_ok=True)
    ooms_before = oom_kills()
    _current = subprocess.Popen([sys.executable, "-m", "bench.isolation", str(job_file)],
                                env={**os.environ, "SSM_BENCH_PARENT_PID": str(os.getpid())},
                                preexec_fn=_die_with_parent, start_new_session=True)
    try:
        code = _current.wait()
    finally:  # also on Interrupted: the child never outlives the job
        kill_child()
        _current = None
        job_file.unlink(missing_ok=True)
    if rows_file.exists():
        rows = pickle.loads(rows_file.read_bytes())
        rows_file.unlink()
        return rows
    raise ChildDied(*death_reason(code, ooms_before))


def kill_child() -> None:
    """Kill the running child and its own children (it leads its process group)."""
    child = _current
    if child is not None and child.poll() is None:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.wait()


def death_reason(code: int, ooms_before: int | None) -> tuple[str, bool]:
    if code >= 0:
        return f"the measuring process exited with code {code} without results", False
    name = signal.Signals(-code).name
    ooms_after = oom_kills()
    if ooms_before is not None and ooms_after is not None and ooms_after > ooms_before:
        return f"the measuring process was killed by the kernel's OOM killer ({name})", True
    known = "" if ooms_before is None else ", not by the OOM killer (the cgroup's oom_kill count did not move)"
    return f"the measuring process was killed by signal {-code} ({name}){known}", False


def oom_kills() -> int | None:
    """The OOM-kill count of this process's cgroup (v2 memory.events), or None when unreadable."""
    try:
        cgroup = Path("/proc/self/cgroup").read_text().splitlines()[-1].split(":", 2)[2]
        events = Path("/sys/fs/cgroup", cgroup.lstrip("/"), "memory.events").read_text()
    except (OSError, IndexError):
        return None
    counts = dict(line.split() for line in events.splitlines() if line.strip())
    return int(counts.get("oom_kill", 0))


def alive(pid: int) -> bool:
    """Running: a killed process that its parent has not reaped yet (a zombie) is not."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _die_with_parent() -> None:
    """In the child, before exec: the kernel kills it when the parent dies (Linux only)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _watch_parent(parent: int) -> None:
    """Everywhere (and in case the parent died before prctl): exit once the parent is gone. (A
    launcher's worker, this process's parent, itself exits when the top-level harness does.)"""
    while os.getppid() == parent:
        time.sleep(0.5)
    os.killpg(0, signal.SIGKILL)  # this process and anything it started


def main(job_file: str) -> None:
    parent = int(os.environ["SSM_BENCH_PARENT_PID"])
    if os.getppid() != parent:  # orphaned before we started: nothing to measure for
        sys.exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    from bench.jobdir import write_atomic
    from bench.runner import failure_row, measure

    job_file = Path(job_file)
    cfg, out_dir = pickle.loads(job_file.read_bytes())
    import logging

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s",
                        handlers=[logging.StreamHandler(sys.stdout), logging.FileHandler(Path(out_dir) / "job.log")])
    try:
        rows = measure(cfg, Path(out_dir))
    except Exception as e:  # noqa: BLE001 — the failure is the result
        rows = [failure_row(e)]
    write_atomic(job_file.parent / ROWS, pickle.dumps(rows))


if __name__ == "__main__":
    main(sys.argv[1])
