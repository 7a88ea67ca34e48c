"""Helpers shared by the theory modules: vector comparisons and a gradient-comparison record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

import numpy as np

from ..neuron import LIFParameters

__all__ = ["GradientComparison", "cosine_similarity", "relative_error"]


def _flat(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).ravel()


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two vectors (flattened); NaN if either is zero.

    Parameters
    ----------
    a, b : array-like
        Vectors of the same size.

    Returns
    -------
    float

    Examples
    --------
    >>> cosine_similarity([1.0, 0.0], [1.0, 1.0])  # doctest: +ELLIPSIS
    0.7071...
    """
    a, b = _flat(a), _flat(b)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return float("nan")
    return float(a @ b / (na * nb))


def relative_error(approx: np.ndarray, exact: np.ndarray) -> float:
    """``||approx - exact|| / ||exact||`` (Euclidean norms of the flattened arrays).

    Parameters
    ----------
    approx, exact : array-like
        Arrays of the same size.

    Returns
    -------
    float
        Infinite when ``exact`` is zero and ``approx`` is not, 0 when both are zero.

    Examples
    --------
    >>> relative_error([1.1, 0.0], [1.0, 0.0])  # doctest: +ELLIPSIS
    0.1000...
    """
    approx, exact = _flat(approx), _flat(exact)
    diff = np.linalg.norm(approx - exact)
    norm = np.linalg.norm(exact)
    if norm == 0:
        return 0.0 if diff == 0 else float("inf")
    return float(diff / norm)


def check_int(value, name: str, low: int = 1) -> int:
    """``value`` as an int when it is an integer >= ``low``; a ValueError naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    return int(value)


def check_lif(lif) -> None:
    """A TypeError unless ``lif`` is a :class:`~sksnn.neuron.LIFParameters`."""
    if not isinstance(lif, LIFParameters):
        raise TypeError(
            f"lif must be a sksnn.neuron.LIFParameters, got {type(lif).__name__}; e.g. "
            "LIFParameters(temperature=0.2)."
        )


def _is_hidden(name: str) -> bool:
    return name.startswith("layers.")


@dataclass
class GradientComparison:
    """The exact gradient of an expected loss next to the expected surrogate gradient.

    Attributes
    ----------
    expected_loss : float
        ``E[L]`` over the network's spike noise (mean over the input samples).
    exact : dict of str to ndarray
        ``dE[L]/dtheta`` per named parameter of the network.
    surrogate : dict of str to ndarray
        ``E[dL/dtheta]`` computed by backpropagation with the surrogate derivative, averaged
        over the spike patterns with their probabilities (what a surrogate-gradient step
        follows on average).
    n_paths : int
        Spike patterns per input sample: all ``2**B`` of them (``method="enumerate"``) or the
        number sampled (``method="sample"``).
    method : {"enumerate", "sample"}
        Exact enumeration, or Monte-Carlo estimates (then both gradients carry standard
        errors).
    exact_stderr, surrogate_stderr : dict of str to ndarray or None
        Standard errors of the Monte-Carlo estimates; None for enumeration.

    Notes
    -----
    The summaries (:meth:`cosine`, :meth:`relative_error`, :meth:`sign_agreement`) default to
    the hidden-layer weights: the readout weights do not pass through a spike, so their two
    gradients agree whatever the surrogate, and including them would flatter the comparison.
    """

    expected_loss: float
    exact: dict[str, np.ndarray]
    surrogate: dict[str, np.ndarray]
    n_paths: int
    method: str = "enumerate"
    exact_stderr: dict[str, np.ndarray] | None = None
    surrogate_stderr: dict[str, np.ndarray] | None = None

    def names(self, params: Sequence[str] | None = None) -> list[str]:
        """Parameter names a summary uses: ``params``, or all hidden-layer weights."""
        if params is None:
            return [n for n in self.exact if _is_hidden(n)]
        unknown = [n for n in params if n not in self.exact]
        if unknown:
            raise KeyError(f"Unknown parameters {unknown}; known: {list(self.exact)}.")
        return list(params)

    def vectors(self, params: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The exact and surrogate gradients of ``params`` as two flat vectors."""
        names = self.names(params)
        exact = np.concatenate([self.exact[n].ravel() for n in names])
        surrogate = np.concatenate([self.surrogate[n].ravel() for n in names])
        return exact, surrogate

    def cosine(self, params: Sequence[str] | None = None) -> float:
        """Cosine similarity of the surrogate and the exact gradient."""
        exact, surrogate = self.vectors(params)
        return cosine_similarity(surrogate, exact)

    def relative_error(self, params: Sequence[str] | None = None) -> float:
        """``||surrogate - exact|| / ||exact||``."""
        exact, surrogate = self.vectors(params)
        return relative_error(surrogate, exact)

    def sign_agreement(self, params: Sequence[str] | None = None, rtol: float = 1e-6) -> float:
        """Share of gradient entries where surrogate and exact gradient have the same sign.

        Entries whose exact value is below ``rtol`` times the largest one are left out (their
        sign is round-off).
        """
        exact, surrogate = self.vectors(params)
        keep = np.abs(exact) > rtol * np.abs(exact).max()
        if not keep.any():
            return float("nan")
        return float(np.mean(np.sign(exact[keep]) == np.sign(surrogate[keep])))
