"""The torch twin of a densefit network: the reference of the gradient and optimizer tests."""

import numpy as np
import torch
import torch.nn.functional as F

import densefit as df
from densefit import rng as dfrng

# The tensors here are tiny: torch's thread pool only adds wake-up latency (tens of ms per
# op on a loaded machine).
torch.set_num_threads(1)

ACTIVATIONS = {
    "identity": lambda x, alpha: x,
    "sigmoid": lambda x, alpha: torch.sigmoid(x),
    "tanh": lambda x, alpha: torch.tanh(x),
    "relu": lambda x, alpha: torch.relu(x),
    "leaky_relu": lambda x, alpha: F.leaky_relu(x, negative_slope=alpha),
    "elu": lambda x, alpha: F.elu(x, alpha=alpha),
    # torch's default threshold=20 returns x (gradient exactly 1) above 20, 2e-9 off the
    # exact log1p(exp(x)) of DESIGN.md; exact up to where exp overflows with a higher threshold.
    "softplus": lambda x, alpha: F.softplus(x, threshold=500.0),
    "gelu": lambda x, alpha: F.gelu(x, approximate="tanh"),
}
FUSED_OUTPUT = {"binary_crossentropy": "sigmoid", "categorical_crossentropy": "softmax"}


class TorchReference:
    """A densefit model's network rebuilt in torch (float64) from ``model.get_weights()``:
    ``torch.nn.Linear`` (weight = ``W.T``), ``torch.nn.BatchNorm1d`` (same γ, β, running
    statistics, momentum and eps), dropout with the mask of DESIGN.md (``self.step`` is the
    optimizer step ``t``), the kernel penalties added to the loss. ``params`` holds the torch
    leaf tensors in ``get_weights`` order, ready for ``torch.optim``."""

    def __init__(self, model):
        self.loss_name = model.loss
        self.seed = model.seed
        self.step = model.state.step
        self.dropout = True
        weights = iter(model.get_weights())
        stats = model.state.stats.astype(np.float64)
        width, stat_off = model.plan.n_features, 0
        self.ops, self.params, self.transposed, self.penalties, self.batchnorms = [], [], [], [], []
        for position, layer in enumerate(model.layers):
            fused = position == len(model.layers) - 1 and self.loss_name in FUSED_OUTPUT
            if isinstance(layer, df.Dense):
                linear = torch.nn.Linear(width, layer.units, bias=layer.use_bias, dtype=torch.float64)
                with torch.no_grad():
                    linear.weight.copy_(torch.from_numpy(next(weights).astype(np.float64).T))
                    if layer.use_bias:
                        linear.bias.copy_(torch.from_numpy(next(weights).astype(np.float64)))
                self._add_params([linear.weight] + ([linear.bias] if layer.use_bias else []), [True, False])
                reg = layer.kernel_regularizer
                if reg is not None:
                    self.penalties.append((linear.weight, reg.l1, reg.l2))
                self.ops.append(linear)
                width = layer.units
                if not fused:
                    self.ops.append(self._activation(layer.activation, layer.alpha))
            elif isinstance(layer, df.Activation):
                if not fused:
                    self.ops.append(self._activation(layer.activation, layer.alpha))
            elif isinstance(layer, df.Dropout):
                self.ops.append(self._dropout(position, layer.rate))
            elif isinstance(layer, df.BatchNorm):
                bn = torch.nn.BatchNorm1d(width, eps=layer.epsilon, momentum=layer.momentum, dtype=torch.float64)
                with torch.no_grad():
                    bn.weight.copy_(torch.from_numpy(next(weights).astype(np.float64)))
                    bn.bias.copy_(torch.from_numpy(next(weights).astype(np.float64)))
                    bn.running_mean.copy_(torch.from_numpy(stats[stat_off:stat_off + width]))
                    bn.running_var.copy_(torch.from_numpy(stats[stat_off + width:stat_off + 2 * width]))
                bn.train()
                stat_off += 2 * width
                self._add_params([bn.weight, bn.bias], [False, False])
                self.batchnorms.append(bn)
                self.ops.append(bn)
            else:
                raise TypeError(layer)
        assert next(weights, None) is None

    def _add_params(self, tensors, transposed):
        self.params.extend(tensors)
        self.transposed.extend(transposed[:len(tensors)])

    @staticmethod
    def _activation(name, alpha):
        fn = ACTIVATIONS[name]
        return lambda x: fn(x, alpha)

    def _dropout(self, position, rate):
        def apply(x):
            if rate == 0 or not self.dropout:
                return x
            m, width = x.shape
            u = dfrng.uniform(self.seed, self.step, position, np.arange(m * width)).reshape(m, width)
            return x * torch.from_numpy(u >= rate).to(torch.float64) / (1 - rate)
        return apply

    @property
    def kernels(self):
        """The Dense kernels (where AdamW decays and regularizers apply)."""
        return [p for p, t in zip(self.params, self.transposed) if t]

    @property
    def others(self):
        return [p for p, t in zip(self.params, self.transposed) if not t]

    def logits(self, X):
        x = torch.as_tensor(np.array(X, dtype=np.float64))
        for op in self.ops:
            x = op(x)
        return x

    def loss(self, X, y):
        """The training-mode batch loss (a torch scalar with a graph), penalty included."""
        z = self.logits(X)
        y = np.array(y)
        if self.loss_name == "mse":
            value = F.mse_loss(z, torch.as_tensor(y.reshape(z.shape), dtype=torch.float64))
        elif self.loss_name == "binary_crossentropy":
            value = F.binary_cross_entropy_with_logits(z, torch.as_tensor(y.reshape(z.shape), dtype=torch.float64))
        elif y.ndim == 1 or y.shape[1] == 1:
            value = F.cross_entropy(z, torch.as_tensor(y.reshape(-1).astype(np.int64)))
        else:
            value = F.cross_entropy(z, torch.as_tensor(y, dtype=torch.float64))
        for W, l1, l2 in self.penalties:
            value = value + l1 * W.abs().sum() + l2 * (W * W).sum()
        return value

    def loss_and_grad(self, X, y):
        for p in self.params:
            p.grad = None
        value = self.loss(X, y)
        value.backward()
        return value.item(), [np.zeros(tuple(p.shape[::-1]) if t else tuple(p.shape)) if p.grad is None else
                              (p.grad.T if t else p.grad).detach().numpy().copy()
                              for p, t in zip(self.params, self.transposed)]

    def weights(self):
        """The current parameters in ``get_weights`` order (numpy float64)."""
        return [(p.T if t else p).detach().numpy().copy() for p, t in zip(self.params, self.transposed)]

    def stats(self):
        """The BatchNorm running statistics in the layout of ``model.state.stats``."""
        parts = [np.concatenate([bn.running_mean.numpy(), bn.running_var.numpy()]) for bn in self.batchnorms]
        return np.concatenate(parts) if parts else np.zeros(0)


def randomize(model, rng, scale=0.7):
    """Replace every weight (biases, γ and β included) by a random normal value."""
    model.set_weights([rng.normal(0.0, scale, w.shape) for w in model.get_weights()])


def targets(loss, m, n_outputs, rng, one_hot=False):
    if loss == "mse":
        return rng.normal(size=(m, n_outputs))
    if loss == "binary_crossentropy":
        return (rng.random((m, n_outputs)) < 0.5).astype(np.float64)
    labels = rng.integers(0, n_outputs, m)
    return np.eye(n_outputs)[labels] if one_hot else labels
