"""The Plan's integer codes and table columns agree between Python and the C++ core.

Python defines them in densefit.activations, losses, optimizers and plan; the core in
cpp/include/densefit/codes.hpp, exported as ``_core.codes()`` ({concept: {constant name: value}}).
Every entry is compared both ways, and the core refuses any code outside its tables when it
decodes a plan (never a fall-through to some default case).
"""

from __future__ import annotations

import numpy as np
import pytest

_core = pytest.importorskip("densefit._core")

from densefit import activations as A  # noqa: E402
from densefit import losses as L  # noqa: E402
from densefit import optimizers as O  # noqa: E402
from densefit import plan as P  # noqa: E402
from densefit.layers import Activation, BatchNorm, Dense, Dropout  # noqa: E402

CODES = _core.codes()

# concept -> (Python module, the Python name of each C++ name where they differ)
MODULES = {
    "activation": (A, {}),
    "loss": (L, {}),
    "optimizer": (O, {"SGD": "SGD_"}),  # optimizers.SGD is the class
    "opt_params": (O, {}),
    "op_kind": (P, {}),
    "ops": (P, {}),
    "op_params": (P, {}),
}


def test_every_concept_is_exported():
    assert set(CODES) == set(MODULES)


@pytest.mark.parametrize("concept", sorted(MODULES))
def test_each_cpp_code_equals_the_python_constant(concept):
    module, renamed = MODULES[concept]
    assert CODES[concept], concept
    for name, code in CODES[concept].items():
        python_name = renamed.get(name, name)
        assert hasattr(module, python_name), f"{module.__name__} has no {python_name} (C++ {concept} {name} = {code})"
        assert getattr(module, python_name) == code, f"{concept} {name}: Python {getattr(module, python_name)}, C++ {code}"


def test_activation_names_map_to_cpp_codes():
    cpp = set(CODES["activation"].values())
    assert set(A.CODES.values()) == cpp
    for name, code in A.CODES.items():
        assert code in cpp, name


def test_loss_names_map_to_cpp_codes():
    assert set(L.CODES.values()) == set(CODES["loss"].values())
    assert set(L.CANONICAL) == set(CODES["loss"].values())


def test_optimizer_classes_carry_cpp_codes():
    by_code = {cls.code: name for name, cls in O.BY_NAME.items()}
    assert set(by_code) == set(CODES["optimizer"].values())
    for name, cls in O.BY_NAME.items():
        assert CODES["optimizer"][name.upper()] == cls.code, name


@pytest.mark.parametrize("concept, size", [("ops", "N_OP_COLUMNS"), ("op_params", "N_OP_PARAMS"),
                                           ("opt_params", "N_OPT_PARAMS")])
def test_table_columns_cover_the_table(concept, size):
    """Every column index is below the table width, and every column of the table is named."""
    columns = {k: v for k, v in CODES[concept].items() if k != size}
    width = CODES[concept][size]
    assert all(0 <= v < width for v in columns.values())
    assert set(columns.values()) == set(range(width))


def test_built_plans_use_the_cpp_layout():
    layers = [Dense(6, activation="relu", input_dim=4), Dropout(0.2), BatchNorm(), Activation("tanh"),
              Dense(3, activation="softmax", kernel_regularizer={"l1": 0.01, "l2": 0.02})]
    plan = P.build_plan(layers, 4, "categorical_crossentropy", O.Adam(0.01, clipnorm=0.5), "float64", 0)
    assert plan.ops.shape[1] == CODES["ops"]["N_OP_COLUMNS"]
    assert plan.op_params.shape[1] == CODES["op_params"]["N_OP_PARAMS"]
    assert plan.opt_params.shape == (CODES["opt_params"]["N_OPT_PARAMS"],)
    kinds = plan.ops[:, CODES["ops"]["KIND"]].tolist()
    k = CODES["op_kind"]
    assert kinds[:4] == [k["DENSE"], k["ACTIVATION"], k["DROPOUT"], k["BATCHNORM"]]
    assert plan.ops[1, CODES["ops"]["ACT"]] == CODES["activation"]["RELU"]
    assert plan.op_params[2, CODES["op_params"]["RATE"]] == 0.2
    assert plan.loss == CODES["loss"]["CATEGORICAL_CROSSENTROPY"]
    assert plan.output_activation == CODES["activation"]["SOFTMAX"]
    assert plan.optimizer == CODES["optimizer"]["ADAM"]
    assert plan.opt_params[CODES["opt_params"]["CLIPNORM"]] == 0.5


def _plan():
    layers = [Dense(3, activation="tanh", input_dim=2), Dense(1, activation="sigmoid")]
    return P.build_plan(layers, 2, "binary_crossentropy", O.SGD(0.1), "float32", 0)


def _net(plan, ops=None, loss=None, output_activation=None, optimizer=None):
    return _core.Net(plan.dtype, plan.ops if ops is None else ops, plan.op_params,
                     plan.loss if loss is None else loss,
                     plan.output_activation if output_activation is None else output_activation,
                     plan.optimizer if optimizer is None else optimizer, plan.opt_params, plan.seed, plan.n_params,
                     plan.n_stats)


def test_the_unchanged_plan_decodes():
    _net(_plan())


def _bad(values, valid):
    return [v for v in values if v not in valid]


@pytest.mark.parametrize("code", _bad([-1, 3, 4, 99], CODES["loss"].values()))
def test_unknown_loss_is_an_error(code):
    with pytest.raises(ValueError, match="loss"):
        _net(_plan(), loss=code)


@pytest.mark.parametrize("code", _bad([-1, 5, 6, 99], CODES["optimizer"].values()))
def test_unknown_optimizer_is_an_error(code):
    with pytest.raises(ValueError, match="optimizer"):
        _net(_plan(), optimizer=code)


@pytest.mark.parametrize("code", [-1, CODES["activation"]["TANH"], CODES["activation"]["RELU"], 9, 99])
def test_output_activation_outside_identity_sigmoid_softmax_is_an_error(code):
    with pytest.raises(ValueError, match="output activation"):
        _net(_plan(), output_activation=code)


@pytest.mark.parametrize("code", [-1, CODES["activation"]["SOFTMAX"], 9, 99])
def test_unknown_or_output_only_activation_op_is_an_error(code):
    plan = _plan()
    ops = plan.ops.copy()
    row = int(np.flatnonzero(ops[:, CODES["ops"]["KIND"]] == CODES["op_kind"]["ACTIVATION"])[0])
    ops[row, CODES["ops"]["ACT"]] = code
    with pytest.raises(ValueError, match="activation"):
        _net(plan, ops=ops)


@pytest.mark.parametrize("code", [-1, 4, 99])
def test_unknown_op_kind_is_an_error(code):
    plan = _plan()
    ops = plan.ops.copy()
    ops[1, CODES["ops"]["KIND"]] = code
    with pytest.raises(ValueError, match="kind"):
        _net(plan, ops=ops)


@pytest.mark.parametrize("module, concept", [(A, "activation"), (L, "loss")])
def test_registries_match_cpp(module, concept):
    """Each spec of the module's registry (name, code) names its C++ code, and every C++ code has one."""
    assert {s.name.upper(): s.code for s in module.REGISTRY} == CODES[concept]
