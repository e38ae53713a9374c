"""The C++ backend: :mod:`densefit._core` runs whole epochs with the GIL released.

This module only adapts the backend interface of :mod:`densefit.backends` to the bound
functions: the :class:`~densefit.plan.Plan` is decoded into a ``_core.Net`` once per plan (plans
are immutable) and the numpy arrays are passed as they are: ``X`` and ``y`` in any layout and
never copied or written, the state arrays updated in place; ``sample_weight`` is the contiguous
``(n,)`` array of the plan's dtype the dispatcher makes of the user's weights (the core checks it
again and refuses anything else). Importing it raises ``ImportError``
when the compiled core is missing, so the dispatcher falls back to another backend.
"""

from __future__ import annotations

import weakref

import numpy as np

from .. import _core
from ..plan import Plan, State
from ..shuffle import Shuffle

_nets: "weakref.WeakKeyDictionary[Plan, _core.Net]" = weakref.WeakKeyDictionary()


def _net(plan: Plan) -> _core.Net:
    net = _nets.get(plan)
    if net is None:
        net = _nets[plan] = _core.Net(plan.dtype, plan.ops, plan.op_params, plan.loss, plan.output_activation,
                                      plan.optimizer, plan.opt_params, plan.seed, plan.n_params,
                                      plan.n_stats, bool(plan.penalty_per_weight))
    return net


def _row_indices(orders):
    if orders is None or isinstance(orders, Shuffle):
        return None
    orders = np.asarray(orders)
    if orders.dtype != np.int64 and orders.dtype.kind in "iu":
        orders = orders.astype(np.int64)
    return orders


# The core computes each epoch's order from a Shuffle spec itself (shuffle.hpp).
SHUFFLES = True

# The finiteness of X is checked batch by batch while the first epoch reads it (see train_epochs).
CHECKS_FINITE_IN_PASS = True


def train_epochs(plan: Plan, state: State, X, y, orders, lrs: np.ndarray, batch_size: int,
                 check_finite: bool = False, sample_weight: np.ndarray | None = None,
                 progress: np.ndarray | None = None, cancel: np.ndarray | None = None) -> np.ndarray:
    spec = orders if isinstance(orders, Shuffle) else None
    return _core.train_epochs(_net(plan), state.params, state.slots, state.stats, X, y, _row_indices(orders), lrs,
                              batch_size, state.step, bool(check_finite), sample_weight, progress, cancel,
                              shuffle_seed=None if spec is None else spec.seed,
                              first_epoch=0 if spec is None else spec.first_epoch)


def predict(plan: Plan, state: State, X, batch_size: int, logits: bool = False) -> np.ndarray:
    return _core.predict(_net(plan), state.params, state.stats, X, batch_size, bool(logits))


def loss_and_grad(plan: Plan, state: State, X, y, sample_weight: np.ndarray | None = None):
    return _core.loss_and_grad(_net(plan), state.params, state.stats, X, y, state.step, sample_weight)
