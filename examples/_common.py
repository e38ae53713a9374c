"""What every example shares: the command line, saving figures, printing results.

Each example runs as ``python examples/NAME.py [--out DIR] [--quick]``: ``--out`` is where its
PNG files go (default ``examples/figures``), ``--quick`` shrinks data and epochs to a few
seconds for CI. Results are printed one per line as ``name = value`` so scripts and tests can
read them.
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")  # no display needed; before matplotlib is imported

import matplotlib.pyplot as plt  # noqa: E402


def parse_args(description: str) -> argparse.Namespace:
    """``--out DIR`` (created) and ``--quick`` of one example; ``description`` is its docstring."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "figures",
                        help="folder for the PNG files (default: examples/figures)")
    parser.add_argument("--quick", action="store_true", help="small data and few epochs (for CI)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def save(fig, args: argparse.Namespace, name: str) -> Path:
    """Write ``fig`` to ``args.out / name`` and say so (``figure = PATH``)."""
    path = args.out / name
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"figure = {path}")
    return path


def report(**values) -> None:
    """Print each result as ``name = value``."""
    for name, value in values.items():
        print(f"{name} = {value:.6g}" if isinstance(value, float) else f"{name} = {value}")
