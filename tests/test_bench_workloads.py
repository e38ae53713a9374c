"""The benchmark workloads W1/W2 start from weights that can learn: at full size densefit
reaches accuracy ≥ 0.99 (the 2/3 of a stalled network would make the benchmarks' check of
every trainer against densefit's numpy backend meaningless). Uses the fastest backend here."""

import pytest

import densefit as df
from densefit.bench import peers, workloads

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
