"""A job directory is replaced as a whole, never file by file.

A job writes everything (tables, config, meta, eval logs) into a hidden staging directory next
to its run directory, `.<name>.staging-<id>/`, whose job.json says who started it. Only a job
that finished swaps it in: one atomic rename(2) (renameat2 RENAME_EXCHANGE where the old
directory exists), so a reader sees the old run or the new one, never a mix. A job that fails
where good results already exist leaves them in place and records the attempt in their
meta.json. A staging directory whose process is gone is an incomplete run: the report lists
it, and the next attempt at the same job clears it.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import time
import uuid
from pathlib import Path

from bench.isolation import alive

JOB_FILE = "job.json"
META = "meta.json"
STAGING = ".staging-"
RENAME_EXCHANGE = 2
AT_FDCWD = -100


def staging_dirs(run_dir: Path) -> list[Path]:
    """Staging directories of this run directory, from any attempt."""
    run_dir = Path(run_dir)
    return sorted(run_dir.parent.glob(f".{run_dir.name}{STAGING}*")) if run_dir.parent.exists() else []


def owner_alive(staging: Path) -> bool:
    """Whether the process that made this staging directory still runs (on this host)."""
    try:
        return job_alive(json.loads((staging / JOB_FILE).read_text()))
    except (OSError, ValueError):
        return False


def job_alive(job: dict) -> bool:
    """The same, from its parsed job.json."""
    if not job:
        return False
    if job.get("host") != socket.gethostname():
        return True  # another node's job: not ours to judge
    try:
        return alive(int(job["pid"]))
    except (KeyError, ValueError, TypeError):
        return False


def start(run_dir: Path, overrides: list[str]) -> Path:
    """A fresh staging directory for run_dir (clearing dead attempts), with job.json in it."""
    run_dir = Path(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    for old in staging_dirs(run_dir):
        if not owner_alive(old):
            shutil.rmtree(old, ignore_errors=True)
    staging = run_dir.parent / f".{run_dir.name}{STAGING}{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    job = {"pid": os.getpid(), "host": socket.gethostname(), "start_time": time.time(),
           "overrides": list(overrides), "run_dir": str(run_dir)}
    (staging / JOB_FILE).write_text(json.dumps(job, indent=2))
    return staging


def commit(staging: Path, run_dir: Path) -> None:
    """Make the staging directory the run directory in one step; the old one is removed after."""
    (staging / JOB_FILE).unlink(missing_ok=True)
    if run_dir.exists() and _exchange(staging, run_dir):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the previous run
        return
    if run_dir.exists():  # no renameat2 (not Linux): two renames, the window is tiny
        old = run_dir.parent / f".{run_dir.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(run_dir, old)
        os.rename(staging, run_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, run_dir)


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def note_failed_attempt(run_dir: Path, reason: str) -> None:
    """A redo failed and the previous good results stay: say so in their meta.json."""
    path = Path(run_dir) / META
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    meta["last_attempt"] = {"status": "failed", "reason": reason, "time": time.time()}
    write_atomic(path, json.dumps(meta, indent=2, default=str).encode())


def _exchange(a: Path, b: Path) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (38, 22, 95):  # ENOSYS, EINVAL, EOPNOTSUPP: the filesystem cannot exchange
        return False
    raise OSError(errno, os.strerror(errno), str(b))


def write_atomic(path: Path, data: bytes):
    """Write to a temporary name beside path, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
