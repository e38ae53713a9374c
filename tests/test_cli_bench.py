"""``densefit bench``: the benchmark report through the command line, at a tiny scale (a few
seconds). Only the shape of the report is checked, never a timing."""

import importlib.util

import densefit as df
from densefit import cli

COMMAND = ["bench", "--scale", "0.001", "--workloads", "W1,W6", "--peers", "densefit-numpy,densefit-cpp",
           "--rounds", "1"]


def _table(text: str, heading: str) -> list[list[str]]:
    """The rows (cells) of the markdown table under the line starting with ``heading``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows = []
    for line in lines[start + 1:]:
        if rows and not line.startswith("|"):
            break
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_bench_prints_a_row_per_workload_and_trainer_with_ratios(capsys, tmp_path):
    out, png = tmp_path / "bench.md", tmp_path / "bench.png"
    assert cli.main(COMMAND + ["--out", str(out), "--png", str(png)]) == 0
    text = capsys.readouterr().out
    assert out.read_text().strip() == text.strip()
    if importlib.util.find_spec("matplotlib") is not None:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    summary = _table(text, "Samples per second")
    assert summary[0] == ["workload", "densefit-numpy", "densefit-cpp"]
    assert [row[0] for row in summary[1:]] == ["W1 seed-sgd", "W6 linreg-f64"]
    assert "densefit bench --scale 0.001" in text                  # the command that made it

    for heading in ("### W1 seed-sgd", "### W6 linreg-f64"):
        head, *rows = _table(text, heading)
        assert head[:4] == ["trainer", "samples/s", "× torch eager", "× densefit-numpy"]
        by_name = {row[0]: dict(zip(head, row)) for row in rows}
        assert set(by_name) == {"densefit-numpy", "densefit-cpp"}
        numpy_row, cpp_row = by_name["densefit-numpy"], by_name["densefit-cpp"]
        assert numpy_row["× densefit-numpy"] == "1×" and numpy_row["check"] == "reference"
        assert numpy_row["× torch eager"] == ""                    # torch was not asked for
        if "cpp" in df.available_backends():
            assert cpp_row["× densefit-numpy"].endswith("×") and cpp_row["check"] == "ok"
        else:
            assert cpp_row["check"] == "skipped"
