"""The measurement scripts of densefit.bench (scaling, threads) and their helpers, at tiny
sizes: their output has the expected shape. No timing is checked."""

import os

import numpy as np
import pytest

from densefit.bench import proc, scaling, threads


def test_fit_line_of_an_exact_line():
    a, b, r2 = scaling.fit_line([1e5, 1e6, 1e7], [0.01 + 2e-8 * n for n in (1e5, 1e6, 1e7)])
    assert a == pytest.approx(0.01) and b == pytest.approx(2e-8) and r2 == pytest.approx(1.0)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_peak_sees_an_allocation():
    with proc.Peak() as peak:
        block = np.ones(64 * proc.MB // 8)
    del block
    assert peak.peak - peak.before["VmRSS"] >= 60 * proc.MB
    assert {"VmRSS", "RssAnon", "RssFile"} <= set(peak.peaks)


def test_table():
    assert proc.table(["a", "b"], [[1, "x"]]) == ["| a | b |", "|---|---|", "| 1 | x |"]


def test_scaling_prints_a_row_per_size(capsys):
    assert scaling.main(["--rows", "1000,2000,4000", "--repeats", "1", "--read-gb", "0.01"]) == 0
    text = capsys.readouterr().out
    for rows in ("| 1,000 |", "| 2,000 |", "| 4,000 |"):
        assert rows in text
    assert "R² = " in text and "read bandwidth" in text


def test_threads_prints_a_ratio_per_workload(capsys):
    assert threads.main(["--workloads", "W1", "--rounds", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "| workload | 1 thread | 2 threads | 2 / 1 |" in lines
    row = next(line for line in lines if line.startswith("| W1 seed-sgd |"))
    assert row.endswith("× |") or "error" in row


def test_threads_times_nets_with_batchnorm_in_the_data_parallel_pass(capsys):
    assert threads.main(["--workloads", "", "--rounds", "1", "--alternate", "--nets", "16-64-1bn:256:600"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| 16-64-1bn, batch 256"))
    assert "(data_parallel pass)" in row and row.endswith("× |")


def test_sklearn_dropin_times_the_pipeline_and_the_estimator_alone(capsys):
    pytest.importorskip("sklearn")
    from densefit.bench import sklearn_dropin

    table = sklearn_dropin.run(rounds=1, rows=3000, sets=("load_breast_cancer", "synthetic")).splitlines()
    assert len(table) == 2 + 2  # header, rule, the two sets asked for
    for line in table[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 10 and cells[4].endswith("×") and cells[6].endswith("×")
        assert float(cells[4][:-1]) > 0 and float(cells[6][:-1]) > 0
        sk, dk = (float(v.split()[0]) for v in cells[5].split("/"))
        assert sk > 0 and dk > 0


def test_shuffle_cost_prints_a_row_per_workload_and_backend(capsys):
    from densefit.bench import shuffle_cost

    table = shuffle_cost.run(("W6",), ("cpp", "numpy"), rounds=1, scale=0.05).splitlines()
    assert len(table) == 2 + 2
    for line in table[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == "W6" and cells[4].endswith("×") and float(cells[4][:-1]) > 0


def test_blas_threads_prints_a_row_per_backend_and_net(capsys):
    from densefit.bench import blas_threads

    blas_threads.main(["--backends", "numpy", "--rounds", "1", "--nets", "4-8-1:16,3-5-5-1:8"])
    rows = capsys.readouterr().out.strip().splitlines()[2:]
    assert [row.split("|")[2].strip() for row in rows] == ["4-8-1", "3-5-5-1"]
    for row in rows:
        assert all(float(cell.replace(",", "")) > 0 for cell in row.strip("|").split("|")[3:])
