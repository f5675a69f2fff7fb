"""The probes' training loop and accuracy, in plain PyTorch.

Plain PyTorch rather than transformers' Trainer or Lightning: the in-repo Mamba is not a
transformers training model (it trains through bench/probes/models.training_logits), the data is
a pair of in-memory tensors, and the loop is a dozen lines; a framework would add a second code
path for one of the two architectures, and the comparison needs the same one for both.

Both architectures get the same loop: AdamW, linear warm-up then cosine decay to zero, gradient
clipping at 1.0, cross-entropy on the asked positions only, batches in a fixed (seeded) order.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from bench.probes.models import eval_logits, training_logits
from bench.probes.tasks import IGNORE

BETAS = (0.9, 0.98)
CLIP_NORM = 1.0


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)  # one per step
    seconds: float = 0.0
    tokens: int = 0  # training tokens processed (forward and backward)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else math.nan


def schedule(step: int, steps: int, warmup: int) -> float:
    """The learning-rate factor at `step`: linear warm-up over `warmup` steps, then cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train(model, inputs: Tensor, targets: Tensor, *, steps: int, batch_size: int, lr: float, weight_decay: float,
          warmup_steps: int, seed: int, progress: bool = True, desc: str = "train") -> TrainResult:
    """Train in place for `steps` batches drawn in a seeded order from (inputs, targets)."""
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "A_log" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "A_log" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=BETAS)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: schedule(s, steps, warmup_steps))
    order = _batches(len(inputs), steps, batch_size, seed)
    result = TrainResult()
    start = time.perf_counter()
    with torch.enable_grad(), tqdm(order, desc=desc, disable=not progress, mininterval=2.0) as bar:
        for index in bar:
            batch, labels = inputs[index], targets[index]
            logits = training_logits(model, batch)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
            optimizer.step()
            scheduler.step()
            result.losses.append(loss.item())
            result.tokens += batch.numel()
            bar.set_postfix(loss=f"{result.losses[-1]:.3f}", refresh=False)
    result.seconds = time.perf_counter() - start
    model.eval()
    return result


def _batches(n: int, steps: int, batch_size: int, seed: int) -> list[Tensor]:
    """Index batches: epochs of a seeded permutation, as many as `steps` needs."""
    generator = torch.Generator().manual_seed(seed)
    needed = steps * batch_size
    order = torch.cat([torch.randperm(n, generator=generator) for _ in range(math.ceil(needed / n))])[:needed]
    return list(order.view(steps, batch_size))


def accuracy(model, inputs: Tensor, targets: Tensor, batch_size: int = 64) -> tuple[float, int, bool]:
    """(share of asked positions whose argmax is the answer, positions asked, all logits finite),
    from the model's own forward (eval_logits)."""
    model.eval()
    right = asked = 0
    finite = True
    for start in range(0, len(inputs), batch_size):
        logits = eval_logits(model, inputs[start:start + batch_size])
        labels = targets[start:start + batch_size]
        mask = labels != IGNORE
        finite &= bool(torch.isfinite(logits[mask]).all())
        right += int((logits.argmax(-1)[mask] == labels[mask]).sum())
        asked += int(mask.sum())
    return (right / asked if asked else math.nan), asked, finite
