"""Safe model files: save and load fitted estimators without pickle.

A model file is a zip archive (uncompressed) with three members:

``header.json``
    ``{"format": "sksnn-model", "format_version": 3, "sksnn_version": ..., "sha256": {...}}``:
    the SHA-256 checksum of each of the two payload members below.
``params.json``
    The estimator type, its constructor parameters and its fitted state (the same state that
    pickling uses, see ``__getstate__``) as plain JSON, each array replaced by a reference into
``arrays.npz``
    which holds every array (network weights, optimiser moments, ``classes_``, ...) as ``.npy``
    members, read back with ``allow_pickle=False``.

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
import os
import warnings
import zipfile
from typing import IO, Any

import numpy as np

from ._nir import NIRGraphError, from_nir, to_nir
from ._state import FittedStateError, build_estimator, check_params
from ._version import __version__
from .estimators import InconsistentVersionWarning, SpikingClassifier, SpikingRegressor
from .neuron import LIFParameters
from .surrogates import ESCAPE_NOISE, SURROGATES, EscapeNoise, Surrogate

__all__ = ["FORMAT", "FORMAT_VERSION", "MAX_PREDICT_TRIALS", "MAX_STEPS", "ModelFileError",
           "NIRGraphError", "from_nir", "load", "save", "to_nir"]  # fmt: skip

FORMAT = "sksnn-model"
FORMAT_VERSION = 3
_HEADER, _PARAMS, _ARRAYS = "header.json", "params.json", "arrays.npz"
_MEMBERS = (_HEADER, _PARAMS, _ARRAYS)
_ESTIMATORS = {cls.__name__: cls for cls in (SpikingClassifier, SpikingRegressor)}
# Largest simulation length and number of prediction trials a model file may ask for: a
# larger value is valid for an estimator built in code, but from a file it would only make
# predict run for hours or exhaust memory.
MAX_STEPS = 1_000_000
MAX_PREDICT_TRIALS = 10_000


class ModelFileError(ValueError):
    """A model file is not a valid, intact sksnn model file."""


PathOrFile = str | os.PathLike[str] | IO[bytes]


# ------------------------------------------------------------------------------------------
# JSON encoding of the state: plain values, tagged containers and objects, array references
# ------------------------------------------------------------------------------------------
_OBJECTS = (
    (Surrogate, SURROGATES, "__surrogate__"),
    (EscapeNoise, ESCAPE_NOISE, "__escape_noise__"),
)


class _Encoder:
    """Turns a state into JSON values, collecting its arrays under dotted names."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def __call__(self, value: Any, where: str) -> Any:
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, np.ndarray):
            self.arrays[where], is_object = _typed(value, where)
            return {"__array__": {"name": where, "object": is_object}}
        if isinstance(value, tuple):
            return {"__tuple__": [self(v, f"{where}.{i}") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self(v, f"{where}.{i}") for i, v in enumerate(value)]
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return {"__dict__": {k: self(v, f"{where}.{k}") for k, v in value.items()}}
        if isinstance(value, LIFParameters):
            return {"__lif__": _fields(value, where, self)}
        for base, registry, tag in _OBJECTS:
            if isinstance(value, base):
                cls = type(value)
                if registry.get(cls.name) is not cls:
                    raise TypeError(
                        f"Cannot save {where}: {cls.__qualname__} is not registered. Decorate "
                        "a user-defined surrogate with sksnn.surrogates.register_surrogate (and "
                        "register it again before loading)."
                    )
                return {tag: {"name": cls.name, "fields": _fields(value, where, self)}}
        raise TypeError(
            f"Cannot save {where}: values of type {type(value).__name__} are not supported."
        )


def _fields(obj: Any, where: str, encode) -> dict[str, Any]:
    return {f.name: encode(getattr(obj, f.name), where) for f in dataclasses.fields(obj)}


class _Decoder:
    """Rebuilds values from :class:`_Encoder`'s JSON, taking arrays from the archive."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays
        self.used: set[str] = set()

    def __call__(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            return [self(v, where) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            raise ModelFileError(f"Malformed value of {where}: {value!r}.")
        ((tag, content),) = value.items()
        if tag == "__tuple__" and isinstance(content, list):
            return tuple(self(v, where) for v in content)
        if tag == "__dict__" and isinstance(content, dict):
            return {k: self(v, f"{where}.{k}") for k, v in content.items()}
        if tag == "__array__" and isinstance(content, dict):
            return self._array(content, where)
        if tag == "__lif__" and isinstance(content, dict):
            return self._object(LIFParameters, content, where)
        for _, registry, object_tag in _OBJECTS:
            if tag == object_tag and isinstance(content, dict):
                kind = "surrogate" if registry is SURROGATES else "escape noise"
                name, fields = content.get("name"), content.get("fields")
                if not isinstance(name, str) or not isinstance(fields, dict):
                    raise ModelFileError(f"Malformed {kind} in {where}: {content!r}.")
                if name not in registry:
                    raise ModelFileError(
                        f"Unknown {kind} {name!r} in {where}; a user-defined surrogate must be "
                        "registered with sksnn.surrogates.register_surrogate before loading."
                    )
                return self._object(registry[name], fields, where)
        raise ModelFileError(f"Malformed value of {where}: unknown tag {tag!r}.")

    def _array(self, content: dict[str, Any], where: str) -> np.ndarray:
        name = content.get("name")
        if name not in self.arrays:
            raise ModelFileError(f"The model file is missing the array {name!r} ({where}).")
        self.used.add(name)
        array = self.arrays[name]
        return array.astype(object) if content.get("object") is True else array

    def _object(self, cls: type, fields: dict[str, Any], where: str) -> Any:
        names = {f.name for f in dataclasses.fields(cls)}
        if set(fields) != names:
            raise ModelFileError(f"{cls.__name__} in {where} needs the fields {sorted(names)}.")
        try:
            return cls(**{k: self(v, where) for k, v in fields.items()})
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"Invalid {cls.__name__} in {where}: {exc}") from None


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
        params[name] = _Encoder()(value, f"parameter {name!r}")
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
    check_params(estimator)
    state = estimator.__getstate__()
    params = _params_json(estimator)
    encode = _Encoder()
    fitted = {k: v for k, v in state.items() if k not in params and k != "_sksnn_version"}
    document: dict[str, Any] = {
        "estimator": type(estimator).__name__,
        "params": params,
        "fitted": {k: encode(v, k) for k, v in fitted.items()} if fitted else None,
    }
    arrays = encode.arrays
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
    decode = _Decoder({})
    params = {k: decode(v, f"parameter {k!r}") for k, v in params.items()}
    for param, high in (("n_steps", MAX_STEPS), ("predict_trials", MAX_PREDICT_TRIALS)):
        value = params.get(param)
        if isinstance(value, bool) or not isinstance(value, int) or value > high:
            raise ModelFileError(f"{param} must be an integer of at most {high}, got {value!r}.")
    fitted = document.get("fitted")
    if fitted is not None and not isinstance(fitted, dict):
        raise ModelFileError(f"Malformed fitted state in {_PARAMS}.")
    decode = _Decoder(arrays)
    state = None if fitted is None else {k: decode(v, k) for k, v in fitted.items()}
    unexpected = sorted(set(arrays) - decode.used)
    if unexpected:
        raise ModelFileError(f"The model file has unexpected arrays {unexpected}.")
    try:
        return build_estimator(_ESTIMATORS[name], params, state, strict=True, max_steps=MAX_STEPS)
    except FittedStateError as exc:
        raise ModelFileError(f"Invalid fitted state in the model file: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise ModelFileError(f"Invalid model file: {exc}") from None
