"""
The project's own bad-input suite, over every public callable found by introspection of ``art_geometry.__all__``
(a new public function is covered without anyone remembering: it is called from its signature, and the suite
fails with a message if it cannot build a call).

For each data-taking function (first parameters ``classifier, x`` or ``classifier, x_train``) and a matrix of bad
inputs (containers, dtypes, shapes, empty, NaN / inf, labels, options, probability outputs, raising models,
unsupported classifiers) it asserts the exception type, that the message names the argument, and that the model
(parameters, buffers, every submodule's mode, ``requires_grad``, ``.grad``), the inputs and the global random
states are bit-identical afterwards. Inputs that are valid in an unusual form (negative strides, read-only,
Fortran order, int64, float64, tensors) must give the result of the plain contiguous float32 array.
"""

from __future__ import annotations

import inspect
import math
import typing
import warnings
from typing import Any, Callable

import numpy as np
import pytest
import torch
from torch import nn

import art_geometry as ag
from art_geometry.core.results import jsonable
from art_geometry.core.settings import Settings
from art_geometry.datasets import make_classifier
from tests.helpers import assert_unchanged

SHAPE = (1, 8, 8)
N = 6


class _Net(nn.Module):
    """A small CNN with BatchNorm and Dropout (left in train mode by the tests) and a functional ReLU."""

    def __init__(self, softmax: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.fc1 = nn.Linear(4 * 8 * 8, 16)
        self.fc2 = nn.Linear(16, 10)
        self.softmax = softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn(self.conv(x))).flatten(1)
        z = self.fc2(self.drop(self.relu(self.fc1(h))))
        return z.softmax(dim=1) if self.softmax else z


class _Raising(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


def _net(softmax: bool = False) -> _Net:
    torch.manual_seed(0)
    net = _Net(softmax)
    net.train()
    return net


def _data() -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(0)
    return g.random((N,) + SHAPE, dtype=np.float32), (np.arange(N) % 10).astype(np.int64)


def _public() -> dict[str, Callable[..., Any]]:
    return {
        name: getattr(ag, name)
        for name in ag.__all__
        if callable(getattr(ag, name)) and not isinstance(getattr(ag, name), type)
    }


def _params(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    return list(inspect.signature(fn).parameters.values())


def _data_functions() -> list[str]:
    out = []
    for name, fn in _public().items():
        names = [p.name for p in _params(fn)]
        if names[:1] == ["classifier"] and len(names) > 1 and names[1] in ("x", "x_train"):
            out.append(name)
    return sorted(out)


#: Values for required parameters, by name (a new required parameter must get one here).
def _required(name: str, x: np.ndarray, y: np.ndarray) -> Any:
    values: dict[str, Callable[[], Any]] = {
        "subspaces": lambda: ag.dct_subspaces(SHAPE, block_size=4, stride=4),
        "eps": lambda: 0.1,
        "nb_epochs": lambda: 1,
        "batch_size": lambda: 4,
        "tracker": lambda: ag.GeometryTracker(x, y, x, y, n_train=4, n_test=4, batch_size=4),
    }
    if name not in values:
        raise AssertionError(f"the bad-input suite has no value for required parameter {name!r}: add one")
    return values[name]()


#: Cheap settings for slow defaults, by parameter name (applied when the function has the parameter).
_CHEAP = {"resolution": 5, "k": 2, "max_iter": 3, "restarts": 1, "pgd_iter": 2}


def _call(name: str, classifier: Any, x: Any, y: Any, **overrides: Any) -> Any:
    """Call the public function ``name`` from its signature: data positionally, required options from the table."""
    fn = _public()[name]
    args: list[Any] = [classifier]
    kwargs: dict[str, Any] = {}
    for p in _params(fn)[1:]:
        if p.kind is p.VAR_KEYWORD or p.kind is p.VAR_POSITIONAL:
            continue
        positional = p.kind is p.POSITIONAL_OR_KEYWORD
        if p.name in overrides:
            kwargs[p.name] = overrides.pop(p.name)
        elif p.name in ("x", "x_train", "x_test", "y", "y_test", "y_train"):
            value = x if p.name.startswith("x") else y
            if positional:
                args.append(value)
            else:
                kwargs[p.name] = value
        elif p.default is inspect.Parameter.empty:
            kwargs[p.name] = _required(p.name, x, y)
        elif p.name in _CHEAP:
            kwargs[p.name] = _CHEAP[p.name]
        elif p.name == "verbose":
            kwargs[p.name] = False
    kwargs.update(overrides)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    for w in caught:
        if not (issubclass(w.category, DeprecationWarning) or str(w.message).startswith(_EXPECTED)):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return out


#: Our warnings that the suite's models are expected to raise: a plain module declares no input range (the attacks
#: assume [0, 1]), and the decision-function Hessian of a ReLU net vanishes (both tested where they are raised, in
#: test_robustness.py and test_indicators.py). Any other warning, and the old positional forms' DeprecationWarning
#: aside, is raised again, so the suite's ``filterwarnings = error`` fails on it or ``pytest.warns`` sees it.
_EXPECTED = (
    "the model declares no valid input range: assuming clip_values=(0, 1)",
    "every eigenvalue of the decision-function Hessian is zero",
)


def _first_data_name(name: str) -> str:
    return [p.name for p in _params(_public()[name])][1]


def _has(name: str, param: str) -> bool:
    """Whether the function takes ``param``: in its signature, or as a field of its settings object."""
    fn = _public()[name]
    if param in {p.name for p in _params(fn)}:
        return True
    hint = typing.get_type_hints(fn).get("settings")
    settings = [t for t in typing.get_args(hint) if isinstance(t, type) and issubclass(t, Settings)]
    return bool(settings) and param in settings[0].field_names()


def _takes_labels(name: str) -> bool:
    return any(p.name in ("y", "y_test", "y_train") for p in _params(_public()[name]))


DATA_FUNCTIONS = _data_functions()

BAD_X: dict[str, tuple[Callable[[np.ndarray], Any], type, str]] = {
    "list": (lambda x: x.tolist(), TypeError, "numpy array or torch tensor"),
    "bool": (lambda x: x > 0.5, TypeError, "real numbers"),
    "complex": (lambda x: x.astype(np.complex64), TypeError, "real numbers"),
    "one_dim": (lambda x: x[:, 0, 0, 0], ValueError, "batch"),
    "wrong_shape": (lambda x: x[:, :, :, :7], ValueError, "shape"),
    "empty": (lambda x: x[:0], ValueError, "empty"),
    "nan": (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x).astype(np.float32), ValueError,
            "NaN"),
    "inf": (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 5, np.inf, x).astype(np.float32), ValueError,
            "inf"),
}

BAD_Y: dict[str, tuple[Callable[[np.ndarray], Any], type]] = {
    "above_range": (lambda y: np.full_like(y, 10), ValueError),
    "negative": (lambda y: np.full_like(y, -1), ValueError),
    "short": (lambda y: y[:-1], ValueError),
    "strings": (lambda y: y.astype(str), TypeError),
    "fractional": (lambda y: y + 0.5, ValueError),
    "ragged_list": (lambda y: [[int(v)] if i == 0 else int(v) for i, v in enumerate(y)], ValueError),
    "dict": (lambda y: dict(enumerate(y.tolist())), TypeError),
}

BAD_OPTIONS: dict[str, Any] = {
    "seed": [-1, "a", 1.5],
    "batch_size": [0, -3, 2.5, "8"],
    "verbose": ["yes", 2],
    "max_iter": [0, 1.5],
    "norm": [3, "l7"],
    "eps": [-0.1, float("nan"), "a"],
}

GOOD_FORMS: dict[str, Callable[[np.ndarray], Any]] = {
    "negative_strides": lambda x: np.ascontiguousarray(x[::-1])[::-1],
    "read_only": lambda x: _read_only(x),
    "fortran": lambda x: np.asfortranarray(x),
    "float64": lambda x: x.astype(np.float64),
    "tensor": lambda x: torch.from_numpy(x.copy()),
}


def _read_only(x: np.ndarray) -> np.ndarray:
    out = x.copy()
    out.setflags(write=False)
    return out


def test_settings_fields_are_seen_as_options() -> None:
    assert _has("deepfool_margins", "seed") and _has("robust_accuracy", "eps") and not _has("deepfool_margins", "eps")


def test_every_data_function_is_found() -> None:
    # the introspection is not vacuous: the families' entry points are all there
    for name in ("deepfool_margins", "subspace_margins", "populated_region_set", "robust_accuracy",
                 "decision_surface", "hessian_eigenvalues", "jacobian_stats", "fit_tracked"):
        assert name in DATA_FUNCTIONS
    assert len(DATA_FUNCTIONS) >= 20


@pytest.mark.parametrize("name", DATA_FUNCTIONS)
@pytest.mark.parametrize("case", sorted(BAD_X))
def test_bad_x(name: str, case: str) -> None:
    x, y = _data()
    model = _net()
    make, error, words = BAD_X[case]
    bad = make(x)
    arg = _first_data_name(name)
    with assert_unchanged(model, x, y, *( [bad] if isinstance(bad, np.ndarray) else [])):
        with pytest.raises(error) as info:
            _call(name, model, bad, y)
    message = str(info.value)
    assert arg in message and words in message, f"{name}: {message!r}"


@pytest.mark.parametrize("name", [n for n in DATA_FUNCTIONS if _takes_labels(n)])
@pytest.mark.parametrize("case", sorted(BAD_Y))
def test_bad_y(name: str, case: str) -> None:
    x, y = _data()
    model = _net()
    make, error = BAD_Y[case]
    with assert_unchanged(model, x, y):
        with pytest.raises(error) as info:
            _call(name, model, x, make(y))
    assert "y" in str(info.value), f"{name}: {info.value!r}"


@pytest.mark.parametrize(
    "name, option, value",
    [(n, o, v) for n in DATA_FUNCTIONS for o, vs in BAD_OPTIONS.items() for v in vs if _has(n, o)],
)
def test_bad_option(name: str, option: str, value: Any) -> None:
    x, y = _data()
    model = _net()
    with assert_unchanged(model, x, y):
        with pytest.raises(ValueError) as info:
            _call(name, model, x, y, **{option: value})
    assert option in str(info.value), f"{name}({option}={value!r}): {info.value!r}"


@pytest.mark.parametrize("name", DATA_FUNCTIONS)
def test_unsupported_classifier(name: str) -> None:
    x, y = _data()
    with pytest.raises(TypeError, match="classifier"):
        _call(name, object(), x, y)


@pytest.mark.parametrize("name", DATA_FUNCTIONS)
def test_raising_model(name: str) -> None:
    x, y = _data()
    with pytest.raises(ValueError) as info:
        _call(name, _Raising(), x, y)
    assert "cannot run on" in str(info.value) and "boom" in str(info.value)


@pytest.mark.parametrize("name", [n for n in DATA_FUNCTIONS if n not in ("fit_tracked",)])
def test_probability_outputs_warn(name: str) -> None:
    x, y = _data()
    with pytest.warns(UserWarning, match="probabilities"):
        _call(name, _net(softmax=True).eval(), x, y)


def _same_result(a: Any, b: Any) -> bool:
    return _canonical(a) == _canonical(b)


def _canonical(result: Any) -> Any:
    data = jsonable(result)
    if isinstance(data, dict):
        data.pop("params", None)
        # wall-clock timings differ between any two runs
        data.pop("seconds", None)
        if isinstance(data.get("summary"), dict):
            data["summary"].pop("seconds", None)
    return data


#: Functions not compared across input forms: training (its result is the trained model's history) and the
#: adapter (it returns a view, not a result; its probe runs on the same values).
_NOT_COMPARED = {"fit_tracked", "model_view"}


@pytest.mark.parametrize("name", [n for n in DATA_FUNCTIONS if n not in _NOT_COMPARED])
@pytest.mark.parametrize("form", sorted(GOOD_FORMS))
def test_valid_forms_equal_contiguous_float32(name: str, form: str) -> None:
    x, y = _data()
    model = _net().eval()
    expected = _call(name, model, x, y)
    unusual = GOOD_FORMS[form](x)
    with assert_unchanged(model, x, y, unusual):
        got = _call(name, model, unusual, y)
    if form == "float64":
        # the model computes in float32 either way: the same values reach it
        assert _same_result(got, expected)
    else:
        assert _same_result(got, expected), f"{name} on {form} input differs"


@pytest.mark.parametrize("name", [n for n in DATA_FUNCTIONS if n not in _NOT_COMPARED and _takes_labels(n)])
def test_labels_as_a_list_of_ints_equal_an_array(name: str) -> None:
    x, y = _data()
    model = _net().eval()
    assert _same_result(_call(name, model, x, y.tolist()), _call(name, model, x, y)), name


@pytest.mark.parametrize("name", [n for n in DATA_FUNCTIONS if n != "fit_tracked"])
def test_nothing_mutated_on_art_classifier_with_train_mode_model(name: str) -> None:
    # fit_tracked trains the classifier it is given (its purpose); test_tracking checks it restores the RNG
    x, y = _data()
    clf = make_classifier(_net(), SHAPE, 10)
    clf.model.train()
    with assert_unchanged(clf, x, y):
        _call(name, clf, x, y)
    assert clf.model.training and clf.model.bn.training


def test_integer_inputs_are_converted_with_values_unchanged() -> None:
    x, _ = _data()
    xi = (x * 4).astype(np.int64)
    model = _net().eval()
    a = ag.deepfool_margins(model, xi, max_iter=3)
    b = ag.deepfool_margins(model, xi.astype(np.float32), max_iter=3)
    np.testing.assert_array_equal(a.margins, b.margins)


def test_seed_none_draws_fresh_entropy_and_records_it() -> None:
    x, _ = _data()
    model = _net().eval()
    a = ag.deepfool_margins(model, x, seed=None)
    b = ag.deepfool_margins(model, x, seed=None)
    assert isinstance(a.params["seed"], int) and a.params["seed"] != b.params["seed"]
    again = ag.deepfool_margins(model, x, seed=a.params["seed"])
    np.testing.assert_array_equal(again.margins, a.margins)


NON_DATA = sorted(set(_public()) - set(DATA_FUNCTIONS))


def test_every_public_callable_is_in_a_matrix() -> None:
    # callables that take no (classifier, x) get the array matrix below; a new one must be listed there
    assert set(NON_DATA) <= set(ARRAY_CALLS) | set(NO_ARRAY), sorted(set(NON_DATA) - set(ARRAY_CALLS) - set(NO_ARRAY))


#: Public callables taking an array (not a classifier first), with how to call them on a bad array.
ARRAY_CALLS: dict[str, Callable[[Any], Any]] = {
    "dct2": lambda a: ag.dct2(a),
    "idct2": lambda a: ag.idct2(a),
    "dct_flip": lambda a: ag.dct_flip(a),
    "low_pass": lambda a: ag.low_pass(a, 4),
    "high_pass": lambda a: ag.high_pass(a, 4),
    "span": lambda a: ag.span(a),
    "direction": lambda a: ag.direction(a),
}

#: Public callables that take no sample array (settings, factories, plots of results), with the reason.
NO_ARRAY = {
    "model_view": "adapter; its x is checked by the same check_array (tested in test_model.py)",
    "final_layer_similarity": "reads weights only",
    "dct_subspaces": "takes a shape",
    "random_subspace": "takes a shape",
    "orthogonal_complement": "takes a subspace",
    "transform_dataset": "takes a Dataset",
    "transitions": "takes two boolean arrays from results",
    "seeded": "a context manager taking a seed (validated: tested below)",
}


@pytest.mark.parametrize("name", sorted(ARRAY_CALLS))
@pytest.mark.parametrize("case", ["list", "nan", "bool"])
def test_bad_arrays_for_array_functions(name: str, case: str) -> None:
    x, _ = _data()
    bad = {"list": x.tolist(), "nan": np.full_like(x, np.nan), "bool": x > 0.5}[case]
    before = bad.copy() if isinstance(bad, np.ndarray) else None
    with pytest.raises((TypeError, ValueError)) as info:
        ARRAY_CALLS[name](bad)
    assert not isinstance(info.value, (IndexError, KeyError, AttributeError))
    assert any(w in str(info.value) for w in ("x", "vectors", "u", "z")), str(info.value)
    if before is not None:
        np.testing.assert_array_equal(bad, before)


def test_subspace_projection_is_float_for_integer_input() -> None:
    sub = ag.dct_subspaces(SHAPE, block_size=4, stride=4)[0]
    v = torch.arange(64).reshape(1, 1, 8, 8)
    assert math.isclose(float(sub.project(v).abs().sum()), float(sub.project(v.float()).abs().sum()), rel_tol=1e-6)


@pytest.mark.parametrize("seed", [-1, "a", None, 1.5])
def test_seeded_refuses_bad_seeds(seed: Any) -> None:
    with pytest.raises(ValueError, match="seed"):
        with ag.seeded(seed):
            pass


def _trainer() -> Any:
    return ag.JacobianRegularizedTrainer(make_classifier(_net(), SHAPE, 10))


def _foolbox_call(labels: Any, epsilons: Any = None) -> Any:
    import foolbox as fb

    from art_geometry.interop import DeepFoolMarginAttack

    x, _ = _data()
    return DeepFoolMarginAttack()(fb.PyTorchModel(_net().eval(), bounds=(0, 1)), torch.as_tensor(x), labels,
                                  epsilons=epsilons)


def _torchattacks_call(model: Any, scale: float = 1.0) -> Any:
    from art_geometry.interop import TorchattacksDeepFoolMargin

    x, y = _data()
    return TorchattacksDeepFoolMargin(model)(torch.as_tensor(x) * scale, torch.as_tensor(y))


def _bad_json(tmp: Any) -> Any:
    path = tmp / "bad.json"
    path.write_text("{not json")
    return ag.GeometryTracker.from_json(path)


#: The other entry points' own call conventions (subspaces, tracker, history, trainer, the three wrappers), each a
#: bad call with the error it must end in and a pattern its message must contain (the argument's name).
ENTRY_POINTS: dict[str, tuple[Callable[[Any], Any], type, str]] = {
    "project_list": (lambda t: ag.dct_subspaces(SHAPE, 4, 4)[0].project([[0.0]]), TypeError, "v must be"),
    "project_shape": (lambda t: ag.dct_subspaces(SHAPE, 4, 4)[0].project(np.zeros((2, 1, 4, 4))), ValueError,
                      "shape"),
    "dct_subspaces_strings": (lambda t: ag.dct_subspaces(("a", "b", "c")), ValueError, "image_shape"),
    "dct_subspaces_number": (lambda t: ag.dct_subspaces(8), ValueError, "image_shape"),
    "random_subspace_shape": (lambda t: ag.random_subspace(("a",), 2), ValueError, "shape"),
    "tracker_invalid_json": (_bad_json, ValueError, "not valid JSON"),
    "history_missing_keys": (lambda t: ag.TrainingHistory.from_records([{"loss": 1.0}], {}), ValueError,
                             r"records\[0\] lacks ce"),
    "transitions_lengths": (lambda t: ag.transitions(np.ones(3, bool), np.ones(1, bool)), ValueError,
                            "before and after"),
    "fit_seed": (lambda t: _trainer().fit(*_data(), nb_epochs=1, seed=-1, verbose=False), ValueError, "seed"),
    "fit_callbacks": (lambda t: _trainer().fit(*_data(), nb_epochs=1, callbacks=3, verbose=False), TypeError,
                      "callbacks"),
    "foolbox_no_labels": (lambda t: _foolbox_call(None), TypeError, "labels"),
    "foolbox_string_labels": (lambda t: _foolbox_call(["a"] * N), TypeError, "labels"),
    "foolbox_empty_epsilons": (lambda t: _foolbox_call(torch.as_tensor(_data()[1]), []), ValueError, "epsilons"),
    "torchattacks_range": (lambda t: _torchattacks_call(_net().eval(), 2.0), ValueError, "images"),
    "torchattacks_art_classifier": (lambda t: _torchattacks_call(make_classifier(_net(), SHAPE, 10)), TypeError,
                                    "model must be a torch.nn.Module"),
    "art_minimal_false": (lambda t: __import__("art_geometry.interop.art", fromlist=["DeepFoolMargin"])
                          .DeepFoolMargin(make_classifier(_net(), SHAPE, 10), minimal=False), TypeError, "minimal"),
    "box_outside_clip_values": (lambda t: ag.deepfool_margins(make_classifier(_net(), SHAPE, 10), _data()[0] * 2,
                                                              box=True), ValueError, "x has values .* clip_values"),
}


@pytest.mark.parametrize("case", sorted(ENTRY_POINTS))
def test_entry_point_conventions(case: str, tmp_path: Any) -> None:
    call, error, pattern = ENTRY_POINTS[case]
    x, y = _data()
    with assert_unchanged(_net(), x, y), pytest.raises(error, match=pattern):
        call(tmp_path)


def test_wrapper_and_subspace_recoveries() -> None:
    """What the entry points accept in place of the form they document: the same result."""
    x, y = _data()
    np.testing.assert_array_equal(_foolbox_call(y)[0].numpy(), _foolbox_call(torch.as_tensor(y))[0].numpy())
    np.testing.assert_array_equal(_foolbox_call(y.tolist())[0].numpy(), _foolbox_call(torch.as_tensor(y))[0].numpy())
    sub = ag.dct_subspaces(SHAPE, 4, 4)[1]
    flipped = np.ascontiguousarray(x[::-1])[::-1]
    np.testing.assert_array_equal(sub.project(flipped), sub.project(torch.as_tensor(x)).numpy())
    vectors = np.random.default_rng(0).random((3, 1, 8, 8))
    negative = np.ascontiguousarray(vectors[::-1])[::-1]
    assert torch.equal(ag.span(negative).project(torch.as_tensor(x)), ag.span(vectors).project(torch.as_tensor(x)))
    history = _trainer().fit(x, y, nb_epochs=1, seed=None, verbose=False)
    assert isinstance(history.params["seed"], int)
