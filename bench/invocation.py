"""One invocation of `python -m bench`: how its jobs ended, and how long its workers may live.

Jobs may run in other processes (joblib's workers, submitit's local or Slurm jobs). The
top-level process names the invocation in the environment, which every launcher passes on:
- each job writes how it ended into `<results_dir>/.invocations/<id>/` (a shared filesystem on
  a cluster, unlike /tmp), and the top-level process reads them for its exit status and a
  closing summary;
- a job running in a worker on the same host watches the top-level process and, when it is
  gone, kills its measuring child and exits: killing the harness kills the whole sweep.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

from bench.isolation import alive

ENV = "SSM_BENCH_INVOCATION"  # "<id>:<pid>:<host>" of the top-level process
BAD = ("failed", "invalid")  # statuses that make the invocation exit 1
_roots: set[Path] = set()  # results_dir of every job, as the top-level process knows them
_watching = False


def begin() -> None:
    """In the top-level process: name the invocation (a worker inherits the name)."""
    if ENV not in os.environ:
        os.environ[ENV] = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}:{os.getpid()}:{socket.gethostname()}"


def _parts() -> tuple[str, int, str] | None:
    value = os.environ.get(ENV)
    if not value:
        return None
    name, pid, host = value.split(":", 2)
    return name, int(pid), host


def top_here() -> int | None:
    """The top-level process's pid when it runs on this host (None elsewhere, e.g. on Slurm)."""
    parts = _parts()
    return parts[1] if parts is not None and parts[2] == socket.gethostname() else None


def is_top() -> bool:
    parts = _parts()
    return parts is not None and parts[1] == os.getpid() and parts[2] == socket.gethostname()


def expect(results_dir) -> None:
    """The top-level process will read this results root's outcomes."""
    _roots.add(Path(results_dir))


def _dir(results_dir) -> Path | None:
    parts = _parts()
    return Path(results_dir) / ".invocations" / parts[0] if parts else None


def record(results_dir, run_dir, status: str, reason: str | None, allowed: bool) -> None:
    where = _dir(results_dir)
    if where is None:
        return
    if is_top():
        expect(results_dir)
    where.mkdir(parents=True, exist_ok=True)
    entry = {"run_dir": str(run_dir), "status": status, "reason": reason, "allowed": bool(allowed)}
    (where / f"{uuid.uuid4().hex}.json").write_text(json.dumps(entry))


def finish() -> int:
    """Print what went wrong and return the exit status (the top-level process only)."""
    if not is_top():
        return 0
    entries = []
    for root in _roots:
        where = _dir(root)
        for path in sorted(where.glob("*.json")) if where and where.is_dir() else []:
            try:
                entries.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                pass
        if where:
            shutil.rmtree(where, ignore_errors=True)
            try:
                where.parent.rmdir()  # .invocations/, when no other invocation runs
            except OSError:
                pass
    bad = [e for e in entries if e["status"] in BAD]
    if bad:
        print(f"ssm-bench: {len(bad)} of {len(entries)} jobs did not give a valid result:", file=sys.stderr)
        for e in bad:
            print(f"  {e['status']}: {e['run_dir']}: {e['reason']}", file=sys.stderr)
    flagged = sum(e["status"] == "flagged" for e in entries)
    if flagged:
        print(f"ssm-bench: {flagged} of {len(entries)} jobs flagged (see the report's flagged rows)", file=sys.stderr)
    return 1 if any(not e["allowed"] for e in bad) else 0


def watch_top() -> None:
    """In a worker on the top-level process's host: exit once the top-level process is gone. Started once per process; a no-op in the top-level process."""
    global _watching
    top = top_here()
    if _watching or top is None or is_top():
        return
    _watching = True
    threading.Thread(target=_watch, args=(top,), daemon=True).start()


def _watch(top: int) -> None:
    while alive(top):
        time.sleep(0.5)
    # Exit at once, as a killed harness would: nothing more is written, the job's staging
    # directory stays for the report (incomplete), and the measuring child, whose parent this
    # is, dies by its PR_SET_PDEATHSIG.
    os._exit(1)
