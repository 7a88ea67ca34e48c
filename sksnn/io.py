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
who can write the file can recompute it. Pickle and joblib files of the estimators (which the
estimators also support) can run arbitrary code when loaded: load those only from sources you
trust, and prefer this format to share models.

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
import os
import warnings
import zipfile
from typing import IO, Any

import numpy as np
import torch
from sklearn.preprocessing import LabelEncoder

from ._version import __version__
from .estimators import InconsistentVersionWarning, SpikingClassifier, SpikingRegressor
from .lif import LIFParameters
from .network import SpikingNetwork
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
            "n_inputs": int(module.weights[0].shape[1]),
            "hidden_layer_sizes": list(module.hidden_layer_sizes),
            "n_outputs": int(module.readout_weight.shape[0]),
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
    return [*_INT_ATTRIBUTES, *(["_y_ndim"] if _is_regressor(estimator) else [])]


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


def _int(state: dict[str, Any], name: str) -> int:
    value = state.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ModelFileError(f"Fitted attribute {name!r} must be a non-negative integer.")
    return value


def _build_module(config: dict[str, Any]) -> SpikingNetwork:
    try:
        lif = LIFParameters(**{k: _decode(v, "module_.lif") for k, v in config["lif"].items()})
        return SpikingNetwork(
            int(config["n_inputs"]),
            tuple(int(h) for h in config["hidden_layer_sizes"]),
            int(config["n_outputs"]),
            lif,
            recurrent=bool(config["recurrent"]),
            encoding=config["encoding"],
            n_steps=int(config["n_steps"]),
            engine=config["engine"],
        )
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"Invalid network configuration in the model file: {exc!r}") from None


def _restore_fitted(estimator, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    arrays = dict(arrays)
    used: set[str] = set()

    def take(name, shape, kinds="f"):
        used.add(name)
        return _expect(arrays, name, shape, kinds)

    module = _build_module(state["module"])
    n_features, n_outputs = _int(state, "n_features_in_"), _int(state, "n_outputs_")
    if module.weights[0].shape[1] != n_features or module.readout_weight.shape[0] != n_outputs:
        raise ModelFileError(
            "The network does not match n_features_in_/n_outputs_ of the model file."
        )
    module_state = {
        k: torch.tensor(take(f"module.{k}", v.shape)) for k, v in module.state_dict().items()
    }
    module.load_state_dict(module_state)

    for name in _attribute_names(estimator):
        setattr(estimator, name, _int(state, name))
    for name in _FLOAT_ATTRIBUTES:
        if name not in state:
            raise ModelFileError(f"The model file is missing the fitted attribute {name!r}.")
        setattr(estimator, name, _decode(state[name], name))
    if not _is_regressor(estimator):
        classes = take("classes_", (n_outputs,), "biufU")
        classes = classes.astype(object) if state.get("classes_object") else classes
        estimator.classes_ = classes
        encoder = LabelEncoder()
        encoder.classes_ = classes
        estimator._label_encoder = encoder
    else:
        estimator._y_mean = take("_y_mean", (n_outputs,))
        estimator._y_scale = take("_y_scale", (n_outputs,))
    if state.get("feature_names_in_"):
        estimator.feature_names_in_ = take("feature_names_in_", (n_features,), "U").astype(object)
    if state.get("firing_rates_"):
        estimator.firing_rates_ = take("firing_rates_", (len(module.weights),))

    kind, pos, has_gauss, cached = state["rng"]
    estimator._rng = np.random.RandomState()
    estimator._rng.set_state((kind, take("rng.keys", (624,), "u"), pos, has_gauss, cached))

    params = list(module.parameters())
    optimizer = torch.optim.Adam(params, lr=estimator.learning_rate_init)
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for index, keys in state["optimizer"]["state"].items():
        for key in keys:
            # Adam's step counter is a scalar; the moments have their parameter's shape.
            shape, kinds = ((), "fiu") if key == "step" else (params[int(index)].shape, "f")
            array = take(f"optimizer.{index}.{key}", shape, kinds)
            opt_state.setdefault(int(index), {})[key] = torch.tensor(array)
    optimizer.load_state_dict(
        {"state": opt_state, "param_groups": _decode(state["optimizer"]["param_groups"], "opt")}
    )
    estimator._optimizer = optimizer
    estimator._best_state = None
    if state.get("best_state"):
        estimator._best_state = {
            k: torch.tensor(take(f"best_state.{k}", v.shape))
            for k, v in module.state_dict().items()
        }
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
