"""densefit's benchmarks: the workloads W1–W6 of DESIGN.md, the peers that train them
(PyTorch, JAX, scikit-learn, a hand-written numba loop) and the scripts that measure them.
Not imported by ``import densefit``; the peers are optional (the ``bench`` extra).

- :mod:`.workloads`: W1–W6 as data; :mod:`.peers`: one trainer per peer;
  :mod:`.numba_loops`: the hand-written numba peer; :mod:`.numpy_tutorial`: the teaching
  material's numpy loop as a peer; :mod:`.threads_env`: one thread count for every library.
- :mod:`.report`: the markdown table (and PNG chart) of every trainer on every workload,
  ``python -m densefit.bench.report`` or ``densefit bench``.
- :mod:`.matrix`: the benchmark matrix beside W1–W6 (every activation and optimizer, narrow /
  wide / deep networks, batch 1 to 1024, BatchNorm, Dropout, float32/float64, softmax, a 5M-row
  stream; shuffled as ``fit`` does) against PyTorch eager and JAX, ``python -m
  densefit.bench.matrix`` or ``densefit bench --matrix``.
- Measurements, each ``python -m densefit.bench.<name>`` printing a markdown section:
  :mod:`.memory` (peak RSS of ``fit`` on W5, and on a 4 GB memmap), :mod:`.scaling` (epoch
  time against rows, read bandwidth), :mod:`.startup` (import and first-call overhead),
  :mod:`.threads` (cpp samples/s with 1 and 2 threads); :mod:`.proc` holds their helpers.
"""
