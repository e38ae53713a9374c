"""pytest-benchmark suites over densefit's backends and the peers: verify, then time.

Run from the repository root (they are not part of the normal test run, ``testpaths=tests``)::

    python -m pytest benchmarks/ --benchmark-only
    DENSEFIT_BENCH_SCALE=0.01 python -m pytest benchmarks/ --benchmark-only   # smoke size

Environment: ``DENSEFIT_BENCH_SCALE`` (default 1.0) shrinks the workloads,
``DENSEFIT_BENCH_ROUNDS`` (default 3) timed rounds per benchmark, ``DENSEFIT_BENCH_THREADS``
threads for every library (default: each library's own).
"""

import os

from densefit.bench import threads_env

threads_env.configure(threads_env.configured())     # before torch, JAX and numba start

import pytest  # noqa: E402

from densefit.bench import peers, workloads  # noqa: E402

ROUNDS = int(os.environ.get("DENSEFIT_BENCH_ROUNDS", "3"))


@pytest.fixture(params=peers.NAMES)
def peer(request):
    """Each trainer: densefit's backends, then the peers (skipped where unavailable)."""
    return request.param


@pytest.fixture(scope="session")
def reference():
    """``reference(w)``: densefit's numpy backend's (loss, accuracy) on ``w``, computed once."""
    results = {}

    def get(w):
        if w.id not in results:
            reason = peers.unavailable(peers.REFERENCE, w)
            if reason:
                pytest.skip(f"no reference to verify against: {reason}")
            results[w.id] = peers.train(peers.REFERENCE, w)
        return results[w.id]
    return get


@pytest.fixture
def verify_then_time(benchmark, reference):
    """``verify_then_time(peer, workload_id)``: one untimed run (it absorbs JIT compilation)
    whose result must match the reference's, then ``ROUNDS`` timed runs. No timing thresholds."""

    def go(name, workload_id):
        w = workloads.get(workload_id)
        reason = peers.unavailable(name, w)
        if reason:
            pytest.skip(reason)
        run = peers.setup(name, w)
        result = workloads.evaluate(w, run())
        problem = peers.check(name, w, result, reference(w))
        assert problem is None, f"{name} on {w.id} disagrees with {peers.REFERENCE}: {problem}"

        benchmark.group = f"{w.id} {w.name}"
        benchmark.extra_info.update(workload=w.id, trainer=name, rows=w.n, epochs=w.epochs, scale=w.scale,
                                    threads=threads_env.configured() or "default",
                                    loss=result[0], accuracy=result[1], note=peers.PEERS[name].note(w))
        benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
        if benchmark.stats is not None:          # None under --benchmark-disable
            benchmark.extra_info.update(workloads.rates(w, benchmark.stats.stats.median))
    return go
