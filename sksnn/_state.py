"""An estimator's fitted state as plain data: the one pair behind pickle and :mod:`sksnn.io`.

:func:`fitted_state` turns the fitted attributes into plain Python values, numpy arrays and the
package's frozen dataclasses (neuron constants, surrogates): no torch objects, so the state
loads on any device and with other torch versions. :func:`restore_fitted_state` checks every
entry (type, range, consistency with the arrays) before it builds anything, then sets the
attributes. A new fitted attribute is added here, once.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.base import is_classifier
from sklearn.preprocessing import LabelEncoder

from ._trainer import (
    SEED_MAX,
    bias_step_scale,
    initial_step_scales,
    is_hidden_bias,
    make_optimizer,
)
from .encoding import ENCODINGS
from .engines import ENGINES
from .network import SpikingNetwork
from .neuron import RESETS, LIFParameters
from .surrogates import EscapeNoise, Surrogate

__all__ = [
    "FittedStateError",
    "build_estimator",
    "check_params",
    "fitted_state",
    "new_fitted_state",
    "restore_fitted_state",
]

_NETWORK_KEYS = {"n_inputs", "hidden_layer_sizes", "n_outputs", "recurrent", "encoding",
                 "n_steps", "engine", "lif"}  # fmt: skip
_ADAM_KEYS = ["exp_avg", "exp_avg_sq", "step"]


class FittedStateError(ValueError):
    """A fitted state that does not describe a valid fitted estimator."""


# ------------------------------------------------------------------------------------------
# Taking the state
# ------------------------------------------------------------------------------------------
def _numpy(tensors: dict) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in tensors.items()}


def network_config(module: SpikingNetwork) -> dict[str, Any]:
    """Constructor arguments that rebuild ``module`` (see :class:`SpikingNetwork`)."""
    return {
        "n_inputs": module.n_inputs,
        "hidden_layer_sizes": module.hidden_layer_sizes,
        "n_outputs": module.n_outputs,
        "recurrent": module.recurrent,
        "encoding": module.encoding,
        "n_steps": module.n_steps,
        "engine": module.engine,
        "lif": module.lif,
    }


def fitted_state(estimator) -> dict[str, Any]:
    """The fitted attributes of ``estimator`` as plain data (empty when not fitted)."""
    params = set(estimator._get_param_names())
    attributes = {k: v for k, v in vars(estimator).items() if k not in params}
    attributes.pop("_label_encoder", None)  # rebuilt from classes_
    if "module_" not in attributes:
        return attributes
    module = attributes.pop("module_")
    attributes["network"] = network_config(module)
    attributes["weights"] = _numpy(module.state_dict())
    optimizer = attributes.pop("_optimizer")
    attributes["optimizer"] = {
        str(i): _numpy(s) for i, s in optimizer.state_dict()["state"].items()
    }
    # each parameter's step relative to learning_rate_init (make_optimizer); derived from the
    # initial weights, so it cannot be recomputed later
    attributes["lr_scales"] = [float(g.get("lr_scale", 1.0)) for g in optimizer.param_groups]
    best = attributes.pop("_best_state")
    attributes["best_weights"] = None if best is None else _numpy(best)
    attributes["rng"] = _rng_record(attributes.pop("_rng"))
    return attributes


def _rng_record(rng: np.random.RandomState) -> tuple:
    """The generator's state as plain data (read back by :func:`_rng`)."""
    kind, keys, pos, has_gauss, cached = rng.get_state(legacy=True)
    return kind, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)


def new_fitted_state(
    estimator,
    weights: dict[str, np.ndarray],
    *,
    n_inputs: int,
    hidden_layer_sizes: tuple[int, ...],
    n_outputs: int,
    input_ndim: int,
    targets: dict[str, Any],
) -> dict[str, Any]:
    """The fitted state of a network with the given ``weights`` (state-dict names) that has
    not been trained by sksnn (e.g. imported from another format), for ``estimator``'s
    parameters. ``targets`` holds ``classes_`` for a classifier, or ``_y_ndim``, ``_y_mean``
    and ``_y_scale`` for a regressor. Checked like any state by :func:`restore_fitted_state`.
    """
    lif = estimator._lif_parameters()
    named = [(k, torch.as_tensor(np.asarray(v, dtype=np.float32))) for k, v in weights.items()]
    state = {
        "network": {
            "n_inputs": n_inputs,
            "hidden_layer_sizes": tuple(hidden_layer_sizes),
            "n_outputs": n_outputs,
            "recurrent": bool(estimator.recurrent),
            "encoding": estimator.encoding,
            "n_steps": estimator.n_steps,
            "engine": estimator.engine,
            "lif": lif,
        },
        "weights": {k: t.numpy() for k, t in named},
        "optimizer": {},
        "lr_scales": initial_step_scales(named, lif),
        "best_weights": None,
        "rng": _rng_record(np.random.RandomState(0)),
        "n_features_in_": n_inputs,
        "n_outputs_": n_outputs,
        "_input_ndim": input_ndim,
        "_predict_seed": 0,
        "n_iter_": 0,
        "t_": 0,
        "_no_improvement_count": 0,
        "loss_curve_": [],
        "validation_scores_": None,
        "best_loss_": None,
        "best_validation_score_": None,
        **targets,
    }
    if not is_classifier(estimator):
        state.setdefault("_y_count", 1)
    return state


def check_params(estimator) -> None:
    """Validate the estimator's parameters as ``fit`` does (scikit-learn's constraints)."""
    estimator._validate_params()


def build_estimator(cls: type, params: dict[str, Any], fitted: dict[str, Any] | None, **kwargs):
    """A new ``cls(**params)`` with validated parameters and, if given, the fitted state
    (checked by :func:`restore_fitted_state` with ``kwargs``)."""
    estimator = cls(**params)
    check_params(estimator)
    restore_fitted_state(estimator, fitted or {}, **kwargs)
    return estimator


# ------------------------------------------------------------------------------------------
# Checking and restoring it
# ------------------------------------------------------------------------------------------
def _int(value: Any, name: str, low: int = 0, high: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, Integral)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise FittedStateError(f"{name!r} must be an integer {bounds}, got {value!r}.")
    return int(value)


def _real(value: Any, name: str, low: float = -math.inf, high: float = math.inf,
          *, low_open: bool = False) -> float:  # fmt: skip
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise FittedStateError(f"{name} must be a finite number, got {value!r}.")
    if value < low or (low_open and value == low) or value > high:
        raise FittedStateError(f"{name} is out of range: {value!r}.")
    return float(value)


def _optional_real(value: Any, name: str) -> float | None:
    # best scores start at -inf and best losses at inf (as in scikit-learn's MLP)
    if value is None or (isinstance(value, float) and math.isinf(value)):
        return value
    return _real(value, name)


def _reals(value: Any, name: str) -> list[float]:
    if not isinstance(value, list):
        raise FittedStateError(f"{name} must be a list of numbers, got {type(value).__name__}.")
    return [_real(v, name) for v in value]


def _array(value: Any, name: str, shape: tuple[int, ...], kinds: str = "f") -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise FittedStateError(f"{name} must be an array, got {type(value).__name__}.")
    if value.shape != tuple(shape):
        raise FittedStateError(
            f"Array {name!r} has shape {value.shape}, but the model needs {tuple(shape)}."
        )
    if value.dtype.kind not in kinds:
        raise FittedStateError(f"Array {name!r} has unexpected dtype {value.dtype}.")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise FittedStateError(f"Array {name!r} holds NaN or infinite values.")
    return value


def _checked_lif(lif: Any) -> LIFParameters:
    if not isinstance(lif, LIFParameters):
        raise FittedStateError("network.lif must be LIFParameters.")
    for name in ("alpha_syn", "alpha_mem"):
        _real(getattr(lif, name), f"network.lif.{name}", 0.0, 1.0)
    _real(lif.threshold, "network.lif.threshold", 0.0, low_open=True)
    _real(lif.temperature, "network.lif.temperature", 0.0)
    if not isinstance(lif.escape_noise, EscapeNoise):
        raise FittedStateError("network.lif.escape_noise is not an escape noise.")
    if not isinstance(lif.surrogate, Surrogate):
        raise FittedStateError("network.lif.surrogate is not a surrogate.")
    if lif.reset not in RESETS:
        raise FittedStateError(f"network.lif.reset must be one of {RESETS}.")
    if not isinstance(lif.detach_reset, bool):
        raise FittedStateError("network.lif.detach_reset must be true or false.")
    return lif


def _checked_network(config: Any, max_steps: int | None) -> tuple[dict, dict[str, tuple]]:
    """Constructor arguments of the network and the shape of each of its arrays."""
    if not isinstance(config, dict) or set(config) != _NETWORK_KEYS:
        raise FittedStateError(f"The network must be given by exactly {sorted(_NETWORK_KEYS)}.")
    sizes = config["hidden_layer_sizes"]
    if not isinstance(sizes, tuple | list) or not sizes:
        raise FittedStateError("network.hidden_layer_sizes must be a non-empty sequence.")
    sizes = [_int(h, "hidden layer size", low=1) for h in sizes]
    n_inputs = _int(config["n_inputs"], "network.n_inputs", low=1)
    n_outputs = _int(config["n_outputs"], "network.n_outputs", low=1)
    if not isinstance(config["recurrent"], bool):
        raise FittedStateError("network.recurrent must be true or false.")
    if config["encoding"] not in ENCODINGS:
        raise FittedStateError(f"network.encoding must be one of {ENCODINGS}.")
    if config["engine"] not in ("auto", *ENGINES):
        raise FittedStateError(f"network.engine must be 'auto' or one of {ENGINES}.")
    arguments = {
        **config,
        "n_inputs": n_inputs,
        "hidden_layer_sizes": tuple(sizes),
        "n_outputs": n_outputs,
        "n_steps": _int(config["n_steps"], "n_steps", low=1, high=max_steps),
        "lif": _checked_lif(config["lif"]),
    }
    shapes = {}
    for i, (n, h) in enumerate(zip([n_inputs, *sizes[:-1]], sizes, strict=True)):
        shapes[f"layers.{i}.weight"] = (h, n)
        if config["recurrent"]:
            shapes[f"layers.{i}.recurrent_weight"] = (h, h)
        shapes[f"layers.{i}.bias"] = (h,)
    shapes["readout.weight"] = (n_outputs, sizes[-1])
    shapes["readout.bias"] = (n_outputs,)
    return arguments, shapes


def _weights(value: Any, name: str, shapes: dict[str, tuple]) -> dict[str, np.ndarray]:
    if not isinstance(value, dict) or set(value) != set(shapes):
        raise FittedStateError(f"{name} must hold exactly the arrays {sorted(shapes)}.")
    return {k: _array(value[k], f"{name}.{k}", shape) for k, shape in shapes.items()}


def restore_fitted_state(
    estimator, state: dict[str, Any], *, strict: bool = False, max_steps: int | None = None
) -> None:
    """Check ``state`` (from :func:`fitted_state`) and set it on ``estimator``.

    Nothing is set unless every entry is valid; arrays are checked against the network
    configuration before the network is built, so a forged size cannot make this allocate
    more than the state holds. Attributes this module does not know (a subclass's own) are set
    as they are, unless ``strict``; ``max_steps`` bounds the simulation length. Raises
    :class:`FittedStateError`.
    """
    state = dict(state)
    if "network" not in state:
        if strict and state:
            raise FittedStateError(f"An unfitted model has fitted attributes {sorted(state)}.")
        vars(estimator).update(state)
        return
    known = {
        *"network weights optimizer lr_scales best_weights rng".split(),
        *"n_features_in_ feature_names_in_ n_outputs_ _input_ndim _predict_seed".split(),
        *"n_iter_ t_ _no_improvement_count loss_curve_ validation_scores_ best_loss_".split(),
        *"best_validation_score_ firing_rates_ classes_ _y_ndim _y_count _y_mean _y_scale".split(),
    }
    unknown = sorted(set(state) - known)
    if unknown and strict:
        raise FittedStateError(f"Unknown fitted attributes {unknown}.")
    arguments, shapes = _checked_network(state["network"], max_steps)
    state = _with_hidden_biases(state, shapes, arguments["lif"])
    weights = _weights(state.get("weights"), "weights", shapes)
    best = state.get("best_weights")
    best = None if best is None else _weights(best, "best_weights", shapes)
    n_features = _int(state.get("n_features_in_"), "n_features_in_", 1)
    n_outputs = _int(state.get("n_outputs_"), "n_outputs_", 1)
    if arguments["n_inputs"] != n_features or arguments["n_outputs"] != n_outputs:
        raise FittedStateError("The network does not match n_features_in_/n_outputs_.")
    attributes: dict[str, Any] = {
        "n_features_in_": n_features,
        "n_outputs_": n_outputs,
        "_input_ndim": _int(state.get("_input_ndim"), "_input_ndim", 2, 3),
        "_predict_seed": _int(state.get("_predict_seed"), "_predict_seed", 0, SEED_MAX),
        "n_iter_": _int(state.get("n_iter_"), "n_iter_"),
        "t_": _int(state.get("t_"), "t_"),
        "_no_improvement_count": _int(state.get("_no_improvement_count"), "_no_improvement"),
        "loss_curve_": _reals(state.get("loss_curve_"), "loss_curve_"),
        "best_loss_": _optional_real(state.get("best_loss_"), "best_loss_"),
        "best_validation_score_": _optional_real(
            state.get("best_validation_score_"), "best_validation_score_"
        ),
    }
    if len(attributes["loss_curve_"]) != attributes["n_iter_"]:
        raise FittedStateError("loss_curve_ must hold one loss per iteration (n_iter_).")
    scores = state.get("validation_scores_")
    attributes["validation_scores_"] = None if scores is None else _reals(scores, "scores")
    if "feature_names_in_" in state:
        names = _array(state["feature_names_in_"], "feature_names_in_", (n_features,), "UO")
        attributes["feature_names_in_"] = names.astype(object)
    if "firing_rates_" in state:
        n_layers = len(arguments["hidden_layer_sizes"])
        rates = _array(state["firing_rates_"], "firing_rates_", (n_layers,))
        if ((rates < 0) | (rates > 1)).any():
            raise FittedStateError("firing_rates_ must lie in [0, 1].")
        attributes["firing_rates_"] = rates
    attributes.update(_targets(estimator, state, n_outputs))
    attributes["_rng"] = _rng(state.get("rng"))

    module = SpikingNetwork(**arguments)
    module.load_state_dict({k: torch.tensor(v) for k, v in weights.items()})
    scales = state.get("lr_scales")
    attributes["_optimizer"] = _optimizer(module, state.get("optimizer"), scales)
    attributes["_best_state"] = (
        None if best is None else {k: torch.tensor(v) for k, v in best.items()}
    )
    attributes["module_"] = module
    vars(estimator).update({k: state[k] for k in unknown}, **attributes)


def _with_hidden_biases(
    state: dict[str, Any], shapes: dict[str, tuple], lif: LIFParameters
) -> dict[str, Any]:
    """``state`` as this version writes it, when an earlier version wrote it without the hidden
    layers' bias currents: those networks are the same networks with every bias at zero.

    The biases are inserted after their layers' other parameters, in the weights, the
    per-parameter step scales (:func:`~sksnn._trainer.bias_step_scale`, as in a new fit) and
    the indices of the optimizer's moments (a bias starts with none). A state that holds any
    bias is returned unchanged and checked as it is.
    """
    weights = state.get("weights")
    biases = [k for k in shapes if is_hidden_bias(k)]
    if not isinstance(weights, dict) or any(k in weights for k in biases):
        return state
    order = list(shapes)  # the module's parameter order
    old_order = [k for k in order if k not in biases]
    upgraded = dict(state)
    zeros = {k: np.zeros(shapes[k], dtype=np.float32) for k in biases}
    upgraded["weights"] = {**weights, **zeros}
    if isinstance(state.get("best_weights"), dict):
        upgraded["best_weights"] = {**state["best_weights"], **zeros}
    scales = state.get("lr_scales")
    if isinstance(scales, list) and len(scales) == len(old_order):
        by_name = dict(zip(old_order, scales, strict=True))
        upgraded["lr_scales"] = [
            bias_step_scale(lif) if k in biases else by_name[k] for k in order
        ]
    moments = state.get("optimizer")
    if isinstance(moments, dict) and all(
        isinstance(i, str) and i.isdigit() and int(i) < len(old_order) for i in moments
    ):
        upgraded["optimizer"] = {
            str(order.index(old_order[int(i)])): m for i, m in moments.items()
        }
    return upgraded


def _targets(estimator, state: dict[str, Any], n_outputs: int) -> dict[str, Any]:
    if is_classifier(estimator):
        classes = state.get("classes_")
        classes = _array(classes, "classes_", (n_outputs,), "biufUO")
        if n_outputs < 2 or not np.array_equal(np.unique(classes), classes):
            raise FittedStateError("classes_ must hold at least 2 distinct labels, sorted.")
        encoder = LabelEncoder()
        encoder.classes_ = classes
        return {"classes_": classes, "_label_encoder": encoder}
    y_ndim = _int(state.get("_y_ndim"), "_y_ndim", 1, 2)
    if y_ndim == 1 and n_outputs != 1:
        raise FittedStateError("A regressor fitted on 1-D y has exactly one output.")
    scale = _array(state.get("_y_scale"), "_y_scale", (n_outputs,))
    if (scale < 0).any():
        raise FittedStateError("The target scale _y_scale must be >= 0.")
    return {
        "_y_ndim": y_ndim,
        "_y_count": _int(state.get("_y_count"), "_y_count", 1),
        "_y_mean": _array(state.get("_y_mean"), "_y_mean", (n_outputs,)),
        "_y_scale": scale,
    }


def _rng(value: Any) -> np.random.RandomState:
    if not (isinstance(value, tuple | list) and len(value) == 5 and value[0] == "MT19937"):
        raise FittedStateError("Malformed random generator state.")
    _, keys, pos, has_gauss, cached = value
    rng = np.random.RandomState()
    rng.set_state(
        (
            "MT19937",
            _array(keys, "rng keys", (624,), "u"),
            _int(pos, "rng position", 0, 624),
            _int(has_gauss, "rng has_gauss", 0, 1),
            _real(cached, "rng cached value"),
        )
    )
    return rng


def _optimizer(module: SpikingNetwork, value: Any, lr_scales: Any) -> torch.optim.Adam:
    """Adam over ``module`` with the stored moments and relative step sizes. The step size
    itself is not part of the state: every fit sets it from ``learning_rate_init``."""
    params = list(module.parameters())
    if not isinstance(lr_scales, list) or len(lr_scales) != len(params):
        raise FittedStateError(f"lr_scales must be a list of {len(params)} numbers.")
    scales = [_real(s, "lr_scales", 0.0, low_open=True) for s in lr_scales]
    optimizer = make_optimizer(module, 1e-3, scales)
    if not isinstance(value, dict):
        raise FittedStateError("Malformed optimizer state.")
    moments: dict[int, dict[str, torch.Tensor]] = {}
    for index, entry in value.items():
        if not (isinstance(index, str) and index.isdigit() and int(index) < len(params)):
            raise FittedStateError(f"Malformed optimizer state for parameter {index!r}.")
        if not isinstance(entry, dict) or sorted(entry) != _ADAM_KEYS:
            raise FittedStateError(f"The optimizer state must hold {_ADAM_KEYS}.")
        shape = params[int(index)].shape
        for key in _ADAM_KEYS:
            # Adam's step counter is a scalar; the moments have their parameter's shape
            name = f"optimizer.{index}.{key}"
            array = _array(entry[key], name, () if key == "step" else shape, "fiu")
            if key != "exp_avg" and (array < 0).any():
                raise FittedStateError(f"Optimizer state {key!r} must be >= 0.")
            moments.setdefault(int(index), {})[key] = torch.tensor(array)
    groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": moments, "param_groups": groups})
    return optimizer
