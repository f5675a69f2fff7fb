"""Peak memory of one trial, three ways, behind one interface.

- cuda:     the CUDA caching allocator's own counters (max_memory_allocated). A big GPU is capped
            to the budget with set_per_process_memory_fraction, so a real OOM is the verdict.
- cpu:      a TorchDispatchMode that counts the bytes of every live tensor storage the run
            creates (added when an op returns a new storage, removed by a weakref callback when
            the storage dies). The peak of that count is the peak of the run's tensors.
- simulate: the same counting under FakeTensorMode, so tensors have shapes but no data:
            a 7B model "runs" on this CPU and weights cost nothing real. Emulating a GPU
            (kernels="cuda"), every allocation is also replayed through a model of CUDA's
            caching allocator (bench/memory/allocator.py): the budget then caps reserved bytes.

Every tracker does the same things:
    model = tracker.build(make_model)  # simulate: inside FakeTensorMode
    tracker.adopt(model)               # cpu/simulate: count the weights as live bytes
    with tracker.track(limit_bytes=budget) as m:
        ...                            # one trial; an OOM ends the block and sets m.oom
    m.start_bytes, m.peak_bytes        # live bytes at the start, peak above it

For cpu and simulate, crossing `limit_bytes` raises BudgetExceeded at the op that crossed it,
so an over-budget trial stops early (and never allocates much past the budget).
"""

from __future__ import annotations

import gc
import warnings
import weakref
from abc import ABC, abstractmethod
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Callable, ClassVar, Iterator
from unittest.mock import patch

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten



class BudgetExceeded(torch.OutOfMemoryError):
    """Live bytes passed the budget (cpu and simulate trackers): the same verdict as a CUDA OOM."""


@dataclass
class Measurement:
    start_bytes: int = 0  # live bytes when the trial began: weights, buffers, anything left over
    peak_bytes: int = 0  # peak live bytes above start_bytes during the trial
    oom: bool = False  # a real CUDA OOM, or the budget crossed (cpu/simulate)
    error: str = ""
    # The caching allocator's peak reserved bytes (max_memory_reserved, or the allocator model's):
    # what a capped GPU's OOM depends on. None where there is no caching allocator (cpu).
    peak_reserved: int | None = None

    @property
    def total_bytes(self) -> int:
        return self.start_bytes + self.peak_bytes


class MemoryTracker(ABC):
    NAME: ClassVar[str]
    SOURCE: ClassVar[str]  # the `source` column: "measured" or "simulated"

    def build(self, make: Callable[[], object]) -> object:
        """Run the function that builds a model (or anything whose tensors a trial will use)."""
        return make()

    def adopt(self, module: torch.nn.Module) -> None:
        """Count a module's parameters and buffers as live (trackers that see only new tensors)."""

    def clean(self) -> None:
        """Start a trial from a clean state: drop garbage left by the previous one."""
        gc.collect()

    @abstractmethod
    def live_bytes(self) -> int:
        """Bytes of tensors alive now, as this tracker counts them."""

    @abstractmethod
    @contextmanager
    def track(self, limit_bytes: int | None = None) -> Iterator[Measurement]:
        """Measure the block. An OOM inside it is caught and recorded (m.oom); the caller must
        check m.oom before using anything the block assigned."""


class CudaTracker(MemoryTracker):
    NAME, SOURCE = "cuda", "measured"

    def __init__(self, device: str | torch.device = "cuda", cap_bytes: int | None = None):
        """cap_bytes: make the allocator refuse to hold more than this (the hardware budget on a
        bigger GPU). The cap is on reserved memory, so fragmentation counts too, as it would."""
        if not torch.cuda.is_available():
            raise RuntimeError("the cuda memory tracker needs a CUDA device; use measure='cpu' or 'simulate'")
        self.device = torch.device(device)
        if cap_bytes is not None:
            total = torch.cuda.get_device_properties(self.device).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, cap_bytes / total), self.device)

    def clean(self) -> None:
        gc.collect()
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)

    def live_bytes(self) -> int:
        return torch.cuda.memory_allocated(self.device)

    def segment_addresses(self, n: int = 3, nbytes: int = 16 * 2**20) -> str | None:
        """Where cudaMalloc puts each new segment on this device: "rising" (above the previous one),
        "falling" or "mixed"; None when the capped device has no room left to look. The allocator
        model (bench/memory/allocator.py) takes it as an input, since it breaks best-fit ties; a
        measured run records it so that its simulation can match. n tensors of nbytes (over
        10 MiB: one fresh segment each, the cache emptied first)."""
        self.clean()
        tensors = []  # all alive at once: a freed one's block would be handed out again
        try:
            for _ in range(n):
                tensors.append(torch.empty(nbytes, dtype=torch.uint8, device=self.device))
            pointers = [t.data_ptr() for t in tensors]
        except torch.OutOfMemoryError:  # weights at the cap: the search's rows matter more than this
            return None
        finally:
            tensors.clear()
            self.clean()  # with the tensors gone, their segments go back too
        steps = {b > a for a, b in zip(pointers, pointers[1:])}
        return "mixed" if len(steps) > 1 else "rising" if steps.pop() else "falling"

    @contextmanager
    def track(self, limit_bytes: int | None = None) -> Iterator[Measurement]:
        self.clean()
        m = Measurement(start_bytes=self.live_bytes())
        try:
            yield m
            torch.cuda.synchronize(self.device)
        except torch.OutOfMemoryError as e:
            m.oom, m.error = True, str(e).splitlines()[0]
        m.peak_bytes = torch.cuda.max_memory_allocated(self.device) - m.start_bytes
        m.peak_reserved = torch.cuda.max_memory_reserved(self.device)
        if limit_bytes is not None and m.total_bytes > limit_bytes:
            m.oom = True  # under the allocator cap, but allocated bytes alone passed the budget


class _LiveBytes(TorchDispatchMode):
    """Counts the bytes of live tensor storages, and their peak.

    A storage is counted once, however many views share it, when an op first returns it; a
    weakref callback uncounts it when it is freed (whether or not the mode is active then).
    Only storages produced by ops while the mode is active (or adopted) are seen, so the count
    is the bytes a trial created, on top of what was adopted.
    """

    def __init__(self, skip_inplace: bool = False, allocator=None):
        super().__init__()
        self.skip_inplace = skip_inplace
        self.allocator = allocator  # bench.memory.allocator.CachingAllocatorModel: replays each alloc/free
        self.live = 0
        self.peak = 0
        self.limit: int | None = None
        self._refs: dict[int, tuple[weakref.ref, int]] = {}  # id(storage) -> (ref, nbytes)
        self._inplace_cache: dict = {}

    def add(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        key, nbytes = id(st), st.nbytes()
        entry = self._refs.get(key)
        if entry is not None and entry[0]() is st:
            if entry[1] != nbytes:  # resized in place (resize_, out= ops)
                self.live += nbytes - entry[1]
                self._refs[key] = (entry[0], nbytes)
                if self.allocator is not None:
                    self.allocator.free(key)
                    self._malloc(key, nbytes)
            return
        self._refs[key] = (weakref.ref(st, self._freed(key)), nbytes)
        self.live += nbytes
        if self.allocator is not None:
            self._malloc(key, nbytes)

    def _malloc(self, key: int, nbytes: int) -> None:
        from bench.memory.allocator import AllocatorOOM

        try:
            self.allocator.malloc(key, nbytes)
        except AllocatorOOM as e:
            raise BudgetExceeded(f"modelled CUDA caching allocator: {e}") from None

    def _freed(self, key: int):
        def callback(_ref):
            entry = self._refs.pop(key, None)
            if entry is not None:
                self.live -= entry[1]
                if self.allocator is not None:
                    self.allocator.free(key)
        return callback

    def _is_inplace_pointwise(self, func) -> bool:
        # In-place pointwise ops (addcmul_, mul_, copy_, ...) write into `self` and allocate
        # nothing. Under FakeTensorMode there is no data, so they can return `self` at once:
        # a scan's per-token loop of addcmul_ then costs microseconds instead of a fake-kernel
        # dispatch each (~1 ms), and the byte count is unchanged.
        cached = self._inplace_cache.get(func)
        if cached is None:
            name = func.overloadpacket.__name__
            cached = (name.endswith("_") and not name.startswith("_") and name != "resize_"
                      and (torch.Tag.pointwise in func.tags or name in ("copy_", "fill_", "zero_")))
            self._inplace_cache[func] = cached
        return cached

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.skip_inplace and self._is_inplace_pointwise(func):
            return args[0]
        if self.allocator is not None and func.overloadpacket in _CUBLAS_OPS:
            self._take_workspace()
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.add(t)
        if self.live > self.peak:
            self.peak = self.live
            if self.limit is not None and self.live > self.limit:
                raise BudgetExceeded(f"live tensor bytes {self.live} passed the budget {self.limit}")
        return out

    def _take_workspace(self) -> None:
        from bench.memory.allocator import AllocatorOOM

        try:
            self.allocator.take_workspace()
        except AllocatorOOM as e:
            raise BudgetExceeded(f"modelled CUDA caching allocator: {e}") from None


# The first of these (linear and matmul decompose into them) takes cuBLAS's workspace.
_CUBLAS_OPS = {torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm, torch.ops.aten.baddbmm}


class CpuTracker(MemoryTracker):
    NAME, SOURCE = "cpu", "measured"

    def __init__(self):
        self._mode = _LiveBytes()

    def adopt(self, module: torch.nn.Module) -> None:
        for t in [*module.parameters(), *module.buffers()]:
            self._mode.add(t)

    def live_bytes(self) -> int:
        return self._mode.live

    @contextmanager
    def _modes(self):
        with self._mode:
            yield

    @contextmanager
    def track(self, limit_bytes: int | None = None) -> Iterator[Measurement]:
        self.clean()
        m = Measurement(start_bytes=self.live_bytes())
        self._mode.peak, self._mode.limit = self._mode.live, limit_bytes
        try:
            with self._modes():
                yield m
        except (torch.OutOfMemoryError, MemoryError) as e:  # BudgetExceeded, or the machine itself
            m.oom, m.error = True, str(e).splitlines()[0]
        except RuntimeError as e:
            if not is_allocation_failure(e):
                raise
            m.oom, m.error = True, str(e).splitlines()[0]  # the host refused first: a verdict, not a crash
        finally:
            self._mode.limit = None
        m.peak_bytes = self._mode.peak - m.start_bytes
        if limit_bytes is not None and m.total_bytes > limit_bytes:
            m.oom = True


class SimulateTracker(CpuTracker):
    """The cpu tracker's count, on fake tensors. Build the model with `build` (inside the same
    FakeTensorMode) and run every trial inside `track`: tensors made there are fake too."""

    NAME, SOURCE = "simulate", "simulated"

    def __init__(self, kernels: str = "cpu", twins: list | None = None, allocator: bool | None = None,
                 segment_addresses: str = "rising"):
        """kernels: whose allocations the scans follow, "cpu" or "cuda" (the emulated hardware's).
        twins: (module, attribute, replacement) swapped in during trials; default
        bench.memory.fake_kernels.TWINS[kernels] (allocation twins of the kernels and loops).
        allocator: replay every allocation through a model of the CUDA caching allocator
        (bench/memory/allocator.py), so a trial is an OOM when its *reserved* bytes would pass the
        budget, as on a capped GPU, and the peak is the allocator's (block-rounded) allocated peak.
        Default: on for kernels="cuda". segment_addresses: the allocator model's (rising, falling)."""
        from torch._subclasses.fake_tensor import FakeTensorMode

        from bench.memory.allocator import CUBLAS_WORKSPACE, CachingAllocatorModel
        from bench.memory.fake_kernels import TWINS

        self.fake_mode = FakeTensorMode()
        use_allocator = kernels == "cuda" if allocator is None else allocator
        self.allocator = (CachingAllocatorModel(workspace_bytes=CUBLAS_WORKSPACE, segment_addresses=segment_addresses)
                          if use_allocator else None)
        self._mode = _LiveBytes(skip_inplace=True, allocator=self.allocator)
        self.twins = TWINS[kernels] if twins is None else twins

    def clean(self) -> None:
        super().clean()
        if self.allocator is not None:  # as the cuda tracker: empty_cache() between trials
            self.allocator.empty_cache()

    def live_bytes(self) -> int:
        return self._mode.live if self.allocator is None else self.allocator.allocated

    @contextmanager
    def track(self, limit_bytes: int | None = None) -> Iterator[Measurement]:
        if self.allocator is None:
            with super().track(limit_bytes) as m:
                yield m
            return
        # The budget caps the allocator's reserved bytes (set_per_process_memory_fraction); the
        # peak is its allocated peak (max_memory_allocated), as the cuda tracker reads them.
        self.clean()
        self.allocator.cap, start = limit_bytes, self.allocator.allocated
        self.allocator.reset_peak()
        try:
            with super().track(None) as m:
                yield m
        finally:
            self.allocator.cap = None
        m.start_bytes, m.peak_bytes = start, self.allocator.peak_allocated - start
        m.peak_reserved = self.allocator.peak_reserved
        if limit_bytes is not None and m.total_bytes > limit_bytes:
            m.oom = True

    def build(self, make: Callable[[], object]) -> object:
        with self.fake_mode, torch.device("cpu"), _quiet():
            return make()

    @contextmanager
    def _modes(self):
        # Fake mode below, counting mode on top: the counter sees each op first and the fake
        # kernels (shapes only) run beneath it.
        with ExitStack() as stack:
            for module, name, twin in self.twins:
                stack.enter_context(patch.object(module, name, twin))
            with self.fake_mode, _quiet(), self._mode:
                yield


@contextmanager
def _quiet():
    # The in-repo Mamba keys a small cache on A_log.data_ptr(); on fake tensors torch warns.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Accessing the data pointer of FakeTensor")
        yield


def make_tracker(measure: str, device: str | torch.device = "cuda", cap_bytes: int | None = None,
                 kernels: str = "cpu", segment_addresses: str = "rising") -> MemoryTracker:
    """measure: one of bench.config.MEMORY_MEASURES. segment_addresses: a GPU simulation's
    allocator model's (bench/memory/allocator.py)."""
    if measure == "cuda":
        return CudaTracker(device, cap_bytes)
    if measure == "cpu":
        return CpuTracker()
    if measure == "simulate":
        return SimulateTracker(kernels, segment_addresses=segment_addresses)
    raise ValueError(f"measure: {measure!r} is not one of cuda, cpu, simulate")


def is_allocation_failure(e: BaseException) -> bool:
    """The CPU allocator's refusal (torch raises it as a plain RuntimeError)."""
    return "can't allocate memory" in str(e) or "not enough memory" in str(e)


def is_fake(t: torch.Tensor) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return isinstance(t, FakeTensor)


def tensors_in(obj, max_depth: int = 8) -> list[torch.Tensor]:
    """The distinct tensors reachable from obj through lists, dicts and attributes: the way into a
    cache object, whose class differs by model and transformers version."""
    found: dict[int, torch.Tensor] = {}

    def visit(o, depth=0):
        if isinstance(o, torch.Tensor):
            found[id(o)] = o
        elif depth > max_depth or isinstance(o, (str, bytes, int, float, type, torch.nn.Module)) or o is None:
            return
        elif isinstance(o, (list, tuple, set)):
            for v in o:
                visit(v, depth + 1)
        elif isinstance(o, dict):
            for v in o.values():
                visit(v, depth + 1)
        elif hasattr(o, "__dict__"):
            for v in vars(o).values():
                visit(v, depth + 1)

    visit(obj)
    return list(found.values())


def storage_nbytes(obj) -> int:
    """Bytes of the distinct tensor storages reachable from obj (a cache object, list, dict, ...).
    Real storages are told apart by address (two views of one storage count once); fake and meta
    ones, which have none, by identity (the storage objects are kept alive so no id is reused)."""
    seen: dict[object, tuple] = {}
    for t in tensors_in(obj):
        st = t.untyped_storage()
        real = not is_fake(t) and t.device.type != "meta"
        seen[("ptr", st.data_ptr(), t.device) if real else ("id", id(st))] = (st, st.nbytes())
    return sum(nbytes for _, nbytes in seen.values())
