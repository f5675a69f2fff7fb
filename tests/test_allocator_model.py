"""The model of PyTorch's CUDA caching allocator (bench/memory/allocator.py): its rounding and
segment sizes, best fit and splitting, fragmentation under a cap, and the simulate tracker that
replays a trace through it."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.memory.allocator import (MB, SEGMENT_ADDRESSES, AllocatorOOM, CachingAllocatorModel, round_size,
                                    segment_size)
from bench.memory.trackers import SimulateTracker


def test_rounding_and_segment_sizes_follow_the_allocator_constants():
    assert round_size(1) == 512 and round_size(512) == 512 and round_size(513) == 1024
    assert segment_size(round_size(100)) == 2 * MB  # small pool: 2 MiB segments
    assert segment_size(5 * MB) == 20 * MB  # 1-10 MiB: a 20 MiB segment, shared by later requests
    assert segment_size(11 * MB + 1) == 12 * MB  # >= 10 MiB: rounded up to 2 MiB


def test_small_requests_share_a_segment_and_count_their_rounded_size():
    a = CachingAllocatorModel()
    for key in range(4):
        a.malloc(key, 1000)  # 1024 B each, carved from one 2 MiB segment
    assert a.allocated == 4 * 1024 and a.reserved == 2 * MB
    a.malloc("big", 3 * MB)  # a large request never comes from the small pool
    assert a.reserved == 22 * MB and a.allocated == 4 * 1024 + 3 * MB


def test_an_unsplit_remainder_stays_allocated():
    a = CachingAllocatorModel()
    a.malloc("x", 11 * MB)
    a.free("x")
    a.malloc("y", 11 * MB + 512)  # remainder < 1 MiB: the large pool does not split it off
    assert a.allocated == 12 * MB and a.reserved == 12 * MB


def test_fragmentation_makes_a_capped_allocator_fail_with_enough_free_bytes():
    a = CachingAllocatorModel(cap=250 * MB)
    a.malloc("x", 200 * MB)
    a.free("x")  # cached: one free 200 MiB segment
    a.malloc("p", 60 * MB)
    a.malloc("q", 60 * MB)  # p | q | 80 free
    a.free("p")  # 60 free | q | 80 free: 140 MiB free, but no 100 MiB block
    assert a.allocated == 60 * MB and a.reserved == 200 * MB
    with pytest.raises(AllocatorOOM):
        a.malloc("r", 100 * MB)  # a new 100 MiB segment would pass the cap; nothing wholly free to drop
    a.free("q")  # everything merges back into one free segment ...
    a.malloc("r", 100 * MB)  # ... which best fit now splits
    assert a.reserved == 200 * MB and a.allocated == 100 * MB


def test_a_reservation_over_the_cap_first_releases_wholly_free_segments():
    a = CachingAllocatorModel(cap=300 * MB)
    a.malloc("x", 100 * MB)
    a.malloc("y", 100 * MB)
    a.free("x")
    a.malloc("z", 180 * MB)  # 100 + 100 + 180 > 300: x's free segment is released, then it fits
    assert a.reserved == 280 * MB and a.allocated == 280 * MB
    a.empty_cache()
    assert a.reserved == 280 * MB  # nothing wholly free left


def test_the_workspace_is_taken_once():
    a = CachingAllocatorModel(workspace_bytes=8 * MB)
    a.take_workspace()
    a.take_workspace()
    assert a.allocated == 8 * MB


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 40 * MB)), min_size=1, max_size=60),
       st.sampled_from(SEGMENT_ADDRESSES))
def test_invariants_hold_over_any_trace(ops, order):
    """Blocks tile their segments, segments never overlap, no two free neighbours are left
    unmerged, the counters are the sums of what the blocks say, and a request takes the smallest
    free block that fits (the lowest address among equals), for either segment address order."""
    a = CachingAllocatorModel(segment_addresses=order)
    live = []
    for i, (alloc, nbytes) in enumerate(ops):
        if alloc or not live:
            small = round_size(nbytes) <= MB
            fitting = [b for _, _, b in a._free[small] if b.size >= round_size(nbytes)]
            best = min(fitting, key=lambda b: (b.size, b.address)) if fitting else None
            a.malloc(i, nbytes)
            if best is not None:  # best fit, as c10's lower_bound over (size, address) finds it
                assert a._blocks[i].address == best.address
            live.append(i)
        else:
            a.free(live.pop(nbytes % len(live)))
        segments = {id(b.segment): b.segment for b in a._blocks.values()}
        segments.update({id(b.segment): b.segment for pool in a._free.values() for _, _, b in pool})
        allocated = 0
        for seg in segments.values():
            block, address = seg.head, seg.address
            while block is not None:
                assert block.address == address and block.segment is seg
                if block.next is not None:
                    assert not (not block.allocated and not block.next.allocated), "free neighbours unmerged"
                allocated += block.size if block.allocated else 0
                address += block.size
                block = block.next
            assert address == seg.address + seg.size
        spans = sorted((seg.address, seg.address + seg.size) for seg in segments.values())
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:])), "segments overlap"
        assert allocated == a.allocated <= a.reserved == sum(s.size for s in segments.values())


def test_the_cuda_simulation_replays_through_the_allocator():
    """kernels=cuda: a trial's peak is the allocator's (block-rounded) allocated peak, and the
    budget caps its reserved bytes."""
    sim = SimulateTracker(kernels="cuda")
    assert sim.allocator is not None and SimulateTracker(kernels="cpu").allocator is None
    with sim.track(limit_bytes=2**30) as m:
        kept = [torch.empty(MB + 1, dtype=torch.uint8) for _ in range(50)]
    # 1 MiB + 512 B blocks from 20 MiB segments: the 19th of each takes the rest of its segment
    # (under 1 MiB is not split off), so two full segments add 20 MiB - 19 blocks each
    rest = 20 * MB - 19 * (MB + 512)
    assert not m.oom and m.peak_bytes == 50 * (MB + 512) + 2 * rest and sim.allocator.reserved == 60 * MB
    assert m.peak_reserved == 60 * MB  # three 20 MiB segments, as max_memory_reserved would say
    del kept
    with sim.track(limit_bytes=100 * MB) as m:
        # live bytes stay under 100 MiB, but each 60 MiB request wants a new segment after the
        # 30 MiB block it cannot use: 30 + 60 + 60 > 100 reserved
        a = torch.empty(30 * MB, dtype=torch.uint8)
        b = torch.empty(60 * MB, dtype=torch.uint8)
        del a
        c = torch.empty(60 * MB, dtype=torch.uint8)  # noqa: F841
    assert m.oom and "allocator" in m.error
    assert m.peak_reserved == 90 * MB  # the 30 and the first 60 MiB segments; the second never came
    with SimulateTracker(kernels="cpu").track() as m:  # no caching allocator: nothing reserved to report
        torch.empty(MB)
    assert m.peak_reserved is None


def test_max_seq_len_rows_carry_reserved_bytes_per_trial_and_at_the_limit():
    """A simulated GPU search records the allocator's reserved peak beside the allocated one (the
    OOM depends on it): per trial, and at the limit for the trial the limit is (bounded: the longest
    fit; unbounded: the last probe). A CPU search has no reserved bytes to record."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from bench.backends import get_backend_class
    from bench.config import CONFIG_DIR, register_configs
    from bench.device import DTYPES
    from bench import runner
    from bench.scenarios import max_seq_len

    register_configs()
    for kernels in ("cuda", "cpu"):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = OmegaConf.to_object(compose("config", overrides=[
                "model=tiny_mamba", "model.vocab_size=4096", "model.tokenizer=null", "dtype=float32",
                "scenario=max_seq_len", "hardware@scenario.emulate=tiny_budget", "scenario.start_len=128",
                "scenario.resolution=512", "scenario.chunk_size=256"]))
        cfg.scenario.emulate.kernels = kernels  # simulate a GPU's allocations, or a CPU's
        cfg.scenario.emulate.memory_gib = 0.1  # a GPU's 2 and 20 MiB segments would not fit 12.8 MiB
        backend = get_backend_class(cfg.model.impl)(cfg.model, torch.device("cpu"), DTYPES["float32"])
        rows = max_seq_len.run(cfg, backend)
        for mode, verdict in (("parallel", "bounded"), ("sequential", "unbounded")):
            mine = [r for r in rows if r["prefill_mode"] == mode]
            trials = [r for r in mine if r["metric"] == "trial_peak_bytes"]
            at_limit = {r["metric"]: r["value"] for r in mine if r["metric"].endswith("_at_limit")}
            assert {r["verdict"] for r in mine} == {verdict} and trials
            if kernels == "cpu":
                assert all(r["peak_reserved"] != r["peak_reserved"] for r in trials)  # nan
                assert "peak_reserved_at_limit" not in at_limit
                # no allocator model: no such setting, in the table the runner writes too
                assert {r["segment_addresses"] for r in rows} == {None}
                table = runner.to_table(rows, cfg, "run")
                assert table["segment_addresses"].isna().all()
                continue
            assert {r.get("segment_addresses") for r in rows} == {"rising"}  # the model's input, on every row
            # reserved bytes are whole segments (2 MiB multiples), above the allocated peak somewhere
            assert all(r["peak_reserved"] % (2 * MB) == 0 for r in trials)
            assert any(r["peak_reserved"] > r["value"] for r in trials if not r["oom"])
            # the limit's reserved peak is that of the trial whose allocated peak the limit reports
            limit_trial = [r for r in trials if r["value"] == at_limit["peak_bytes_at_limit"] and not r["oom"]][-1]
            assert at_limit["peak_reserved_at_limit"] == limit_trial["peak_reserved"]
            if verdict == "bounded":
                assert any(r["oom"] for r in trials)
                assert limit_trial["prompt_len"] == next(r["value"] for r in mine if r["metric"] == "max_prompt_len")


def test_a_cuda_trial_reads_the_allocators_reserved_peak(monkeypatch):
    """measure=cuda: a trial's reserved peak is torch.cuda.max_memory_reserved after it (stand-in
    counters here; no GPU on this machine)."""
    from bench.memory.trackers import CudaTracker

    counters = {"allocated": 100, "max_allocated": 700, "max_reserved": 1 << 21}
    for name, value in (("memory_allocated", "allocated"), ("max_memory_allocated", "max_allocated"),
                        ("max_memory_reserved", "max_reserved")):
        monkeypatch.setattr(torch.cuda, name, lambda device=None, key=value: counters[key])
    for name in ("synchronize", "empty_cache", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, name, lambda device=None: None)
    tracker = object.__new__(CudaTracker)  # no CUDA device to construct it on
    tracker.device = "cuda"
    with tracker.track(limit_bytes=10_000) as m:
        pass
    assert (m.start_bytes, m.peak_bytes, m.peak_reserved, m.oom) == (100, 600, 1 << 21, False)


def test_a_gpu_simulation_of_transformers_falcon_mamba_is_refused():
    """pairing=release runs the Mamba through transformers' FalconMamba; on fake tensors that is its
    CPU slow path (a loop per token), not what a GPU runs: a config error, not hours of wrong numbers."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from bench.config import ConfigError, register_configs

    register_configs()
    configs = str(Path(__file__).resolve().parent.parent / "configs")
    with initialize_config_dir(config_dir=configs, version_base="1.3"):
        release = compose("config", overrides=["experiment=generation_130k_sampled", "model=falcon_mamba_7b",
                                               "scenario.measure=simulate", "pairing=release"])
        best = compose("config", overrides=["experiment=generation_130k_sampled", "model=falcon_mamba_7b",
                                            "scenario.measure=simulate"])
    with pytest.raises(Exception) as e:
        OmegaConf.to_object(release)
    assert isinstance(e.value, ConfigError) or isinstance(e.value.__cause__, ConfigError)
    assert "pairing=best" in str(e.value)
    assert OmegaConf.to_object(best).model.impl == "ssm_bench"



def test_the_segment_address_order_breaks_best_fit_ties_and_is_a_recorded_setting():
    """Two free blocks of one size in two segments: best fit takes the lower address, so with rising
    addresses the older segment's block, with falling ones the newer's. A bad value is an error
    naming the field (the allocator's, and the scenario config's)."""
    from bench.config import ConfigError, MaxSeqLenConfig

    taken = {}
    for order in SEGMENT_ADDRESSES:
        a = CachingAllocatorModel(segment_addresses=order)
        a.malloc("old", 64 * MB)
        a.malloc("new", 64 * MB)
        segments = {key: a._blocks[key].segment for key in ("old", "new")}
        a.free("old")
        a.free("new")
        a.malloc("next", 64 * MB)
        taken[order] = next(key for key, seg in segments.items() if a._blocks["next"].segment is seg)
    assert taken == {"rising": "old", "falling": "new"}
    with pytest.raises(ValueError, match="segment_addresses"):
        CachingAllocatorModel(segment_addresses="random")
    with pytest.raises(ConfigError, match="scenario.segment_addresses"):
        MaxSeqLenConfig(segment_addresses="up")


@pytest.mark.parametrize("pointers, expected", [([100, 200, 300], "rising"), ([300, 200, 100], "falling"),
                                                ([100, 300, 200], "mixed"), ([100, None], None)])
def test_a_gpu_reports_where_cudamalloc_put_its_new_segments(monkeypatch, pointers, expected):
    """The measured counterpart of segment_addresses: fresh segments' addresses in allocation order
    (stand-in tensors here; no GPU on this machine)."""
    from bench.memory.trackers import CudaTracker

    class Segment:
        def __init__(self, ptr):
            self.ptr = ptr

        def data_ptr(self):
            return self.ptr

    given = iter(pointers)

    def empty(*args, **kwargs):
        pointer = next(given)
        if pointer is None:  # the capped device is full: no answer, and no failed job
            raise torch.OutOfMemoryError("CUDA out of memory")
        return Segment(pointer)

    tracker = object.__new__(CudaTracker)  # no CUDA device to construct it on
    monkeypatch.setattr(CudaTracker, "clean", lambda self: None)
    monkeypatch.setattr(torch, "empty", empty)
    tracker.device = "cuda"
    assert tracker.segment_addresses(n=3) == expected


def test_best_fit_holds_at_any_address():
    """Ties go to the lower address even where addresses are negative (falling addresses after
    many reservations): the search key sorts before every block of the size."""
    a = CachingAllocatorModel(segment_addresses="falling")
    a._next_address = 64 * MB  # a few reservations from zero
    for key in range(4):
        a.malloc(key, 16 * MB)
    for key in range(4):
        a.free(key)
    a.malloc("again", 16 * MB)
    assert a.reserved == 4 * 16 * MB and a._blocks["again"].address < 0
