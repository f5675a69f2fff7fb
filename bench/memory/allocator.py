"""A model of PyTorch's CUDA caching allocator, replaying a simulated allocation trace.

A simulation (bench/memory/trackers.py, measure=simulate) counts the bytes of live tensors. A GPU
holds more: the caching allocator rounds every request, carves requests out of segments it
reserves with cudaMalloc and keeps, and a request that no free block of the reserved segments
can take reserves a new segment, even when the free bytes would suffice in total
(fragmentation). `set_per_process_memory_fraction` caps the *reserved* bytes, so that is what
decides an OOM on a capped GPU, not the allocated bytes.

The rules are c10/cuda/CUDACachingAllocator.cpp's, at its defaults (no PYTORCH_CUDA_ALLOC_CONF,
no expandable segments, one stream):

- a request is rounded up to a multiple of 512 B (kMinBlockSize);
- requests of up to 1 MiB (kSmallSize) come from the small pool, larger ones from the large pool;
- a request is served by the smallest free block of its pool that is large enough (best fit;
  ties to the lower address), split when what remains is >= 512 B (small pool) or > 1 MiB
  (large pool); an unsplit remainder stays inside the allocated block and counts as allocated;
- without such a block a new segment is reserved: 2 MiB (kSmallBuffer) for small requests,
  20 MiB (kLargeBuffer) for requests under 10 MiB (kMinLargeAlloc), else the request rounded up
  to 2 MiB (kRoundLarge);
- a reservation over the cap first releases every cached segment that is wholly free
  (release_cached_blocks), then retries once; failing that, it is an OOM;
- a freed block merges with free neighbours of its segment; segments are kept until
  empty_cache() (which the cuda tracker calls between trials: `clean`).

One input is not the allocator's to decide: the addresses cudaMalloc returns. They break ties of
best fit between free blocks of equal size (many, when every layer allocates the same shapes),
and so decide which blocks merge later. `segment_addresses` says whether each new segment lies
above the previous ones ("rising", the default) or below ("falling"). For Falcon Mamba 7B at a
24 GiB cap the two orders bracket the H200's measured limit (results/reference/a10_simulated).

Besides tensors, cuBLAS keeps a workspace per handle and stream from the same allocator, taken at
the first matmul and kept (`workspace_bytes`, from the hardware profile).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

KB, MB = 1024, 1024 * 1024
SEGMENT_ADDRESSES = ("rising", "falling")  # where each new segment lies: above or below the earlier ones
MIN_BLOCK = 512  # kMinBlockSize: every request is rounded to a multiple of this
SMALL_SIZE = 1 * MB  # kSmallSize: largest request of the small pool
SMALL_BUFFER = 2 * MB  # kSmallBuffer: a small-pool segment
LARGE_BUFFER = 20 * MB  # kLargeBuffer: the segment for large requests under MIN_LARGE_ALLOC
MIN_LARGE_ALLOC = 10 * MB  # kMinLargeAlloc
ROUND_LARGE = 2 * MB  # kRoundLarge: larger segments are rounded up to this


class AllocatorOOM(Exception):
    """The modelled allocator could not reserve a segment under its cap."""


def round_size(nbytes: int) -> int:
    return MIN_BLOCK if nbytes < MIN_BLOCK else -(-nbytes // MIN_BLOCK) * MIN_BLOCK


def segment_size(rounded: int) -> int:
    if rounded <= SMALL_SIZE:
        return SMALL_BUFFER
    if rounded < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return -(-rounded // ROUND_LARGE) * ROUND_LARGE


@dataclass(eq=False)
class Block:
    address: int
    size: int
    segment: "Segment"
    allocated: bool = False
    prev: "Block | None" = None
    next: "Block | None" = None


@dataclass(eq=False)
class Segment:
    address: int
    size: int
    small: bool
    head: Block | None = field(default=None, repr=False)


class CachingAllocatorModel:
    """malloc(key, nbytes) / free(key) as the CUDA caching allocator would serve them.

    `allocated` and `reserved` are torch.cuda.memory_allocated / memory_reserved; their peaks
    max_memory_allocated / max_memory_reserved. `cap` is the reserved-bytes cap
    (set_per_process_memory_fraction x the device's memory); None: no cap. `segment_addresses`:
    one of SEGMENT_ADDRESSES, where cudaMalloc puts each new segment (see the module docstring).
    """

    def __init__(self, cap: int | None = None, workspace_bytes: int = 0, segment_addresses: str = "rising"):
        if segment_addresses not in SEGMENT_ADDRESSES:
            raise ValueError(f"segment_addresses: {segment_addresses!r} is not one of {SEGMENT_ADDRESSES}")
        self.cap = cap
        self.workspace_bytes = int(workspace_bytes)
        self._address_step = 1 if segment_addresses == "rising" else -1
        self.allocated = self.reserved = 0
        self.peak_allocated = self.peak_reserved = 0
        self._free: dict[bool, list[tuple[int, int, Block]]] = {True: [], False: []}  # pool -> sorted (size, addr)
        self._blocks: dict[object, Block] = {}
        self._next_address = 1 << 62  # cudaMalloc's addresses: only their order matters (best-fit ties)
        self._workspace_taken = False

    # -- the allocator's interface ---------------------------------------------------------
    def malloc(self, key, nbytes: int) -> None:
        """Serve a request of nbytes for `key` (a storage's identity). Raises AllocatorOOM."""
        if nbytes <= 0:
            return  # a zero-byte tensor gets no block
        size = round_size(int(nbytes))
        small = size <= SMALL_SIZE
        block = self._best_fit(small, size)
        if block is None:
            block = self._reserve(small, segment_size(size))
        else:
            self._unlist(block)
        if self._should_split(block, size, small):
            rest = Block(block.address + size, block.size - size, block.segment, prev=block, next=block.next)
            if block.next is not None:
                block.next.prev = rest
            block.next, block.size = rest, size
            self._list(rest)
        block.allocated = True
        self._blocks[key] = block
        self.allocated += block.size
        self.peak_allocated = max(self.peak_allocated, self.allocated)

    def free(self, key) -> None:
        block = self._blocks.pop(key, None)
        if block is None:
            return
        block.allocated = False
        self.allocated -= block.size
        for neighbour in (block.prev, block.next):  # merge with free neighbours of its segment
            if neighbour is not None and not neighbour.allocated:
                self._unlist(neighbour)
                if neighbour is block.prev:
                    neighbour.size += block.size
                    neighbour.next = block.next
                    if block.next is not None:
                        block.next.prev = neighbour
                    if block.segment.head is block:
                        block.segment.head = neighbour
                    block = neighbour
                else:
                    block.size += neighbour.size
                    block.next = neighbour.next
                    if neighbour.next is not None:
                        neighbour.next.prev = block
        self._list(block)

    def take_workspace(self) -> None:
        """cuBLAS's workspace, at the first matmul of the process: allocated once, never freed."""
        if not self._workspace_taken and self.workspace_bytes:
            self._workspace_taken = True
            self.malloc(("cublas_workspace",), self.workspace_bytes)

    def empty_cache(self) -> None:
        """torch.cuda.empty_cache(): release every segment that is wholly free."""
        self._release_cached()

    def reset_peak(self) -> None:
        self.peak_allocated, self.peak_reserved = self.allocated, self.reserved

    # -- internals -------------------------------------------------------------------------
    def _best_fit(self, small: bool, size: int) -> Block | None:
        pool = self._free[small]
        i = bisect.bisect_left(pool, (size, -math.inf))  # before every block of this size, whatever its address
        return pool[i][2] if i < len(pool) else None

    @staticmethod
    def _should_split(block: Block, size: int, small: bool) -> bool:
        remaining = block.size - size
        return remaining >= MIN_BLOCK if small else remaining > SMALL_SIZE

    def _reserve(self, small: bool, nbytes: int) -> Block:
        if self.cap is not None and self.reserved + nbytes > self.cap:
            self._release_cached()  # the allocator's one retry: drop wholly free segments, try again
            if self.reserved + nbytes > self.cap:
                raise AllocatorOOM(f"reserving {nbytes} B would pass the cap {self.cap} B "
                                   f"(reserved {self.reserved} B, allocated {self.allocated} B)")
        if self._address_step > 0:
            segment = Segment(self._next_address, nbytes, small)
            self._next_address += nbytes + ROUND_LARGE
        else:  # below every earlier segment, with a gap, as above
            self._next_address -= nbytes + ROUND_LARGE
            segment = Segment(self._next_address, nbytes, small)
        segment.head = Block(segment.address, nbytes, segment)
        self.reserved += nbytes
        self.peak_reserved = max(self.peak_reserved, self.reserved)
        return segment.head

    def _release_cached(self) -> None:
        for small in (True, False):
            whole = [b for _, _, b in self._free[small] if b.prev is None and b.next is None]
            for block in whole:
                self._unlist(block)
                self.reserved -= block.size

    def _list(self, block: Block) -> None:
        bisect.insort(self._free[block.segment.small], (block.size, block.address, block))

    def _unlist(self, block: Block) -> None:
        pool = self._free[block.segment.small]
        i = bisect.bisect_left(pool, (block.size, block.address))
        assert pool[i][2] is block, "allocator model: a free block is missing from its pool"
        del pool[i]


# cuBLAS's workspace as PyTorch sizes it by default (CUBLAS_WORKSPACE_CONFIG=":4096:2:16:8" on
# pre-Hopper cards such as the A10: two 4 MiB and eight 16 KiB chunks; Hopper takes 32 MiB).
CUBLAS_WORKSPACE = 4096 * KB * 2 + 16 * KB * 8
