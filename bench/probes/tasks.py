"""The probe tasks, generated on the fly from a seed: no download, the same data for every model.

Each generator returns (inputs, targets), two (n, seq_len) int64 tensors. targets[i, p] is what
the model must predict at position p (its next-token output there), IGNORE where nothing is
asked; accuracy is counted over the asked positions only (per query, per copied token).

- mqar: multi-query associative recall, after Zoology (Arora et al., 2023, their generator
  `multiquery_ar`): `pairs` key-value pairs (keys from the lower half of the vocabulary, values
  from the upper half, both without repeats), then a region of filler 0 in which every key is
  asked once, at even offsets drawn with Zoology's power law (queries cluster near the
  context); the answer at a query is its value.
- selective_copying: the Mamba paper's section 4.1: `copies` data tokens scattered among noise
  tokens (0), then `copies` marker tokens; at the i-th marker the model outputs the i-th data
  token. Data tokens are 1 .. vocab-2, the marker is vocab-1.
- induction_heads: the Mamba paper's section 4.1 (as in H3's generator): random tokens, a
  special token (vocab-1) once at a random position followed by the target, and the special
  token again at the end, where the model must output the target. Extrapolation tests draw the
  same task at longer lengths.

Training and test sets are drawn from different seeds, and any test sequence that also occurs
in the training set is dropped (`train_test`), so the test set is held out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from bench.schema import PROBE_TASKS

IGNORE = -100  # torch.nn.functional.cross_entropy's ignore_index
MQAR_POWER_A = 0.01  # Zoology's default power-law exponent for the query gaps
TEST_SEED_OFFSET = 1_000_003  # the test set's generator seed is the training seed plus this


def mqar(n: int, seq_len: int, vocab: int, pairs: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    context = 2 * pairs
    space = (seq_len - context) // 2  # query slots: even offsets of the query region
    if pairs < 1 or space < pairs or vocab // 2 - 1 < pairs:
        raise ValueError(f"mqar: {pairs} pairs do not fit seq_len {seq_len} and vocab {vocab}")
    keys = 1 + _distinct(n, pairs, vocab // 2 - 1, generator)  # 1 .. vocab/2 - 1 (0 is the filler)
    values = vocab // 2 + _distinct(n, pairs, vocab - vocab // 2, generator)
    inputs = torch.zeros(n, seq_len, dtype=torch.long)
    targets = torch.full((n, seq_len), IGNORE, dtype=torch.long)
    inputs[:, 0:context:2], inputs[:, 1:context:2] = keys, values
    # Zoology: p(gap) proportional to a * gap^(a-1) over 1..space, drawn without replacement.
    weights = MQAR_POWER_A * torch.arange(1, space + 1, dtype=torch.float64) ** (MQAR_POWER_A - 1)
    gaps = torch.multinomial(weights.expand(n, space), pairs, replacement=False, generator=generator)
    positions = context + 2 * gaps
    order = _distinct(n, pairs, pairs, generator)  # which key is asked at each query slot
    inputs.scatter_(1, positions, keys.gather(1, order))
    targets.scatter_(1, positions, values.gather(1, order))
    return inputs, targets


def selective_copying(n: int, seq_len: int, vocab: int, copies: int, generator: torch.Generator
                      ) -> tuple[Tensor, Tensor]:
    region = seq_len - copies
    if copies < 1 or region < copies or vocab < 4:
        raise ValueError(f"selective_copying: {copies} copies do not fit seq_len {seq_len} (vocab {vocab} >= 4)")
    data = torch.randint(1, vocab - 1, (n, copies), generator=generator)
    positions = _distinct(n, copies, region, generator).sort(dim=1).values
    inputs = torch.zeros(n, seq_len, dtype=torch.long)
    inputs.scatter_(1, positions, data)
    inputs[:, region:] = vocab - 1
    targets = torch.full((n, seq_len), IGNORE, dtype=torch.long)
    targets[:, region:] = data
    return inputs, targets


def induction_heads(n: int, seq_len: int, vocab: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    if seq_len < 3 or vocab < 3:
        raise ValueError(f"induction_heads: needs seq_len >= 3 and vocab >= 3, got {seq_len}, {vocab}")
    special = vocab - 1
    inputs = torch.randint(0, special, (n, seq_len), generator=generator)
    first = torch.randint(0, seq_len - 2, (n, 1), generator=generator)  # the target follows it
    inputs.scatter_(1, first, special)
    inputs[:, -1] = special
    targets = torch.full((n, seq_len), IGNORE, dtype=torch.long)
    targets[:, -1] = inputs.gather(1, first + 1).squeeze(1)
    return inputs, targets


def _distinct(n: int, k: int, high: int, generator: torch.Generator) -> Tensor:
    """(n, k) values from 0 .. high-1, distinct within each row."""
    return torch.rand(n, high, generator=generator).argsort(dim=1)[:, :k]


@dataclass(frozen=True)
class Task:
    """A task at its scaled settings: the vocabulary and how the task grows with the length."""

    name: str
    vocab: int
    make: Callable[..., tuple[Tensor, Tensor]]
    params: Callable[[int], dict]  # seq_len -> the generator's size arguments
    extrapolates: bool  # tested at multiples of the training length (induction heads)

    def generate(self, n: int, seq_len: int, seed: int) -> tuple[Tensor, Tensor]:
        generator = torch.Generator().manual_seed(seed)
        return self.make(n, seq_len, self.vocab, generator=generator, **self.params(seq_len))


TASKS = {
    # Zoology: vocab 8192, (64, 4), (128, 8), (256, 16): one pair per 16 tokens, kept.
    "mqar": Task("mqar", vocab=256, make=mqar, params=lambda seq_len: {"pairs": max(1, seq_len // 16)},
                 extrapolates=False),
    # Mamba paper: vocab 16, 16 tokens to copy in 4096; here 8 tokens in seq_len.
    "selective_copying": Task("selective_copying", vocab=16, make=selective_copying,
                              params=lambda seq_len: {"copies": 8}, extrapolates=False),
    # Mamba paper: vocab 16, trained at 256, tested up to 2^20.
    "induction_heads": Task("induction_heads", vocab=16, make=induction_heads, params=lambda seq_len: {},
                            extrapolates=True),
}
assert tuple(TASKS) == PROBE_TASKS, "bench.schema.PROBE_TASKS lists the tasks defined here"


def row_digests(inputs: Tensor) -> set[bytes]:
    """One digest per sequence: what leakage is checked on (the inputs decide the answers)."""
    rows = inputs.to(torch.int32).contiguous().numpy()
    return {hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows}


def held_out(inputs: Tensor, targets: Tensor, train_digests: set[bytes]) -> tuple[Tensor, Tensor]:
    """Drop the sequences that also occur in the training set."""
    rows = inputs.to(torch.int32).contiguous().numpy()
    keep = torch.tensor([hashlib.blake2b(row.tobytes(), digest_size=16).digest() not in train_digests
                         for row in rows], dtype=torch.bool)
    return inputs[keep], targets[keep]


def train_test(task: Task, seq_len: int, n_train: int, n_test: int, seed: int, test_lengths: tuple[int, ...] = ()
               ) -> tuple[tuple[Tensor, Tensor], dict[int, tuple[Tensor, Tensor]]]:
    """The training set at seq_len and a held-out test set at seq_len and at each of test_lengths
    (different seeds; sequences seen in training removed). Returns (train, {length: test})."""
    train = task.generate(n_train, seq_len, seed)
    digests = row_digests(train[0])
    tests = {}
    for length in dict.fromkeys((seq_len, *test_lengths)):
        test = task.generate(n_test, length, seed + TEST_SEED_OFFSET + length)
        tests[length] = held_out(*test, digests) if length == seq_len else test  # other lengths cannot collide
    return train, tests
