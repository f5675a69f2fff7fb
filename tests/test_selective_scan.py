"""Property tests: the chunked scan and the decode update equal the plain recurrence."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scan_inputs import random_scan_inputs

from models.ops.selective_scan import selective_scan_chunked, selective_scan_ref, selective_state_update


_inputs = random_scan_inputs


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), b=st.integers(1, 3), l=st.integers(1, 40), d=st.integers(1, 9),
       n=st.integers(1, 17), chunk=st.integers(1, 50), with_state=st.booleans(), gated=st.booleans())
def test_chunked_scan_equals_sequential_recurrence(seed, b, l, d, n, chunk, with_state, gated):
    u, delta, A, B, C, D, z, h0 = _inputs(seed, b, l, d, n, with_state)
    z = z if gated else None
    y_ref, h_ref = selective_scan_ref(u, delta, A, B, C, D, z, initial_state=h0)
    y, h = selective_scan_chunked(u, delta, A, B, C, D, z, initial_state=h0, chunk_size=chunk)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h, h_ref, rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), b=st.integers(1, 3), l=st.integers(1, 12), d=st.integers(1, 9),
       n=st.integers(1, 17))
def test_state_update_steps_equal_the_scan(seed, b, l, d, n):
    u, delta, A, B, C, D, z, h0 = _inputs(seed, b, l, d, n, True)
    y_ref, h_ref = selective_scan_ref(u, delta, A, B, C, D, z, initial_state=h0)
    state = h0.clone()
    ys = [selective_state_update(state, u[:, t], delta[:, t], A, B[:, t], C[:, t], D, z[:, t]) for t in range(l)]
    torch.testing.assert_close(torch.stack(ys, 1), y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state, h_ref, rtol=1e-5, atol=1e-5)


def test_chunked_scan_does_not_mutate_inputs_and_keeps_dtype():
    u, delta, A, B, C, D, z, h0 = _inputs(0, 2, 10, 4, 3, True)
    h0_copy = h0.clone()
    y, h = selective_scan_chunked(u.bfloat16(), delta, A, B, C, D, z, initial_state=h0, chunk_size=4)
    assert torch.equal(h0, h0_copy)
    assert y.dtype == torch.bfloat16 and h.dtype == torch.float32


cpu_kernels = __import__("models.ops.cpu_kernels", fromlist=["cpu_kernels"])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), b=st.integers(1, 3), l=st.integers(1, 40), d=st.integers(1, 40),
       n=st.integers(1, 17), with_state=st.booleans(), gated=st.booleans())
def test_c_scan_equals_sequential_recurrence(seed, b, l, d, n, with_state, gated):
    if not cpu_kernels.available():
        import pytest

        pytest.skip(f"no C compiler: {cpu_kernels._load_error}")
    u, delta, A, B, C, D, z, h0 = _inputs(seed, b, l, d, n, with_state)
    z = z if gated else None
    y_ref, h_ref = selective_scan_ref(u, delta, A, B, C, D, z, initial_state=h0)
    y, h = cpu_kernels.selective_scan_cpu(u, delta, A, B, C, D, z, initial_state=h0)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(h, h_ref, rtol=1e-4, atol=1e-5)
    if h0 is not None:  # the decode form: one token, state updated in place
        state = h0.clone()
        y1 = cpu_kernels.selective_state_update_cpu(state, u[:, 0], delta[:, 0], A, B[:, 0], C[:, 0], D,
                                                 None if z is None else z[:, 0])
        y1_ref, h1_ref = selective_scan_ref(u[:, :1], delta[:, :1], A, B[:, :1], C[:, :1], D,
                                            None if z is None else z[:, :1], initial_state=h0)
        torch.testing.assert_close(y1, y1_ref[:, 0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(state, h1_ref, rtol=1e-4, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), rows=st.integers(1, 4), dim=st.integers(1, 80), offset=st.integers(0, 7),
       weighted=st.booleans())
def test_c_rms_norm_equals_the_pytorch_norm(seed, rows, dim, offset, weighted):
    """The decode step's norms: on a column slice of a wider tensor (Falcon's dt, B, C are slices of
    x_proj's output), with and without a weight."""
    if not cpu_kernels.available():
        import pytest

        pytest.skip(f"no C compiler: {cpu_kernels._load_error}")
    from models.ops.selective_scan import rms_norm_ref, rms_normalize

    g = torch.Generator().manual_seed(seed)
    wide = torch.randn(rows, offset + dim + 3, generator=g) * 3
    x = wide[:, offset:offset + dim]
    weight = torch.randn(dim, generator=g) if weighted else None
    expected = rms_norm_ref(x, weight, 1e-6) if weighted else rms_normalize(x, 1e-6)
    torch.testing.assert_close(cpu_kernels.rms_norm_cpu(x, weight, 1e-6), expected, rtol=1e-5, atol=1e-6)
