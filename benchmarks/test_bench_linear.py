"""W5 wide-logreg (1,000,000 × 100, one epoch; ``extra_info`` has the GB/s of X read) and W6
linreg-f64 (y = 6 + 4x + ε in float64)."""

import pytest


@pytest.mark.parametrize("workload", ["W5", "W6"])
def test_linear(verify_then_time, workload, peer):
    verify_then_time(peer, workload)
