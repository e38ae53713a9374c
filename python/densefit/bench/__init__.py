"""densefit's benchmarks: the workloads W1–W6 of DESIGN.md, the peers that train them
(PyTorch, JAX, scikit-learn, a hand-written numba loop) and the scripts that measure them.
Not imported by ``import densefit``; the peers are optional (the ``bench`` extra).

- :mod:`.workloads`: W1–W6 as data; :mod:`.peers`: one trainer per peer;
  :mod:`.numba_loops`: the hand-written numba peer; :mod:`.threads_env`: one thread count
  for every library.
- :mod:`.report`: the markdown table (and PNG chart) of every trainer on every workload,
  ``python -m densefit.bench.report`` or ``densefit bench``.
"""
