"""Random inputs of the selective-scan contract, shared by the scan tests (CPU, float32)."""

import torch


def random_scan_inputs(seed, b, l, d, n, with_state=True):
    """u, delta (softplus'd), A (negative), B, C, D, z, h0 (or None) for a (b, l, d) scan with n states."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, l, d, generator=g)
    delta = torch.nn.functional.softplus(torch.randn(b, l, d, generator=g))
    A = -torch.exp(torch.randn(d, n, generator=g))
    B, C = torch.randn(b, l, n, generator=g), torch.randn(b, l, n, generator=g)
    D, z = torch.randn(d, generator=g), torch.randn(b, l, d, generator=g)
    h0 = torch.randn(b, d, n, generator=g) if with_state else None
    return u, delta, A, B, C, D, z, h0
