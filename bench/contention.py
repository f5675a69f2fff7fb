"""One measurement at a time on a machine, and a record of how busy the machine was.

- `measurement_lock(root)`: an exclusive flock on `<results root>/.measure.lock`, held while a
  job measures. A second sweep waits for it (saying who holds it); with `lock=false` it runs
  anyway and its rows are flagged.
- `LoadMeter`: the 1-minute load average, and the CPU time that *other* processes used while
  the job ran (all busy CPU time from /proc/stat, less this process's and its children's), in
  cores. A job whose neighbours used more than CONTENDED_CORES is flagged: its timings may be
  a fraction of what a quiet machine gives.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import resource
import socket
import time
from contextlib import contextmanager
from pathlib import Path

import psutil

from bench.schema import LOAD_COLUMNS

log = logging.getLogger(__name__)

LOCK_FILE = ".measure.lock"
CONTENDED_CORES = 0.25  # other processes' average CPU use (cores) above which timings are flagged


@contextmanager
def measurement_lock(root: Path, wait: bool = True):
    """Hold the results root's measurement lock for the block. Yields True when held, False when
    `wait` is off and another process holds it (the caller flags its rows)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            if not wait:
                log.warning("measuring without the lock (lock=false): %s holds it", holder)
                yield False
                return
            log.warning("waiting for the measurement lock %s, held by %s", root / LOCK_FILE, holder)
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
        f.flush()
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _busy_seconds() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


def _own_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class LoadMeter:
    """Start it before a job, read it after the job's processes have been waited for."""

    def __init__(self):
        self.wall, self.busy, self.own = time.perf_counter(), _busy_seconds(), _own_seconds()
        self.load1 = os.getloadavg()[0]

    def read(self) -> dict:
        wall = time.perf_counter() - self.wall
        others = (_busy_seconds() - self.busy) - (_own_seconds() - self.own)
        return dict(zip(LOAD_COLUMNS, (max(self.load1, os.getloadavg()[0]),
                                        max(0.0, others) / wall if wall > 0 else float("nan"))))


def contention_reason(load: dict) -> str | None:
    if load.get("other_cpu", 0.0) > CONTENDED_CORES:
        return (f"contended: other processes used {load['other_cpu']:.2f} cores on average while it ran "
                f"(load average {load['load1']:.1f})")
    return None
