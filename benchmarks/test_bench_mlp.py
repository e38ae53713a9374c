"""W3 mlp-small (32-64-64-1, SGD momentum) and W4 mlp-medium (784-256-256-10, Adam):
GEMM-bound training; ``extra_info`` has the achieved GFLOP/s."""

import pytest


@pytest.mark.parametrize("workload", ["W3", "W4"])
def test_mlp(verify_then_time, workload, peer):
    verify_then_time(peer, workload)
