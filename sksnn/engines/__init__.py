"""LIF engines behind one interface (:class:`~sksnn.engines.base.Engine`).

:func:`get_engine` is the one place where an engine name becomes an engine: ``"auto"`` is the
first of :data:`ENGINES` that can run here (the compiled engine needs numba).
"""

from __future__ import annotations

import warnings

from .base import Engine, LayerInput
from .compiled import CompiledEngine, compiled_available
from .fused import FusedEngine
from .reference import ReferenceEngine

__all__ = ["ENGINES", "Engine", "LayerInput", "get_engine"]

_REGISTRY: dict[str, type[Engine]] = {
    cls.name: cls for cls in (CompiledEngine, FusedEngine, ReferenceEngine)
}
#: Engine names, in order of preference ("auto" picks the first that can run).
ENGINES = tuple(_REGISTRY)


def get_engine(name: str) -> Engine:
    """The engine named ``name`` ("auto" or one of :data:`ENGINES`)."""
    if name == "auto":
        name = ENGINES[0] if compiled_available() else ENGINES[1]
    elif name == "compiled" and not compiled_available():
        # numba is a dependency, but may fail to load (e.g. built for another NumPy): the
        # fused engine computes the same
        warnings.warn(
            "engine='compiled' needs numba, which does not load here; using engine='fused'.",
            RuntimeWarning,
            stacklevel=2,
        )
        name = "fused"
    if name not in _REGISTRY:
        raise ValueError(f"Unknown LIF engine {name!r}; expected 'auto' or one of {ENGINES}.")
    return _REGISTRY[name]()
