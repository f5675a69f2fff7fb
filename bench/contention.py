"""One measurement at a time on a machine, and a record of how busy the machine was.

- `measurement_lock(root)`: an exclusive flock on `<results root>/.measure.lock`, held while a
  job measures. A second sweep waits for it (saying who holds it); with `lock=false` it runs
  anyway and its rows are flagged.
- `LoadMeter`: the 1-minute load average, and the CPU time that *other* processes used while
  the job ran (all busy CPU time from /proc/stat, less this process's and its children's), in
  cores: on average, and at its peak over any one-second interval (a background thread samples
  it). A job whose neighbours used more than CONTENDED_CORES on average, or more than
  BURST_CORES in some second, is flagged: its timings, or some of its windows, may be a fraction
  of what a quiet machine gives.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import resource
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psutil

from bench.schema import LOAD_COLUMNS

log = logging.getLogger(__name__)

LOCK_FILE = ".measure.lock"
CONTENDED_CORES = 0.25  # other processes' average CPU use (cores) above which timings are flagged
BURST_CORES = 0.5  # ... or their use over one SAMPLE_S interval: a burst that slowed some windows
SAMPLE_S = 1.0
# /proc/stat counts in 10 ms ticks per core: over less than this the average is too coarse to
# read (a 20 ms job can show 0.4 cores of nobody), so it is NaN, unmeasured, not 0. At 0.25 s a
# quiet 2-core VM read at most 0.07 cores in 60 tries, well under CONTENDED_CORES; a 1 s floor
# had left jobs of 0.25-1 s on a busy machine unflagged.
MIN_READ_S = 0.25


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


def _tree_seconds() -> tuple[float, frozenset]:
    """CPU seconds of this process, its waited-for children and its live descendants (with what
    they have waited for), and the live descendants' pids. Read in this order, a child reaped
    in between is missed (an undercount that reads as less contention), never counted twice."""
    total = _own_seconds()
    pids = set()
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:  # gone since it was listed: missed, as above
            continue
        total += t.user + t.system + t.children_user + t.children_system
        pids.add(child.pid)
    return total, frozenset(pids)


class LoadMeter:
    """Start it before a job, read it after the job's processes have been waited for; as a
    context manager (`with LoadMeter() as meter:`) its sampler stops even if the job raises.
    Readings it could not take (a job too short for an average, no whole interval sampled) are
    NaN: unmeasured, never a quiet 0."""

    def __init__(self, sample_s: float = SAMPLE_S):
        self.wall, self.busy, self.own = time.perf_counter(), _busy_seconds(), _own_seconds()
        self.load1 = os.getloadavg()[0]
        self.peak = math.nan  # others' cores over the busiest sampled interval
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, args=(sample_s,), daemon=True)
        self._sampler.start()

    def __enter__(self) -> "LoadMeter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._sampler.join()

    def _sample(self, every: float) -> None:
        last = (time.perf_counter(), _busy_seconds(), *_tree_seconds())
        while not self._stop.wait(every):
            now = (time.perf_counter(), _busy_seconds(), *_tree_seconds())
            if now[3] == last[3]:  # a child started or ended in between: its CPU is not attributable
                cores = ((now[1] - last[1]) - (now[2] - last[2])) / (now[0] - last[0])
                self.peak = cores if math.isnan(self.peak) else max(self.peak, cores)
            last = now

    def read(self) -> dict:
        self.close()
        wall = time.perf_counter() - self.wall
        others = (_busy_seconds() - self.busy) - (_own_seconds() - self.own)
        return dict(zip(LOAD_COLUMNS, (max(self.load1, os.getloadavg()[0]),
                                        max(0.0, others) / wall if wall >= MIN_READ_S else math.nan, self.peak)))


def contention_reason(load: dict) -> str | None:
    """Why a job's timings are flagged, or None. NaN readings (unmeasured) flag nothing."""
    if load.get("other_cpu", 0.0) > CONTENDED_CORES:
        return (f"contended: other processes used {load['other_cpu']:.2f} cores on average while it ran "
                f"(load average {load['load1']:.1f})")
    peak = load.get("other_cpu_peak")
    if peak is not None and peak > BURST_CORES:  # NaN compares False: an old row without the reading
        return (f"contended: other processes used {peak:.2f} cores in its busiest second ({load['other_cpu']:.2f} "
                f"on average; load average {load['load1']:.1f})")
    return None
