"""scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor`` as drop-in replacements for
``sklearn.neural_network``'s, trained by densefit's backends (change one import).

They take scikit-learn's constructor parameters with the same names, defaults and meanings
(``solver`` "adam" or "sgd"; "lbfgs" is not offered), plus densefit's ``backend``, ``dtype``,
``dropout``, ``batch_norm`` and, for the classifier, ``class_weight``. Training runs whole epochs in
the backend through a :class:`~densefit.Sequential`; the convergence rules (``tol``,
``n_iter_no_change``, ``early_stopping``, the adaptive learning rate) are applied between epochs
exactly as scikit-learn applies them.

How scikit-learn's objective maps onto densefit's (per batch, ``Σw`` the batch's total sample
weight, its size when unweighted)::

    scikit-learn:  J = Σ wᵢ ℓᵢ / Σw + ½ α ‖W‖² / Σw      (ℓ summed over outputs; squared error halved)
    densefit:      J' = c J                                (ℓ averaged over outputs)

with ``c = 1`` for softmax cross-entropy, ``1/K`` for K logistic outputs and ``2/K`` for K squared-
error outputs. So every Dense layer gets ``l2 = c α / 2`` with the penalty divided by the batch's
weight (``compile(penalty_per_weight=True)``), SGD's learning rate becomes ``lr / c`` and Adam's
epsilon ``c ε`` (Adam is otherwise invariant to the scale): the updates are scikit-learn's.
``loss_curve_`` reports scikit-learn's numbers: ``J' / c`` (classifier), ``J' / 2`` (regressor,
which equals scikit-learn's loss for one output or ``alpha=0``; with K > 1 outputs the penalty part
is ``1/K`` of scikit-learn's, whose loss averages the outputs while its gradient sums them).

Two documented differences remain, both from densefit's optimizers following PyTorch: Adam's
epsilon is added after the bias correction (scikit-learn adds it before, a difference of order ε),
and when the SGD learning rate changes (``invscaling``, ``adaptive``) the momentum buffer is scaled
by the new rate (scikit-learn's velocity keeps the old one). Initial weights are drawn exactly as
scikit-learn draws them (the same ``random_state`` gives the same initial network); the epochs'
sample orders come from densefit's own generator.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as _SkMLPClassifier
from sklearn.neural_network import MLPRegressor as _SkMLPRegressor
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, compute_sample_weight
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d, validate_data

from . import backends
from .layers import Activation, BatchNorm, Dense, Dropout
from .model import Sequential, TrainingDiverged
from .optimizers import SGD, Adam
from .plan import as_dtype
from .regularizers import l2
from .schedules import Constant

__all__ = ["MLPClassifier", "MLPRegressor"]

_HIDDEN_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_OUTPUT_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "softmax": "softmax"}
_LOSSES = {"identity": "mse", "logistic": "binary_crossentropy", "softmax": "categorical_crossentropy"}

# densefit's parameters, validated by scikit-learn's own machinery beside the inherited ones.
_EXTRA_CONSTRAINTS = {
    "solver": [StrOptions({"adam", "sgd"})],
    "backend": [StrOptions({"auto", *backends.NAMES})],
    "dtype": [StrOptions({"float32", "float64"}), type],
    "dropout": [numbers.Real],
    "batch_norm": ["boolean"],
}


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: building the network, the training loop with
    scikit-learn's stopping rules, the fitted attributes."""

    def _check_extras(self) -> None:
        """What scikit-learn's constraints cannot say (ranges, densefit's dtypes)."""
        as_dtype(self.dtype)
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        sizes = self._hidden_sizes()
        if any(h <= 0 for h in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")

    def _hidden_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        for h in sizes:
            if isinstance(h, bool) or not isinstance(h, numbers.Integral):
                raise ValueError(f"hidden_layer_sizes must hold integers, got {sizes}.")
        return [int(h) for h in sizes]

    # ---------------------------------------------------------------------------- the network
    def _scale(self) -> float:
        """``c`` of the module docstring: densefit's objective over scikit-learn's."""
        if self.out_activation_ == "softmax":
            return 1.0
        if self.out_activation_ == "logistic":
            return 1.0 / self.n_outputs_
        return 2.0 / self.n_outputs_

    def _optimizer(self):
        c = self._scale()
        if self.solver == "sgd":
            return SGD(self.learning_rate_init / c, momentum=self.momentum,
                       nesterov=bool(self.nesterovs_momentum and self.momentum > 0))
        return Adam(self.learning_rate_init, beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon * c)

    def _build(self, n_features: int, rs: np.random.RandomState) -> None:
        """A new network with scikit-learn's initial weights drawn from ``rs``."""
        hidden = self._hidden_sizes()
        act = _HIDDEN_ACTIVATIONS[self.activation]
        reg = l2(self._scale() * self.alpha / 2) if self.alpha > 0 else None
        layers, width = [], n_features
        for units in hidden:
            layers.append(Dense(units, activation="identity" if self.batch_norm else act, kernel_regularizer=reg,
                                input_dim=width if not layers else None))
            if self.batch_norm:
                layers.append(BatchNorm())
                if act != "identity":
                    layers.append(Activation(act))
            if self.dropout > 0:
                layers.append(Dropout(float(self.dropout)))
            width = units
        layers.append(Dense(self.n_outputs_, activation=_OUTPUT_ACTIVATIONS[self.out_activation_],
                            kernel_regularizer=reg, input_dim=width if not layers else None))
        units = [n_features] + hidden + [self.n_outputs_]
        # scikit-learn's Glorot-uniform draws, in its order (coef then intercept, layer by layer)
        factor = 2.0 if self.activation == "logistic" else 6.0
        drawn = []
        for fan_in, fan_out in zip(units[:-1], units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            drawn.append((rs.uniform(-bound, bound, (fan_in, fan_out)), rs.uniform(-bound, bound, fan_out)))
        # shuffling and dropout masks; an integer random_state is used as it is, so that rs next
        # splits off early stopping's validation set as scikit-learn's does
        seed = self.random_state if isinstance(self.random_state, numbers.Integral) else int(
            rs.randint(0, np.iinfo(np.int32).max))
        model = Sequential(layers, seed=seed, dtype=self.dtype, backend=self.backend)
        model.compile(_LOSSES[self.out_activation_], self._optimizer(), penalty_per_weight=True)
        self._model = model
        for (W, b), (W0, b0) in zip(self._dense_views(), drawn):  # BatchNorm's γ, β stay as built
            W[...], b[...] = W0, b0

    def _dense_views(self):
        """``(W, b)`` of each Dense layer (every one has a bias here): views of the model's flat
        parameters."""
        model = self._model
        dense = [w for w in model.plan.weights if isinstance(model.layers[w.layer], Dense)]
        for W, b in zip(dense[::2], dense[1::2]):
            yield W.view(model.state.params), b.view(model.state.params)

    @property
    def coefs_(self) -> list[np.ndarray]:
        """The Dense kernels: views of the trained weights (writable, never stale)."""
        if "_model" not in self.__dict__:
            raise AttributeError("coefs_ exists once the estimator is fitted")
        return [W for W, _ in self._dense_views()]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """The Dense biases: views of the trained weights."""
        if "_model" not in self.__dict__:
            raise AttributeError("intercepts_ exists once the estimator is fitted")
        return [b for _, b in self._dense_views()]

    def __sklearn_is_fitted__(self) -> bool:
        return "_model" in self.__dict__

    # ---------------------------------------------------------------------------- fitting
    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``X``, ``y`` (``sample_weight``: one non-negative weight per row)."""
        self._validate_params()
        self._check_extras()
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight, incremental: bool, classes=None):
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = "_model" not in self.__dict__ or (not self.warm_start and not incremental)
        X, Y, y_labels = self._validate_input(X, y, incremental, first_pass, classes)
        n_samples, n_features = X.shape
        weights = self._sample_weight(sample_weight, X, y_labels)
        rs = check_random_state(self.random_state)
        if first_pass:
            self.n_outputs_ = Y.shape[1] if self._n_targets(Y) is None else self._n_targets(Y)
            self.n_layers_ = len(self._hidden_sizes()) + 2
            self.out_activation_ = self._out_activation()
            self._build(n_features, rs)
            self.n_iter_, self.t_ = 0, 0
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
            else:
                self.best_loss_, self.validation_scores_, self.best_validation_score_ = np.inf, None, None
            self._learning_rate = self.learning_rate_init
            # early stopping restores the best weights seen, the initial ones until an epoch scores
            self._best_params = self._model.state.params.copy()
            self._best_stats = self._model.state.stats.copy()
        elif not incremental:  # warm start: the weights stay, the optimizer starts afresh (as scikit-learn)
            if self._n_targets(Y) is not None and self._n_targets(Y) != self.n_outputs_:
                raise ValueError(f"y has {self._n_targets(Y)} outputs, the fitted network {self.n_outputs_}")
            self._model.compile(self._model.loss, self._optimizer(), penalty_per_weight=True)
            self._learning_rate = self.learning_rate_init
        self._train(X, Y, y_labels, weights, rs, incremental)
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        return self

    def _sample_weight(self, sample_weight, X, y_labels):
        weights = None if sample_weight is None else _check_sample_weight(sample_weight, X, dtype=np.float64)
        class_weight = getattr(self, "class_weight", None)
        if class_weight is not None:
            per_row = compute_sample_weight(class_weight, y_labels)
            weights = per_row if weights is None else weights * per_row
        return weights

    def _train(self, X, Y, y_labels, weights, rs, incremental: bool) -> None:
        """scikit-learn's ``_fit_stochastic`` loop over epochs, the epochs run by the backend."""
        model = self._model
        if self.early_stopping:
            # as scikit-learn: stratified for single-output classifiers (binary), not for multiclass
            stratify = y_labels if is_classifier(self) and self.n_outputs_ == 1 else None
            parts = train_test_split(X, Y, y_labels, *(() if weights is None else (weights,)),
                                     random_state=rs, test_size=self.validation_fraction, stratify=stratify)
            X, X_val, Y, _, _, y_val = parts[:6]
            weights, w_val = (parts[6], parts[7]) if weights is not None else (None, None)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                                 "or the size of your dataset.")
        n_samples = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        c = self._scale()
        loss_factor = (1 / c) if is_classifier(self) else 0.5
        # Epochs handed to one backend call: the stopping rule can only fire once the no-improvement
        # count exceeds n_iter_no_change, so that many epochs may run before Python must look; per
        # epoch when something must happen after every epoch.
        per_epoch = (incremental or self.early_stopping or self.verbose
                     or (self.solver == "sgd" and self.learning_rate == "invscaling"))
        self.n_iter_ = 0
        try:
            while self.n_iter_ < self.max_iter:
                room = self.n_iter_no_change + 1 - self._no_improvement_count
                count = 1 if per_epoch else max(1, min(room, self.max_iter - self.n_iter_))
                lr = self._learning_rate / c if self.solver == "sgd" else self._learning_rate
                model.optimizer.learning_rate = Constant(lr)
                try:
                    history = model.fit(X, Y, epochs=count, batch_size=batch_size, shuffle=bool(self.shuffle),
                                        verbose=0, sample_weight=weights)
                except TrainingDiverged:  # scikit-learn's error for the same event
                    raise ValueError("Solver produced non-finite parameter weights. The input data may contain "
                                     "large values and need to be preprocessed.") from None
                stop = False
                for value in history.history["loss"]:
                    self.n_iter_ += 1
                    self.loss_ = float(value) * loss_factor
                    self.t_ += n_samples
                    self.loss_curve_.append(self.loss_)
                    if self.verbose:
                        print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
                    if self.early_stopping:
                        self._record_validation(X_val, y_val, w_val)
                    else:
                        self._record_loss()
                    if self.solver == "sgd" and self.learning_rate == "invscaling":
                        self._learning_rate = self.learning_rate_init / (self.t_ + 1) ** self.power_t
                    if self._no_improvement_count > self.n_iter_no_change:
                        stop = self._trigger_stopping()
                        if not stop:
                            self._no_improvement_count = 0
                    if stop:
                        break
                    if self.n_iter_ == self.max_iter and not incremental:
                        warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the optimization "
                                      "hasn't converged yet." % self.max_iter, ConvergenceWarning)
                if stop or incremental:
                    break
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        if self.early_stopping:
            model.state.params[:] = self._best_params
            model.state.stats[:] = self._best_stats

    def _record_loss(self) -> None:
        if self.loss_curve_[-1] > self.best_loss_ - self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if self.loss_curve_[-1] < self.best_loss_:
            self.best_loss_ = self.loss_curve_[-1]

    def _record_validation(self, X_val, y_val, w_val) -> None:
        predicted = self._predict_array(X_val)
        if np.issubdtype(predicted.dtype, np.floating) and not np.isfinite(predicted).all():
            score = np.nan
        else:
            score = self._score_function(y_val, predicted, sample_weight=w_val)
        self.validation_scores_.append(score)
        if self.verbose:
            print("Validation score: %f" % score)
        if score < self.best_validation_score_ + self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            self._best_params = self._model.state.params.copy()
            self._best_stats = self._model.state.stats.copy()

    def _trigger_stopping(self) -> bool:
        """scikit-learn's optimizers' ``trigger_stopping``: adaptive SGD divides the rate by 5."""
        if self.early_stopping:
            msg = "Validation score did not improve more than tol=%f for %d consecutive epochs." % (
                self.tol, self.n_iter_no_change)
        else:
            msg = "Training loss did not improve more than tol=%f for %d consecutive epochs." % (
                self.tol, self.n_iter_no_change)
        if self.solver != "sgd" or self.learning_rate != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if self._learning_rate <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self._learning_rate /= 5.0
        if self.verbose:
            print(msg + " Setting learning rate to %f" % self._learning_rate)
        return False

    # ---------------------------------------------------------------------------- prediction
    def _check_X(self, X) -> np.ndarray:
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        return X.toarray() if sparse.issparse(X) else X

    def _raw_output(self, X) -> np.ndarray:
        """The network's output (probabilities for logistic/softmax) on validated ``X``."""
        return self._model.predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: ``sklearn.neural_network.MLPClassifier``'s parameters,
    attributes and methods, trained by densefit (see the module docstring).

    densefit's extras: ``backend`` ("auto", "cpp", "numba", "numpy"), ``dtype`` ("float32" or
    "float64"), ``dropout`` (a rate after every hidden layer), ``batch_norm`` (BatchNorm after every
    hidden Dense layer, before its activation) and ``class_weight`` (a dict ``{label: weight}`` or
    "balanced", multiplying ``sample_weight``).
    """

    _parameter_constraints = {**_SkMLPClassifier._parameter_constraints, **_EXTRA_CONSTRAINTS,
                              "class_weight": [dict, StrOptions({"balanced"}), None]}

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000, backend="auto", dtype="float32", dropout=0.0,
                 batch_norm=False, class_weight=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.dtype = dtype
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.class_weight = class_weight

    _score_function = staticmethod(accuracy_score)

    def _validate_input(self, X, y, incremental, first_pass, classes):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=first_pass)
        if sparse.issparse(X):
            X = X.toarray()
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if incremental and classes is not None and "_model" not in self.__dict__:
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
            self.classes_ = self._label_binarizer.classes_
            self._check_known_labels(y)
        elif "_label_binarizer" not in self.__dict__ or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            labels = unique_labels(y)
            if self.warm_start and not incremental:
                if set(labels) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes as in the previous "
                                     f"call to fit. Previously got {self.classes_}, `y` has {labels}")
            else:
                self._check_known_labels(y)
        return X, self._encode_labels(y), y

    def _encode_labels(self, y) -> np.ndarray:
        """The training targets of known labels ``y``: class indices (multiclass: no K-wide
        targets), else the binarizer's indicator columns. The 1-D cases look the labels up in the
        sorted ``classes_`` directly: the binarizer's transform would find y's unique labels again
        and check them, which costs more than the epochs on a large y."""
        binarizer = self._label_binarizer
        if binarizer.y_type_ == "multiclass":
            return np.searchsorted(binarizer.classes_, y).reshape(-1, 1).astype(np.float64)
        if binarizer.y_type_ == "binary" and y.ndim == 1 and len(binarizer.classes_) == 2:
            return (y == binarizer.classes_[1]).reshape(-1, 1).astype(np.float64)
        return binarizer.transform(y).astype(np.float64)

    def _check_known_labels(self, y) -> None:
        labels = unique_labels(y)
        if len(np.setdiff1d(labels, self.classes_, assume_unique=True)):
            raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                             f"'y' has {labels}.")

    def _n_targets(self, Y):
        return len(self.classes_) if self._label_binarizer.y_type_ == "multiclass" else Y.shape[1]

    def _out_activation(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``X``, ``y``; ``classes`` (every label) is required on the first call."""
        if _check_partial_fit_first_call(self, classes):
            self._validate_params()
            self._check_extras()
            self.__dict__.pop("_model", None)
            return self._fit(X, y, sample_weight, incremental=True, classes=classes)
        return self._fit(X, y, sample_weight, incremental=True)

    def _predict_array(self, X) -> np.ndarray:
        raw = self._raw_output(X)
        if self.n_outputs_ == 1:
            raw = raw.ravel()
        return self._label_binarizer.inverse_transform(raw)

    def predict(self, X):
        """The predicted labels (an indicator matrix for multilabel targets)."""
        check_is_fitted(self)
        return self._predict_array(self._check_X(X))

    def predict_proba(self, X):
        """Probability of each class, columns in ``classes_`` order."""
        check_is_fitted(self)
        raw = self._raw_output(self._check_X(X))
        if self.n_outputs_ == 1:
            p = raw.ravel()
            return np.vstack([1 - p, p]).T
        return raw

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``."""
        proba = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: ``sklearn.neural_network.MLPRegressor``'s parameters,
    attributes and methods (``loss="squared_error"``; "poisson" is not offered), trained by
    densefit (see the module docstring). Extras as :class:`MLPClassifier`'s, without class_weight.
    """

    _parameter_constraints = {**_SkMLPRegressor._parameter_constraints, **_EXTRA_CONSTRAINTS,
                              "loss": [StrOptions({"squared_error"})]}

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, backend="auto", dtype="float32",
                 dropout=0.0, batch_norm=False):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.dtype = dtype
        self.dropout = dropout
        self.batch_norm = batch_norm

    _score_function = staticmethod(r2_score)

    def _validate_input(self, X, y, incremental, first_pass, classes):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), reset=first_pass)
        if sparse.issparse(X):
            X = X.toarray()
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        return X, Y.astype(np.float64, copy=False), y

    def _n_targets(self, Y):
        return Y.shape[1]

    def _out_activation(self) -> str:
        return "identity"

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``X``, ``y``."""
        if "_model" not in self.__dict__:
            self._validate_params()
            self._check_extras()
        return self._fit(X, y, sample_weight, incremental=True)

    def _predict_array(self, X) -> np.ndarray:
        raw = self._raw_output(X)
        return raw.ravel() if raw.shape[1] == 1 else raw

    def predict(self, X):
        """The predicted values, ``(n,)`` for one output, else ``(n, n_outputs)``."""
        check_is_fitted(self)
        return self._predict_array(self._check_X(X))
