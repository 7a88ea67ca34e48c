"""Safe model files: save and load fitted estimators without pickle.

A model file is a zip archive (uncompressed) with three members:

``header.json``
    ``{"format": "sksnn-model", "format_version": 1, "sksnn_version": ..., "sha256": {...}}``:
    the SHA-256 checksum of each of the two payload members below.
``params.json``
    The estimator type, its constructor parameters, the scalar fitted attributes and the
    configuration of the fitted network (``module_``), as plain JSON.
``arrays.npz``
    Every array (network weights, optimiser moments, ``classes_``, ...) as ``.npy`` members,
    read back with ``allow_pickle=False``.

Loading parses JSON and raw numeric arrays only, so it never imports or executes code named in
the file: the estimator type must be one of the sksnn estimators, surrogates must be
registered in :data:`sksnn.surrogates.SURROGATES`, and every array must have exactly the name,
dtype and shape the rebuilt network expects. Anything else raises :class:`ModelFileError`.

The checksum detects corrupted or carelessly edited files; it is not a signature, since anyone
who can write the file can recompute it. A model file is therefore validated like any input
from outside: every configuration field and fitted attribute is checked for type, range and
consistency with the arrays before anything is allocated (at most :data:`MAX_STEPS` simulation
steps and :data:`MAX_PREDICT_TRIALS` prediction trials), and the optimiser's settings come from
the estimator's parameters rather than from the file.

Pickle and joblib files of the estimators (which the estimators also support) can run arbitrary
code when loaded: load those only from sources you trust, and prefer this format to share
models.

Notes
-----
- The training state (Adam moments, the random generator, the best weights of early stopping)
  is stored too, so ``partial_fit`` or a ``warm_start`` fit after :func:`load` continues exactly
  as it would have on the saved estimator.
- ``random_state`` given as a ``numpy.random.RandomState`` instance cannot be written as JSON;
  it is stored as ``None`` with a warning. Predictions of the loaded model are unaffected (they
  use the stored prediction seed); a later ``fit`` from scratch is then not reproducible.
- ``hidden_layer_sizes`` given as a numpy array comes back as a list.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import warnings
import zipfile
from typing import IO, Any

import numpy as np
import torch
from sklearn.preprocessing import LabelEncoder

from ._version import __version__
from .encoding import ENCODINGS
from .engines import ENGINES
from .estimators import (
    _SEED_MAX,
    InconsistentVersionWarning,
    SpikingClassifier,
    SpikingRegressor,
)
from .network import SpikingNetwork
from .neuron import RESETS, LIFParameters
from .surrogates import ESCAPE_NOISE, SURROGATES, EscapeNoise, Surrogate

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileError", "load", "save"]

FORMAT = "sksnn-model"
FORMAT_VERSION = 1
_HEADER, _PARAMS, _ARRAYS = "header.json", "params.json", "arrays.npz"
_MEMBERS = (_HEADER, _PARAMS, _ARRAYS)
_ESTIMATORS = {cls.__name__: cls for cls in (SpikingClassifier, SpikingRegressor)}
# Fitted attributes held in params.json; arrays and training state are handled apart.
_INT_ATTRIBUTES = ("n_features_in_ n_outputs_ n_iter_ t_ _input_ndim _predict_seed "
                   "_no_improvement_count").split()  # fmt: skip
_FLOAT_ATTRIBUTES = "loss_curve_ best_loss_ validation_scores_ best_validation_score_".split()
# Largest simulation length and number of prediction trials a model file may ask for: a
# larger value is valid for an estimator built in code, but from a file it would only make
# predict run for hours or exhaust memory.
MAX_STEPS = 1_000_000
MAX_PREDICT_TRIALS = 10_000


class ModelFileError(ValueError):
    """A model file is not a valid, intact sksnn model file."""


PathOrFile = str | os.PathLike[str] | IO[bytes]


# ------------------------------------------------------------------------------------------
# JSON encoding of parameter values
# ------------------------------------------------------------------------------------------
def _encode(value: Any, where: str) -> Any:
    """JSON form of a value; tuples, dicts, surrogates and escape noise get a one-key tag."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, where) for v in value]}
    if isinstance(value, list | np.ndarray):
        return [_encode(v, where) for v in list(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: _encode(v, where) for k, v in value.items()}}
    for base, registry, tag in (
        (Surrogate, SURROGATES, "__surrogate__"),
        (EscapeNoise, ESCAPE_NOISE, "__escape_noise__"),
    ):
        if isinstance(value, base):
            cls = type(value)
            if registry.get(cls.name) is not cls:
                raise TypeError(
                    f"Cannot save {where}: {cls.__qualname__} is not registered. Decorate a "
                    "user-defined surrogate with sksnn.surrogates.register_surrogate (and "
                    "register it again before loading)."
                )
            return {tag: {"name": cls.name, "fields": _fields(value, where)}}
    raise TypeError(
        f"Cannot save {where}: values of type {type(value).__name__} are not supported."
    )


def _fields(obj: Any, where: str) -> dict[str, Any]:
    return {f.name: _encode(getattr(obj, f.name), where) for f in dataclasses.fields(obj)}


def _decode(value: Any, where: str) -> Any:
    if isinstance(value, list):
        return [_decode(v, where) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise ModelFileError(f"Malformed value of {where}: {value!r}.")
    ((tag, content),) = value.items()
    if tag == "__tuple__" and isinstance(content, list):
        return tuple(_decode(v, where) for v in content)
    if tag == "__dict__" and isinstance(content, dict):
        return {k: _decode(v, where) for k, v in content.items()}
    if tag in ("__surrogate__", "__escape_noise__") and isinstance(content, dict):
        registry = SURROGATES if tag == "__surrogate__" else ESCAPE_NOISE
        kind = "surrogate" if tag == "__surrogate__" else "escape noise"
        name, fields = content.get("name"), content.get("fields")
        if not isinstance(name, str) or not isinstance(fields, dict):
            raise ModelFileError(f"Malformed {kind} in {where}: {content!r}.")
        if name not in registry:
            raise ModelFileError(
                f"Unknown {kind} {name!r} in {where}; a user-defined surrogate must be "
                "registered with sksnn.surrogates.register_surrogate before loading."
            )
        try:
            return registry[name](**{k: _decode(v, where) for k, v in fields.items()})
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"Invalid {kind} {name!r} in {where}: {exc}") from None
    raise ModelFileError(f"Malformed value of {where}: unknown tag {tag!r}.")


# ------------------------------------------------------------------------------------------
# Saving
# ------------------------------------------------------------------------------------------
def _params_json(estimator) -> dict[str, Any]:
    params = {}
    for name, value in estimator.get_params(deep=False).items():
        if isinstance(value, np.random.RandomState):
            warnings.warn(
                "random_state is a RandomState instance, which cannot be saved; it is stored "
                "as None. Predictions of the loaded model are unaffected.",
                UserWarning,
                stacklevel=3,
            )
            value = None
        params[name] = _encode(value, f"parameter {name!r}")
    return params


def _typed(array: np.ndarray, name: str) -> tuple[np.ndarray, bool]:
    """Non-object version of a label array, and whether the original had object dtype."""
    array = np.asarray(array)
    if array.dtype != object:
        return array, False
    typed = np.array(array.tolist())
    if typed.dtype.kind not in "biufU" or typed.shape != array.shape:
        raise TypeError(f"Cannot save {name}: its values are not all strings or all numbers.")
    return typed, True


def _fitted_state(estimator) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """JSON-able fitted state and the arrays, for a fitted estimator."""
    module: SpikingNetwork = estimator.module_
    arrays = {f"module.{k}": _cpu(v) for k, v in module.state_dict().items()}
    lif = {
        f.name: _encode(getattr(module.lif, f.name), "module_.lif")
        for f in dataclasses.fields(module.lif)
    }
    state: dict[str, Any] = {
        "module": {
            "n_inputs": int(module.n_inputs),
            "hidden_layer_sizes": list(module.hidden_layer_sizes),
            "n_outputs": int(module.n_outputs),
            "recurrent": bool(module.recurrent),
            "encoding": module.encoding,
            "n_steps": int(module.n_steps),
            "engine": module.engine,
            "lif": lif,
        }
    }
    for name in [*_attribute_names(estimator), *_FLOAT_ATTRIBUTES]:
        state[name] = _encode(getattr(estimator, name), name)
    if not _is_regressor(estimator):
        arrays["classes_"], state["classes_object"] = _typed(estimator.classes_, "classes_")
    else:
        arrays["_y_mean"] = np.asarray(estimator._y_mean, dtype=np.float64)
        arrays["_y_scale"] = np.asarray(estimator._y_scale, dtype=np.float64)
    state["feature_names_in_"] = hasattr(estimator, "feature_names_in_")
    if state["feature_names_in_"]:
        arrays["feature_names_in_"], _ = _typed(estimator.feature_names_in_, "feature_names_in_")
    state["firing_rates_"] = hasattr(estimator, "firing_rates_")
    if state["firing_rates_"]:
        arrays["firing_rates_"] = np.asarray(estimator.firing_rates_, dtype=np.float64)

    kind, keys, pos, has_gauss, cached = estimator._rng.get_state(legacy=True)
    state["rng"] = [kind, int(pos), int(has_gauss), float(cached)]
    arrays["rng.keys"] = np.asarray(keys, dtype=np.uint32)

    opt = estimator._optimizer.state_dict()
    state["optimizer"] = {
        "param_groups": _encode(opt["param_groups"], "optimizer"),
        "state": {str(i): sorted(s) for i, s in opt["state"].items()},
    }
    for i, s in opt["state"].items():
        for key, value in s.items():
            if not torch.is_tensor(value):
                raise TypeError(f"Cannot save optimizer state {key!r}: not a tensor.")
            arrays[f"optimizer.{i}.{key}"] = _cpu(value)

    best = estimator._best_state
    state["best_state"] = best is not None
    if best is not None:
        arrays.update({f"best_state.{k}": _cpu(v) for k, v in best.items()})
    return state, arrays


def _cpu(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().copy()


def _is_regressor(estimator) -> bool:
    return isinstance(estimator, SpikingRegressor)


def _attribute_names(estimator) -> list[str]:
    return [*_INT_ATTRIBUTES, *(["_y_ndim", "_y_count"] if _is_regressor(estimator) else [])]


def save(estimator: SpikingClassifier | SpikingRegressor, path: PathOrFile) -> None:
    """Write an estimator to a safe model file (JSON and raw arrays, no pickle).

    Parameters
    ----------
    estimator : SpikingClassifier or SpikingRegressor
        Fitted or not; an unfitted estimator is saved with its parameters only.
    path : str, path-like or binary file object
        Where to write; the suffix ``.sksnn`` is a good choice.

    Raises
    ------
    TypeError
        If the estimator is not an sksnn estimator, or a parameter cannot be stored (e.g. a
        surrogate type that is not registered).
    ValueError
        If a parameter is invalid (as ``fit`` would say): :func:`load` would refuse the file.

    Examples
    --------
    >>> import numpy as np, sksnn.io, tempfile, os
    >>> from sksnn import SpikingClassifier
    >>> X, y = np.random.RandomState(0).rand(40, 3), np.arange(40) % 2
    >>> clf = SpikingClassifier((8,), n_steps=5, max_iter=2, random_state=0).fit(X, y)
    ... # doctest: +SKIP
    >>> path = os.path.join(tempfile.mkdtemp(), "model.sksnn")  # doctest: +SKIP
    >>> sksnn.io.save(clf, path)  # doctest: +SKIP
    >>> (sksnn.io.load(path).predict(X) == clf.predict(X)).all()  # doctest: +SKIP
    np.True_
    """
    if _ESTIMATORS.get(type(estimator).__name__) is not type(estimator):
        raise TypeError(
            f"sksnn.io.save expects a SpikingClassifier or SpikingRegressor, "
            f"got {type(estimator).__name__}."
        )
    estimator._validate_params()
    document: dict[str, Any] = {
        "estimator": type(estimator).__name__,
        "params": _params_json(estimator),
        "fitted": None,
    }
    arrays: dict[str, np.ndarray] = {}
    if hasattr(estimator, "module_"):
        document["fitted"], arrays = _fitted_state(estimator)
    params_bytes = json.dumps(document, indent=1, sort_keys=True).encode("utf-8")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    arrays_bytes = buffer.getvalue()
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sksnn_version": __version__,
        "sha256": {
            _PARAMS: hashlib.sha256(params_bytes).hexdigest(),
            _ARRAYS: hashlib.sha256(arrays_bytes).hexdigest(),
        },
    }
    # Stored, not deflated: member sizes then cannot exceed the file size when loading.
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(_HEADER, json.dumps(header, indent=1, sort_keys=True))
        archive.writestr(_PARAMS, params_bytes)
        archive.writestr(_ARRAYS, arrays_bytes)


# ------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------
def _read_members(path: PathOrFile) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(path, "r") as archive:
            infos = archive.infolist()
            names = [info.filename for info in infos]
            if sorted(names) != sorted(_MEMBERS):
                extra = sorted(set(names) - set(_MEMBERS))
                missing = sorted(set(_MEMBERS) - set(names))
                raise ModelFileError(
                    f"Not an sksnn model file: expected members {list(_MEMBERS)}, found "
                    f"{names} (unexpected {extra}, missing {missing})."
                )
            if any(info.compress_type != zipfile.ZIP_STORED for info in infos):
                raise ModelFileError("Not an sksnn model file: members must be stored.")
            return {info.filename: archive.read(info) for info in infos}
    except (ModelFileError, FileNotFoundError):
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError) as exc:  # fmt: skip
        raise ModelFileError(f"Not a readable sksnn model file: {exc}") from None


def _json(data: bytes, name: str) -> dict[str, Any]:
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ModelFileError(f"{name} must hold a JSON object.")
    return document


def _check_header(header: dict[str, Any], members: dict[str, bytes]) -> None:
    if header.get("format") != FORMAT:
        raise ModelFileError(f"Not an sksnn model file: format is {header.get('format')!r}.")
    version = header.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ModelFileError(
            f"Unsupported model file format version {version!r}; this sksnn reads up to "
            f"{FORMAT_VERSION}. Upgrade sksnn to load it."
        )
    checksums = header.get("sha256")
    if not isinstance(checksums, dict):
        raise ModelFileError("The header has no sha256 checksums.")
    for name in (_PARAMS, _ARRAYS):
        if checksums.get(name) != hashlib.sha256(members[name]).hexdigest():
            raise ModelFileError(
                f"Checksum mismatch for {name}: the file is corrupted or was modified."
            )
    saved = header.get("sksnn_version")
    if saved != __version__:
        warnings.warn(
            f"Loading a model file written by sksnn {saved} with sksnn {__version__}. This might "
            "lead to breaking code or invalid results.",
            InconsistentVersionWarning,
            stacklevel=3,
        )


def _read_arrays(data: bytes) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            if any(info.compress_type != zipfile.ZIP_STORED for info in inner.infolist()):
                raise ModelFileError(f"{_ARRAYS} members must be stored, not compressed.")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        # Object arrays land here too: allow_pickle=False refuses to unpickle them.
        raise ModelFileError(f"{_ARRAYS} is not a valid array archive: {exc}") from None


def _expect(arrays: dict[str, np.ndarray], name: str, shape: tuple[int, ...], kinds: str):
    """The array ``name``, checked for shape and dtype kind."""
    if name not in arrays:
        raise ModelFileError(f"The model file is missing the array {name!r}.")
    array = arrays[name]
    if array.shape != tuple(shape):
        raise ModelFileError(
            f"Array {name!r} has shape {array.shape}, but the model needs {tuple(shape)}."
        )
    if array.dtype.kind not in kinds:
        raise ModelFileError(f"Array {name!r} has unexpected dtype {array.dtype}.")
    return array


def _int(state: dict[str, Any], name: str, low: int = 0, high: int | None = None) -> int:
    value = state.get(name)
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ModelFileError(f"{name!r} must be an integer {bounds}, got {value!r}.")
    return value


def _real(value: Any, name: str, low: float, high: float = math.inf, *, low_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ModelFileError(f"{name} must be a finite number, got {value!r}.")
    if value < low or (low_open and value == low) or value > high:
        raise ModelFileError(f"{name} is out of range: {value!r}.")
    return float(value)


def _float_list(value: Any, name: str) -> list[float]:
    if not isinstance(value, list):
        raise ModelFileError(f"{name} must be a list of numbers, got {type(value).__name__}.")
    return [_real(v, name, -math.inf) for v in value]


def _optional_real(value: Any, name: str) -> float | None:
    # best scores start at -inf and best losses at inf (as in scikit-learn's MLP)
    if value is None or (isinstance(value, float) and math.isinf(value)):
        return value
    return _real(value, name, -math.inf)


def _checked_lif(config: Any) -> LIFParameters:
    """LIF constants of the file, each checked for type and range."""
    names = {f.name for f in dataclasses.fields(LIFParameters)}
    if not isinstance(config, dict) or set(config) != names:
        raise ModelFileError(f"module_.lif must hold exactly the fields {sorted(names)}.")
    lif = {k: _decode(v, "module_.lif") for k, v in config.items()}
    for name in ("alpha_syn", "alpha_mem"):
        _real(lif[name], f"module_.lif.{name}", 0.0, 1.0)
    _real(lif["threshold"], "module_.lif.threshold", 0.0, low_open=True)
    _real(lif["temperature"], "module_.lif.temperature", 0.0)
    if not isinstance(lif["escape_noise"], EscapeNoise):
        raise ModelFileError("module_.lif.escape_noise is not an escape noise.")
    if not isinstance(lif["surrogate"], Surrogate):
        raise ModelFileError("module_.lif.surrogate is not a surrogate.")
    if lif["reset"] not in RESETS:
        raise ModelFileError(f"module_.lif.reset must be one of {RESETS}, got {lif['reset']!r}.")
    if not isinstance(lif["detach_reset"], bool):
        raise ModelFileError("module_.lif.detach_reset must be true or false.")
    return LIFParameters(**lif)


def _network_shapes(config: Any) -> dict[str, Any]:
    """Constructor arguments of the network and the shape of each of its arrays, from the
    file's network configuration, checked before anything is allocated."""
    keys = {"n_inputs", "hidden_layer_sizes", "n_outputs", "recurrent", "encoding", "n_steps",
            "engine", "lif"}  # fmt: skip
    if not isinstance(config, dict) or set(config) != keys:
        raise ModelFileError(f"The network configuration must hold exactly {sorted(keys)}.")
    sizes = config["hidden_layer_sizes"]
    if not isinstance(sizes, list) or not sizes:
        raise ModelFileError("module_.hidden_layer_sizes must be a non-empty list.")
    sizes = [_int({"size": h}, "size", low=1) for h in sizes]
    n_inputs = _int(config, "n_inputs", low=1)
    n_outputs = _int(config, "n_outputs", low=1)
    if not isinstance(config["recurrent"], bool):
        raise ModelFileError("module_.recurrent must be true or false.")
    if config["encoding"] not in ENCODINGS:
        raise ModelFileError(f"module_.encoding must be one of {ENCODINGS}.")
    if config["engine"] not in ("auto", *ENGINES):
        raise ModelFileError(f"module_.engine must be 'auto' or one of {ENGINES}.")
    arguments = {
        "n_inputs": n_inputs,
        "hidden_layer_sizes": tuple(sizes),
        "n_outputs": n_outputs,
        "lif": _checked_lif(config["lif"]),
        "recurrent": config["recurrent"],
        "encoding": config["encoding"],
        "n_steps": _int(config, "n_steps", low=1, high=MAX_STEPS),
        "engine": config["engine"],
    }
    fan_in = [n_inputs, *sizes[:-1]]
    shapes = {}
    for i, (n, h) in enumerate(zip(fan_in, sizes, strict=True)):
        shapes[f"layers.{i}.weight"] = (h, n)
        if config["recurrent"]:
            shapes[f"layers.{i}.recurrent_weight"] = (h, h)
    shapes["readout.weight"] = (n_outputs, sizes[-1])
    shapes["readout.bias"] = (n_outputs,)
    return {"arguments": arguments, "shapes": shapes}


def _finite(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ModelFileError(f"Array {name!r} holds NaN or infinite values.")
    return array


def _restore_fitted(estimator, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    arrays = dict(arrays)
    used: set[str] = set()

    def take(name, shape, kinds="f"):
        used.add(name)
        return _finite(_expect(arrays, name, shape, kinds), name)

    network = _network_shapes(state.get("module"))
    shapes = network["shapes"]
    n_features, n_outputs = _int(state, "n_features_in_", 1), _int(state, "n_outputs_", 1)
    n_inputs = network["arguments"]["n_inputs"]
    if n_inputs != n_features or shapes["readout.bias"] != (n_outputs,):
        raise ModelFileError(
            "The network does not match n_features_in_/n_outputs_ of the model file."
        )
    # every array is checked against the configuration before the network is built, so a
    # forged size cannot make loading allocate more than the file holds
    module_state = {k: take(f"module.{k}", shape) for k, shape in shapes.items()}
    best_state = None
    if state.get("best_state"):
        best_state = {k: take(f"best_state.{k}", shape) for k, shape in shapes.items()}

    estimator._input_ndim = _int(state, "_input_ndim", 2, 3)
    estimator._predict_seed = _int(state, "_predict_seed", 0, _SEED_MAX)
    estimator.n_iter_ = _int(state, "n_iter_")
    estimator.t_ = _int(state, "t_")
    estimator._no_improvement_count = _int(state, "_no_improvement_count")
    estimator.n_features_in_, estimator.n_outputs_ = n_features, n_outputs
    for name in _FLOAT_ATTRIBUTES:
        if name not in state:
            raise ModelFileError(f"The model file is missing the fitted attribute {name!r}.")
    estimator.loss_curve_ = _float_list(state["loss_curve_"], "loss_curve_")
    if len(estimator.loss_curve_) != estimator.n_iter_:
        raise ModelFileError("loss_curve_ must hold one loss per iteration (n_iter_).")
    scores = state["validation_scores_"]
    estimator.validation_scores_ = None if scores is None else _float_list(scores, "scores")
    estimator.best_loss_ = _optional_real(state["best_loss_"], "best_loss_")
    estimator.best_validation_score_ = _optional_real(
        state["best_validation_score_"], "best_validation_score_"
    )
    if not _is_regressor(estimator):
        classes = take("classes_", (n_outputs,), "biufU")
        if n_outputs < 2 or not np.array_equal(np.unique(classes), classes):
            raise ModelFileError("classes_ must hold at least 2 distinct labels, sorted.")
        classes = classes.astype(object) if state.get("classes_object") else classes
        estimator.classes_ = classes
        encoder = LabelEncoder()
        encoder.classes_ = classes
        estimator._label_encoder = encoder
    else:
        estimator._y_ndim = _int(state, "_y_ndim", 1, 2)
        if estimator._y_ndim == 1 and n_outputs != 1:
            raise ModelFileError("A regressor fitted on 1-D y has exactly one output.")
        estimator._y_count = _int(state, "_y_count", 1)
        estimator._y_mean = take("_y_mean", (n_outputs,))
        estimator._y_scale = take("_y_scale", (n_outputs,))
        if (estimator._y_scale < 0).any():
            raise ModelFileError("The target scale _y_scale must be >= 0.")
    if state.get("feature_names_in_"):
        estimator.feature_names_in_ = take("feature_names_in_", (n_features,), "U").astype(object)
    if state.get("firing_rates_"):
        n_layers = len(network["arguments"]["hidden_layer_sizes"])
        rates = take("firing_rates_", (n_layers,))
        if ((rates < 0) | (rates > 1)).any():
            raise ModelFileError("firing_rates_ must lie in [0, 1].")
        estimator.firing_rates_ = rates

    rng = state.get("rng")
    if not (isinstance(rng, list) and len(rng) == 4 and rng[0] == "MT19937"):
        raise ModelFileError("Malformed random generator state in the model file.")
    _, pos, has_gauss, cached = rng
    pos = _int({"position": pos}, "position", 0, 624)
    has_gauss = _int({"has_gauss": has_gauss}, "has_gauss", 0, 1)
    estimator._rng = np.random.RandomState()
    estimator._rng.set_state(
        ("MT19937", take("rng.keys", (624,), "u"), pos, has_gauss, _real(cached, "rng", -math.inf))
    )

    module = SpikingNetwork(**network["arguments"])
    module.load_state_dict({k: torch.tensor(v) for k, v in module_state.items()})
    params = list(module.parameters())
    # The optimiser's settings come from the estimator (learning_rate_init, refreshed on every
    # fit), never from the file; only Adam's per-parameter moments and step counts are read.
    optimizer = torch.optim.Adam(params, lr=estimator.learning_rate_init)
    stored = state.get("optimizer")
    entries = stored.get("state") if isinstance(stored, dict) else None
    if not isinstance(entries, dict):
        raise ModelFileError("Malformed optimizer state in the model file.")
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for index, keys in entries.items():
        if not (index.isdigit() and int(index) < len(params)) or not isinstance(keys, list):
            raise ModelFileError(f"Malformed optimizer state for parameter {index!r}.")
        if sorted(keys) != ["exp_avg", "exp_avg_sq", "step"]:
            raise ModelFileError(f"Unexpected optimizer state {keys!r} in the model file.")
        for key in keys:
            # Adam's step counter is a scalar; the moments have their parameter's shape.
            shape, kinds = ((), "fiu") if key == "step" else (params[int(index)].shape, "f")
            array = take(f"optimizer.{index}.{key}", shape, kinds)
            if key != "exp_avg" and (array < 0).any():
                raise ModelFileError(f"Optimizer state {key!r} must be >= 0.")
            opt_state.setdefault(int(index), {})[key] = torch.tensor(array)
    groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    estimator._optimizer = optimizer
    estimator._best_state = (
        None if best_state is None else {k: torch.tensor(v) for k, v in best_state.items()}
    )
    unexpected = sorted(set(arrays) - used)
    if unexpected:
        raise ModelFileError(f"The model file has unexpected arrays {unexpected}.")
    estimator.module_ = module


def load(path: PathOrFile) -> SpikingClassifier | SpikingRegressor:
    """Load an estimator written by :func:`save`, executing no code from the file.

    Parameters
    ----------
    path : str, path-like or binary file object

    Returns
    -------
    SpikingClassifier or SpikingRegressor
        With the same parameters and fitted state as the saved one: identical predictions.

    Raises
    ------
    ModelFileError
        If the file is not an sksnn model file, is truncated or modified (checksum mismatch),
        names an unknown estimator type or surrogate, or holds missing, unexpected or
        wrongly shaped arrays.

    Warns
    -----
    InconsistentVersionWarning
        When the file was written by another sksnn version.
    """
    members = _read_members(path)
    _check_header(_json(members[_HEADER], _HEADER), members)
    document = _json(members[_PARAMS], _PARAMS)
    arrays = _read_arrays(members[_ARRAYS])
    name = document.get("estimator")
    if name not in _ESTIMATORS:
        raise ModelFileError(
            f"Unknown estimator type {name!r}; expected one of {sorted(_ESTIMATORS)}."
        )
    params = document.get("params")
    if not isinstance(params, dict):
        raise ModelFileError(f"{_PARAMS} has no parameter object.")
    params = {k: _decode(v, f"parameter {k!r}") for k, v in params.items()}
    try:
        estimator = _ESTIMATORS[name](**params)
        estimator._validate_params()
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"Invalid parameters in the model file: {exc}") from None
    _int(params, "n_steps", 1, MAX_STEPS)
    _int(params, "predict_trials", 1, MAX_PREDICT_TRIALS)
    fitted = document.get("fitted")
    if fitted is None:
        if arrays:
            raise ModelFileError(f"An unfitted model file has unexpected arrays {sorted(arrays)}.")
        return estimator
    if not isinstance(fitted, dict):
        raise ModelFileError(f"Malformed fitted state in {_PARAMS}.")
    try:
        _restore_fitted(estimator, fitted, arrays)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise ModelFileError(f"Malformed fitted state in the model file: {exc!r}") from None
    return estimator
