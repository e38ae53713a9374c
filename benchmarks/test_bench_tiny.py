"""W1 seed-sgd (batch 1) and W2 seed-minibatch (batch 32): the 2-3-4-1 network, where
per-step overhead is everything."""

import pytest


@pytest.mark.parametrize("workload", ["W1", "W2"])
def test_tiny(verify_then_time, workload, peer):
    verify_then_time(peer, workload)
