"""The scenarios, each in its own module with run(cfg, backend, out_dir) -> rows, and the one
registry of what the runner needs to know about each: who builds the model, whether its numbers
are timings (flagged on a busy machine), and whether it steps a decoder (the pairing's cache and
decode path apply, compiled or captured before it starts).

Light on purpose (no torch): the config schema and the report read the names from here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    name: str
    # Who builds the model. runner: the runner loads the backend and probes it (finite outputs)
    # before the scenario starts. scenario: it gets the backend unloaded (fake tensors, a baseline
    # read first, a model it trains). none: not a language model; run(cfg, None, out_dir).
    model: str = "runner"
    timed: bool = False
    decodes: bool = False

    def load(self):
        return importlib.import_module(f"bench.scenarios.{self.name}")


# In the report's order: the release's three experiments first.
SCENARIOS = {s.name: s for s in (
    Scenario("max_seq_len", model="scenario"),  # measure=simulate builds it under FakeTensorMode
    Scenario("generation", timed=True, decodes=True),
    Scenario("leaderboard"),
    Scenario("batch", timed=True, decodes=True),
    Scenario("crosscheck", model="scenario", timed=True, decodes=True),  # reads the process's RSS first
    Scenario("implementation", timed=True),
    Scenario("kernels", model="scenario"),  # synthetic inputs: no model at all
    Scenario("vision", model="none", timed=True),  # image classifiers it builds itself
    Scenario("probe", model="scenario"),  # trains and reloads its own model; its timings flag themselves
)}
