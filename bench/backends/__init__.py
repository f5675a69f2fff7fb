"""Model backends behind one interface (base.Backend), looked up by the config's `model.impl`."""

from __future__ import annotations

from bench.backends.base import Backend

REGISTRY: dict[str, str] = {
    # impl name -> "module:Class"; imported on demand so a backend's heavy imports stay lazy.
    "ssm_bench": "bench.backends.ssm_bench:SsmBenchBackend",
    "transformers": "bench.backends.transformers:TransformersBackend",
    "dummy": "bench.backends.dummy:DummyBackend",
}


def get_backend_class(impl: str) -> type[Backend]:
    if impl not in REGISTRY:
        raise ValueError(f"unknown backend {impl!r}; known: {sorted(REGISTRY)}")
    module, cls = REGISTRY[impl].split(":")
    import importlib

    return getattr(importlib.import_module(module), cls)
