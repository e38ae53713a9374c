"""The benchmark matrix (``densefit.bench.matrix``, ``densefit bench --matrix``) in ``--quick``
mode on a few rows: the table has every column, every trainer's check passes (and its final
weights are those of densefit's numpy backend up to rounding: the same shuffled orders, dropout
masks and updates), and the rows cover every dimension the issue lists. Never a timing."""

import importlib.util

import pytest

import densefit as df
from densefit import activations, cli
from densefit.bench import matrix

# BatchNorm + Dropout (float32, SGD, batch 32), batch 1 in float64 with momentum, AdamW (the
# torch peer's param groups), multinomial softmax with Adam at batch 256.
QUICK_ROWS = ["bn-dropout-gelu-b32", "tanh-b1-f64", "elu-adamw-b256", "tanh-softmax-b256"]


def _available(trainers):
    return [t for t in trainers if matrix.unavailable(t) is None]


def _table(text: str) -> list[list[str]]:
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and not line.startswith("|---")]
    assert rows, text
    return rows


def test_rows_cover_every_dimension():
    rows = list(matrix.ROWS.values())
    assert 20 <= len(rows) <= 30
    assert len({r.name for r in rows}) == len(rows)
    assert set(matrix.ACTIVATIONS) <= set(activations.CODES)
    assert {r.activation for r in rows} == set(matrix.ACTIVATIONS) == {
        "relu", "tanh", "sigmoid", "gelu", "elu", "softplus", "leaky_relu", "identity"}
    assert {r.optimizer for r in rows} == set(matrix.OPTIMIZERS) == {
        "sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad"}
    assert {1, 32, 256, 1024} <= {r.batch_size for r in rows}
    assert {r.dtype for r in rows} == {"float32", "float64"}
    assert {e for r in rows for e in r.extras} == {"batchnorm", "dropout"}
    assert any(r.loss == matrix.CCE and r.widths[-1] > 2 for r in rows)          # multinomial softmax
    assert any(r.rows >= 5_000_000 for r in rows)                                # the stream
    hidden = [r.widths[1:-1] for r in rows]
    assert any(max(h) <= 32 for h in hidden)                                     # narrow
    assert any(max(h) >= 1024 for h in hidden)                                   # wide
    assert any(len(h) >= 6 for h in hidden)                                      # deep
    for r in rows:
        assert r.flops_per_sample == 6 * sum(a * b for a, b in zip(r.widths[:-1], r.widths[1:]))
        quick = r.quick()
        assert quick.rows <= max(600, 2 * r.batch_size + 37) and quick.epochs <= 2 and max(quick.widths[1:-1]) <= 64


def test_peer_ops_match_densefit_layers():
    """The peers' op list has densefit's dropout positions and weight layout."""
    for row in matrix.ROWS.values():
        layers = matrix.densefit_layers(row)
        for op in matrix.ops(row):
            if op[0] == "dropout":
                assert isinstance(layers[op[2]], df.Dropout)
        weights = sum(2 for op in matrix.ops(row) if op[0] in ("dense", "bn"))
        assert weights == sum(2 for layer in layers if isinstance(layer, (df.Dense, df.BatchNorm)))


def test_quick_matrix_table_and_checks():
    if matrix.unavailable("numpy") or matrix.unavailable("cpp"):
        pytest.skip("densefit's numpy or cpp backend is unavailable")
    trainers = _available(matrix.DEFAULT_TRAINERS)
    rows = matrix.selected_rows(",".join(QUICK_ROWS), quick=True)
    lines, results = matrix.markdown(rows, trainers, 1, None, "test", quick=True, log=lambda line: None)
    text = "\n".join(lines)
    head, *body = _table(text)
    assert head == matrix.HEAD + [f"{t} samples/s" for t in trainers] + matrix.RATIO_COLUMNS
    assert [line[0] for line in body] == QUICK_ROWS
    for line in body:
        assert len(line) == len(head)
        cells = dict(zip(head, line))
        for t in trainers:
            assert cells[f"{t} samples/s"] not in ("", "—"), (t, line)
        assert cells["check"] == "ok", line
        assert cells["cpp GFLOP/s"] and cells["% of peak"].endswith("%")
        if set(trainers) & set(matrix.PEERS):
            assert cells["cpp / best peer"].endswith("×")
        if "numba" in trainers:
            assert cells["numba / cpp"].endswith("×")
    for dtype in {result["row"].dtype for result in results}:
        assert f"{dtype} GEMM peak" in text
    for result in results:
        row = result["row"]
        assert result["reference"] is not None
        for name in trainers:
            entry = result["trainers"][name]
            assert entry["check"] == "ok", (row.name, name, entry)
            assert entry["samples_per_s"] > 0
            # short quick trajectories: same orders, masks and updates give the same weights up to rounding
            assert entry["weight_diff"] < (1e-9 if row.dtype == "float64" else 1e-3), (row.name, name, entry)


@pytest.mark.skipif(importlib.util.find_spec("densefit._core") is None, reason="no C++ core")
def test_densefit_bench_matrix_command(capsys, tmp_path):
    out = tmp_path / "matrix.md"
    assert cli.main(["bench", "--matrix", "--quick", "--rows", "relu-narrow-b32", "--trainers", "cpp",
                     "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.read_text().strip() == text.strip()
    head, line = _table(text)
    assert head[:len(matrix.HEAD)] == matrix.HEAD and "cpp samples/s" in head
    assert line[0] == "relu-narrow-b32" and line[-1] == "ok"
    assert "densefit bench --matrix" in text


def test_percent_of_peak_is_against_the_rows_dtype():
    """A float64 row's GFLOP/s is set against the float64 (dgemm) peak, a float32 row's against sgemm's."""
    rows = [matrix.Row("a", (4, 4, 1), "relu", "sgd", 32), matrix.Row("b", (4, 4, 1), "relu", "sgd", 32, "float64")]
    results = [{"row": row, "reference": None, "trainers": {"cpp": {"samples_per_s": 1e6, "gflops": 50.0}}}
               for row in rows]
    head, *body = _table("\n".join(matrix.table(results, ["cpp"], {"float32": 200.0, "float64": 100.0})))
    assert [dict(zip(head, line))["% of peak"] for line in body] == ["25%", "50%"]
