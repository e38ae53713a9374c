"""Every script in examples/ runs in quick mode, writes its figures and prints what it claims.

Each script runs in a child process (``python examples/NAME.py --quick --out DIR``), as a user
would run it. It prints one ``name = value`` line per result and ``figure = PATH`` per file
written; the checks below read those lines.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _claims_gradient_descent(r):
    assert r["gd_slope"] == pytest.approx(r["ols_slope"], abs=1e-6)
    assert r["gd_intercept"] == pytest.approx(r["ols_intercept"], abs=1e-6)
    assert r["ols_slope"] == pytest.approx(4, abs=0.5) and r["ols_intercept"] == pytest.approx(6, abs=0.5)


def _claims_moons(r):
    assert r["logistic_train_accuracy"] < 0.92
    assert r["mlp_train_accuracy"] >= 0.97 and r["mlp_test_accuracy"] >= 0.95


def _claims_batch_size(r):
    assert r["batch_1_final_loss"] < r["batch_32_final_loss"] < r["batch_full_final_loss"]
    assert min(r["batch_1_accuracy"], r["batch_32_accuracy"], r["batch_full_accuracy"]) >= 0.99


def _claims_momentum(r):
    assert r["momentum_final_loss"] < r["sgd_final_loss"] / 2
    assert max(r["exponential_jitter"], r["step_jitter"]) < r["momentum_jitter"]


def _claims_grid(r):
    assert r["runs"] == 9


def _claims_penalties(r):
    assert r["l2_max_coef_difference"] < 1e-8
    assert r["l1_max_coef_difference"] < 1e-3
    assert r["l1_zero_coefs_sklearn"] == r["l1_near_zero_coefs_densefit"] > 0


def _claims_overfitting(r):
    assert r["plain_train_loss"] < 0.1
    assert r["plain_val_loss"] > max(r["dropout_val_loss"], r["batchnorm_val_loss"])


def _claims_patterns(r):
    for kind in ("diamond", "circle", "square", "thick_right_angle"):
        assert r[f"{kind}_accuracy"] >= 0.9, kind


CLAIMS = {
    "01_gradient_descent_vs_ols.py": _claims_gradient_descent,
    "02_logistic_vs_mlp_moons.py": _claims_moons,
    "03_batch_size_clusters.py": _claims_batch_size,
    "04_momentum_and_decay.py": _claims_momentum,
    "05_learning_rate_batch_size_grid.py": _claims_grid,
    "06_l1_l2_vs_sklearn.py": _claims_penalties,
    "07_dropout_batchnorm_overfitting.py": _claims_overfitting,
    "08_patterns_four_hidden_units.py": _claims_patterns,
}


def test_examples_found():
    assert len(SCRIPTS) >= 8, SCRIPTS
    assert (EXAMPLES / "figures" / "overview.png").stat().st_size < 200_000


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_example_runs_quick(script, tmp_path):
    if "sklearn" in script.read_text():
        pytest.importorskip("sklearn")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    run = subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, f"{script.name} failed:\n{run.stdout}\n{run.stderr}"

    lines = dict(re.findall(r"^(\w+) = (.+)$", run.stdout, flags=re.MULTILINE))
    figures = [Path(p) for p in re.findall(r"^figure = (.+)$", run.stdout, flags=re.MULTILINE)]
    assert figures, f"{script.name} reported no figure:\n{run.stdout}"
    assert set(figures) == set(tmp_path.glob("*.png")), run.stdout
    for figure in figures:
        assert figure.read_bytes()[:8] == PNG_SIGNATURE, figure

    lines.pop("figure")
    results = {name: float(value) for name, value in lines.items()}
    check = CLAIMS.get(script.name)
    if check is not None:
        check(results)
