"""Ctrl-C inside a long fit, in a child process, on every backend: KeyboardInterrupt arrives
while an epoch runs (not when the backend call ends), the model is exactly as after its last
completed epoch (a fresh model trained that many epochs equals it bit for bit), and fit goes on
from there."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import densefit as df

    backend, rows = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 32)).astype(np.float32)
    y = X[:, :4] @ rng.normal(size=(4, 1)).astype(np.float32)

    def build():
        model = df.Sequential([df.Dense(128, activation="relu", input_dim=32), df.BatchNorm(),
                               df.Dense(128, activation="relu"), df.Dense(1)], seed=0, backend=backend)
        model.compile("mse", df.Adam(1e-3))
        return model

    warm = build()
    warm.fit(X[:512], y[:512], epochs=1, batch_size=256, verbose=0)  # compiles numba's kernel before timing
    model = build()
    start = time.time()
    model.fit(X, y, epochs=1, batch_size=256, verbose=0)
    print(json.dumps({"ready": True, "epoch_seconds": time.time() - start}), flush=True)
    try:
        model.fit(X, y, epochs=10_000, batch_size=256, verbose=0)
    except KeyboardInterrupt:
        caught = time.time()
    else:
        raise SystemExit("the fit was not interrupted")
    fresh = build()
    fresh.fit(X, y, epochs=model.epoch, batch_size=256, verbose=0)
    same = all(np.array_equal(a, b) for a, b in zip(
        (model.state.params, model.state.slots, model.state.stats), (fresh.state.params, fresh.state.slots,
                                                                       fresh.state.stats)))
    epoch = model.epoch
    model.fit(X[:1024], y[:1024], epochs=1, batch_size=256, verbose=0)  # fit goes on from there
    print(json.dumps({"caught": caught, "epoch": epoch, "step": fresh.step, "same": same,
                      "after": model.epoch}), flush=True)
""")


@pytest.mark.parametrize("backend", ["cpp", "numba", "numpy"])
def test_ctrl_c_inside_a_long_epoch(backend):
    import densefit as df
    if backend not in df.available_backends():
        pytest.skip(f"{backend} is not available here")
    rows = {"cpp": 300_000, "numba": 150_000, "numpy": 60_000}[backend]
    child = subprocess.Popen([sys.executable, "-c", CHILD, backend, str(rows)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        ready = json.loads(child.stdout.readline())
        # into the middle of the second epoch of the long fit (the first ran at this pace)
        time.sleep(1.5 * ready["epoch_seconds"])
        sent = time.time()
        child.send_signal(signal.SIGINT)
        report = json.loads(child.stdout.readline())
        assert child.wait(timeout=120) == 0
    finally:
        if child.poll() is None:
            child.kill()
    assert report["same"], report
    assert report["epoch"] >= 1 and report["after"] == report["epoch"] + 1
    # it arrived within the epoch under way, not after the 10,000-epoch call
    assert report["caught"] - sent < 10_000 * ready["epoch_seconds"]
    print(f"{backend}: Ctrl-C took effect after {report['caught'] - sent:.3f} s (epochs of "
          f"{ready['epoch_seconds']:.2f} s)")
