"""Shared fixtures: every backend test runs once per available backend."""

import numpy as np
import pytest

import densefit as df

BACKENDS = df.available_backends()


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The name of each backend available here (cpp, numba, numpy)."""
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def relative_error(a, b) -> float:
    """max |a - b| / max(|b|, tiny): the measure the DESIGN tolerances are stated in."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


TOLERANCE = {"float64": 1e-10, "float32": 1e-4}


def assert_runs_close(a, b, dtype, what=""):
    """Two training runs, each (model, history), agree within DESIGN's tolerance for dtype:
    parameters, optimizer slots (when b has any) and every history series."""
    (ma, ha), (mb, hb) = a, b
    tol = TOLERANCE[dtype]
    assert relative_error(ma.state.params, mb.state.params) < tol, what
    if np.any(mb.state.slots):
        assert relative_error(ma.state.slots, mb.state.slots) < tol, what
    assert ha.keys() == hb.keys(), what
    for key in ha:
        assert relative_error(ha[key], hb[key]) < tol, (what, key)
