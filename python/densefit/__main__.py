"""``python -m densefit``: the same as the ``densefit`` command (:mod:`densefit.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":  # not when a spawned worker process (densefit sweep --n-jobs) imports this
    sys.exit(main())
