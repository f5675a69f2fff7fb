"""Synthetic capability probes: train the model the config describes on a probe task, then measure
its held-out accuracy (bench/probes/).

The model config (configs/model/probe_*.yaml) gives the family and the run-independent shape; the
scenario gives the width (scenario.d_model) and the task's vocabulary, and a Transformer's MLP is
sized to match the Mamba's parameter count (bench/probes/models.py). So one job is: build that
model with random weights through its backend, train it (bench/probes/train.py), measure its
accuracy on the held-out test set at the training length and, for tasks that extrapolate, at each
multiple in scenario.extrapolate; save the weights (safetensors, `weights/` in the run directory,
loadable as model.weights=pretrained model.path=<run>/weights), load them back strictly through
the same backend class and measure again: the reloaded model must score exactly the same.

Rows: `accuracy` per test length (`test_len`, with `asked` positions and `reloaded_accuracy`), the
training loss curve (`train_loss` by `step`), `train_time` and `train_throughput` (training tokens
per second). Timings taken while other processes used the CPU are flagged; accuracies are not
timings and stay ok.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import torch

from bench.backends.base import InvalidOutput
from bench.contention import LoadMeter, contention_reason
from bench.probes.models import architecture, describe_architecture, init_for_training, with_architecture
from bench.probes.tasks import TASKS, train_test
from bench.probes.train import accuracy, train
from bench.schema import RATIO, SECONDS, TOKENS_PER_S

log = logging.getLogger(__name__)

WEIGHTS = "weights"  # the trained model's directory inside the run directory
LOSS_POINTS = 50  # train_loss rows: about this many, evenly spaced
NATS = "nats"


def run(cfg, backend, out_dir) -> list[dict]:
    sc = cfg.scenario
    task = TASKS[sc.task]
    lengths = [sc.seq_len * m for m in sc.extrapolate] if task.extrapolates else []
    arch = architecture(cfg.model, sc.d_model, task.vocab, max([sc.seq_len, *lengths]))
    model_cfg = with_architecture(cfg.model, arch, task.vocab)
    trained = type(backend)(model_cfg, backend.device, backend.dtype)
    torch.manual_seed(cfg.seed)
    trained.load()  # random weights, from the architecture above
    init_for_training(trained.model)
    n_train = sc.train_examples or sc.steps * sc.batch_size
    (train_x, train_y), tests = train_test(task, sc.seq_len, n_train, sc.test_examples, cfg.seed, tuple(lengths))

    with LoadMeter() as meter:
        result = train(trained.model, train_x, train_y, steps=sc.steps, batch_size=sc.batch_size, lr=sc.lr,
                       weight_decay=sc.weight_decay, warmup_steps=sc.warmup_steps, seed=cfg.seed, progress=sc.progress,
                       desc=f"{cfg.model.name} {sc.task} L={sc.seq_len} d={sc.d_model} lr={sc.lr:g}")
        timing = contention_reason(meter.read())
    bad = [step for step, loss in enumerate(result.losses) if not math.isfinite(loss)]
    if bad:
        raise InvalidOutput(f"non-finite training loss from step {bad[0]}")
    scores = {length: accuracy(trained.model, *test) for length, test in tests.items()}
    if not all(finite for _, _, finite in scores.values()):
        raise InvalidOutput("non-finite logits on the test set")

    weights = Path(out_dir) / WEIGHTS
    trained.as_transformers().save_pretrained(weights)  # config.json + model.safetensors
    again = _reloaded_scores(backend, model_cfg, weights, tests)
    check_reload({length: value for length, (value, _, _) in scores.items()}, again)

    described = {**trained.loaded_description(), "architecture": describe_architecture(arch),
                 "vocab_size": task.vocab, "weights_dir": WEIGHTS}
    rows = []
    for length, (value, asked, _) in scores.items():
        rows.append({"metric": "accuracy", "value": value, "unit": RATIO, "test_len": length, "asked": asked,
                     "reloaded_accuracy": again[length], "extrapolation": length / sc.seq_len})
    every = max(1, len(result.losses) // LOSS_POINTS)
    for step in range(0, len(result.losses), every):
        window = result.losses[step:step + every]
        rows.append({"metric": "train_loss", "value": sum(window) / len(window), "unit": NATS, "step": step})
    for metric, value, unit in (("train_time", result.seconds, SECONDS),
                                ("train_throughput", result.tokens_per_s, TOKENS_PER_S)):
        rows.append({"metric": metric, "value": value, "unit": unit, "tokens": result.tokens,
                     **({"status": "flagged", "reason": timing} if timing else {})})
    for length, (value, *_) in scores.items():
        log.info("%s %s: accuracy %.3f at length %d (reloaded: %.3f)", cfg.model.name, sc.task, value, length,
                 again[length])
    # The rows describe the trained model (its weights are saved beside them), not the random start;
    # training and scoring run whole sequences: no KV cache or decode path shaped them.
    return [{**described, "source": "measured", "weights": "trained", "match_vocab": None, "kv_cache": None,
             "decode_path": None, **row} for row in rows]


def _reloaded_scores(backend, model_cfg, weights: Path, tests: dict) -> dict[int, float]:
    """The saved weights loaded back strictly through the same backend class, scored again; any
    difference from the trained model's scores makes the job invalid."""
    reloaded = type(backend)(dataclasses.replace(model_cfg, weights="pretrained", path=str(weights)),
                             backend.device, backend.dtype)
    reloaded.load()
    mismatches = reloaded.config_mismatches()
    if mismatches:
        raise InvalidOutput(f"the saved model is not the trained one: {mismatches[0]}")
    return {length: accuracy(reloaded.model, *test)[0] for length, test in tests.items()}


def check_reload(scores: dict, again: dict) -> None:
    """Raise InvalidOutput when a reloaded accuracy differs from the trained model's."""
    for length, value in scores.items():
        if again[length] != value:
            raise InvalidOutput(f"reloaded weights score {again[length]:.6f} at length {length}, "
                                f"the trained model {value:.6f}: the saved model is not the trained one")
