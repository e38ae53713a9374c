"""densefit: train dense neural networks (MLPs, logistic and linear regression) on the CPU, fast.

One network description, three interchangeable backends with the same math: ``cpp`` (C++17,
whole epochs without the GIL), ``numba`` and ``numpy``. See :func:`backend_info`.
"""

from . import activations, callbacks, datasets, initializers, losses, metrics, optimizers, regularizers, schedules
from .backends import available_backends, backend_info
from .layers import Activation, BatchNorm, Dense, Dropout
from .model import History, Sequential, TrainingDiverged, load_model
from .optimizers import SGD, Adagrad, Adam, AdamW, RMSprop
from .regularizers import l1, l1_l2, l2
from .schedules import (Constant, CosineDecay, ExponentialDecay, InverseTimeDecay, LambdaSchedule, StepDecay)
from .threads import get_num_threads, set_num_threads

__version__ = "0.1.0"


def __getattr__(name):
    # densefit.sklearn imports scikit-learn: loaded on first use, not with densefit; densefit.plot
    # (matplotlib) and densefit.sweep (tqdm; pandas and distributed when asked) likewise
    if name in ("sklearn", "plot", "sweep"):
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'densefit' has no attribute {name!r}")

__all__ = [
    "Sequential", "History", "TrainingDiverged", "load_model",
    "Dense", "Activation", "Dropout", "BatchNorm",
    "SGD", "Adam", "AdamW", "RMSprop", "Adagrad",
    "Constant", "ExponentialDecay", "StepDecay", "InverseTimeDecay", "CosineDecay", "LambdaSchedule",
    "l1", "l2", "l1_l2",
    "available_backends", "backend_info", "set_num_threads", "get_num_threads",
    "activations", "callbacks", "datasets", "initializers", "losses", "metrics", "optimizers", "regularizers", "schedules",
]
