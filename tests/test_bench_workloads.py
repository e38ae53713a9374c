"""The benchmark workloads W1/W2 start from weights that can learn: at full size densefit
reaches accuracy ≥ 0.99 (the 2/3 of a stalled network would make the benchmarks' check of
every trainer against densefit's numpy backend meaningless). Uses the fastest backend here.
The shuffled workloads (W3, W4, W6): every trainer visits exactly fit(shuffle=True)'s orders."""

import numpy as np
import pytest

import densefit as df
from densefit import shuffle
from densefit.bench import numpy_tutorial, peers, workloads

FAST = next((b for b in ("cpp", "numba") if b in df.available_backends()), None)


@pytest.mark.skipif(FAST is None, reason="W1 at full size needs the cpp or numba backend to be fast")
@pytest.mark.parametrize("workload_id", ["W1", "W2"])
def test_tiny_workloads_train_to_high_accuracy(workload_id):
    w = workloads.get(workload_id, 1.0)
    assert (w.n, w.epochs) == (w.spec.rows, w.spec.epochs)
    loss, accuracy = peers.train(f"densefit-{FAST}", w)
    assert accuracy >= 0.99, (loss, accuracy)


def test_initial_weights_are_fresh_copies():
    w = workloads.get("W1", 0.001)
    first, second = w.init_weights(), w.init_weights()
    assert [a.shape for a in first] == [(2, 3), (3,), (3, 4), (4,), (4, 1), (1,)]
    first[0][0, 0] += 1.0
    assert second[0][0, 0] != first[0][0, 0] and w.init_weights()[0][0, 0] == second[0][0, 0]


def test_the_workloads_design_md_shuffles_are_shuffled():
    assert {s.id for s in workloads.SPECS.values() if s.shuffle} == {"W3", "W4", "W6"}
    assert workloads.get("W1", 0.001).orders() is None          # 0..n-1 every epoch


@pytest.mark.parametrize("workload_id", ["W3", "W6"])
def test_precomputed_orders_are_fits_permutations(workload_id):
    """The peers' orders: epoch e of the first fit after compile on a model seeded SEED."""
    w = workloads.get(workload_id, 0.05)
    orders = w.orders()
    assert orders.shape == (w.epochs, w.n) and orders.dtype == np.int64
    for e in range(w.epochs):
        assert np.array_equal(orders[e], shuffle.permutation(workloads.SEED, e, w.n))


def _max_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - y))) for x, y in zip(a, b))


def test_every_densefit_run_visits_the_precomputed_orders():
    """compile restarts the epoch count, so each run of a densefit trainer visits epochs 0..E-1
    (not E..2E-1): the same weights each time, those of the tutorial loop on ``w.orders()``,
    which differ from those in order 0..n-1."""
    w = workloads.get("W6", 0.05)
    run = peers.setup(peers.REFERENCE, w)
    first, second = run(), run()
    tutorial = peers.setup("numpy-tutorial", w)()
    in_order = numpy_tutorial.train(w.X, w.Y, w.init_weights(), w.loss, w.optimizer, w.lr, w.momentum,
                                    w.batch_size, w.epochs)
    assert _max_diff(first, second) == 0.0
    assert _max_diff(tutorial, first) < 1e-12
    assert _max_diff(in_order, first) > 1e-4


@pytest.mark.parametrize("workload_id, scale", [("W1", 0.001), ("W6", 0.05)])
@pytest.mark.parametrize("name", [n for n in peers.NAMES if n not in (peers.REFERENCE, "sklearn")])
def test_every_peer_visits_fits_orders(name, workload_id, scale):
    """A peer that visits exactly fit's orders (W1: 0..n-1; W6: shuffled) ends on densefit
    numpy's weights to rounding (W6 is float64; in a different order it is off by more than 1e-4,
    see above), and passes its check."""
    w = workloads.get(workload_id, scale)
    reason = peers.unavailable(name, w)
    if reason:
        pytest.skip(reason)
    reference = peers.setup(peers.REFERENCE, w)()
    weights = peers.setup(name, w)()
    assert _max_diff(weights, reference) < (1e-9 if w.dtype == "float64" else 1e-5)
    assert peers.check(name, w, workloads.evaluate(w, weights), workloads.evaluate(w, reference)) is None


@pytest.mark.parametrize("name", ["numba-loop", "sklearn"])
def test_mlp_peers_visit_fits_orders(name):
    """The numba loop's 2-D views path (each batch's rows gathered) and MLPClassifier's
    partial_fit per epoch on X[order], on a small W3 (float32: in order 0..n-1 the weights end
    1e-3 away)."""
    w = workloads.make("W3", 300, 2)
    reason = peers.unavailable(name, w)
    if reason:
        pytest.skip(reason)
    reference = peers.setup(peers.REFERENCE, w)()
    in_order = numpy_tutorial.train(w.X, w.Y, w.init_weights(), w.loss, w.optimizer, w.lr, w.momentum,
                                    w.batch_size, w.epochs)
    assert _max_diff(peers.setup(name, w)(), reference) < 1e-5 < _max_diff(in_order, reference)
