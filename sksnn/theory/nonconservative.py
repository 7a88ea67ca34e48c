"""Surrogate gradients are not gradients: closed-loop integrals and sign flips.

The line integral of a true gradient field around a closed loop in parameter space is zero
(it is the change of the loss from the start of the loop back to the start). A surrogate
gradient field generally has a non-zero loop integral, so no loss exists whose gradient it is
(Gygax & Zenke, 2025, section 3). Here:

* :func:`loop_integral` integrates any gradient field around a circle in a 2-D plane;
* :func:`sigmoid_net_output` / :func:`sigmoid_net_gradient`: the authors' five-weight network
  ``x -> g -> (h1, h2) -> y`` of steep sigmoids, with the true gradient or a surrogate one;
* :func:`network_gradient_field`: the exact and the expected surrogate gradient of a small
  spiking network (by enumeration) as fields over a parameter subspace;
* :func:`find_sign_flip`: a point where surrogate and true derivative have opposite signs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..network import SpikingNetwork
from ..neuron import spike
from ..surrogates import SigmoidNoise, Surrogate
from .multilayer import enumerate_gradients
from .networks import LossFn, with_lif

__all__ = [
    "SIGMOID_NET_WEIGHTS",
    "LoopIntegral",
    "SignFlip",
    "find_sign_flip",
    "loop_integral",
    "network_gradient_field",
    "random_plane",
    "sigmoid_net_gradient",
    "sigmoid_net_output",
]

SIGMOID_NET_WEIGHTS = ("w", "v1", "v2", "u1", "u2")
_LOGISTIC = SigmoidNoise()


# --------------------------------------------------------------------------------------------
# Loop integrals
# --------------------------------------------------------------------------------------------
@dataclass
class LoopIntegral:
    """A gradient field integrated around a circle in a plane of parameter space.

    The circle is ``c(phi) = center + r (cos phi d1 + sin phi d2)``, ``0 <= phi < 2 pi``.

    Attributes
    ----------
    phi : ndarray, shape (n_points,)
        Angles of the quadrature points, ``2 pi k / n_points``.
    tangential : ndarray, shape (n_points,)
        ``G(c(phi)) . c'(phi)``, the integrand.
    cumulative : ndarray, shape (n_points + 1,)
        The integral from 0 to each ``phi`` (and to ``2 pi`` last). For a true gradient this is
        the change of the loss along the loop.
    integral : float
        The closed-loop integral ``cumulative[-1]``.
    total_variation : float
        The integral of ``|G . c'|``; ``integral / total_variation`` is a scale-free measure of
        how far the field is from conservative on this loop (0 for a gradient).
    """

    phi: np.ndarray
    tangential: np.ndarray
    cumulative: np.ndarray
    integral: float
    total_variation: float

    @property
    def relative(self) -> float:
        """``integral / total_variation`` (NaN for a zero field)."""
        if self.total_variation == 0:
            return float("nan")
        return self.integral / self.total_variation


def random_plane(n_dims: int, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two orthonormal random directions in ``R**n_dims`` (a random 2-D plane).

    Parameters
    ----------
    n_dims : int
        At least 2.
    random_state : int, default=0

    Returns
    -------
    d1, d2 : ndarray, shape (n_dims,)

    Examples
    --------
    >>> d1, d2 = random_plane(5, random_state=0)
    >>> round(float(d1 @ d2), 12), round(float(d1 @ d1), 12)
    (0.0, 1.0)
    """
    if n_dims < 2:
        raise ValueError(f"A plane needs at least 2 dimensions, got {n_dims}.")
    rng = np.random.default_rng(random_state)
    q, _ = np.linalg.qr(rng.normal(size=(n_dims, 2)))
    return q[:, 0].copy(), q[:, 1].copy()


def loop_integral(
    gradient: Callable[[np.ndarray], np.ndarray | dict[str, np.ndarray]],
    center,
    d1,
    d2,
    radius: float = 1.0,
    n_points: int = 1000,
) -> LoopIntegral | dict[str, LoopIntegral]:
    """Integrate a gradient field around a circle in the plane spanned by ``d1`` and ``d2``.

    Parameters
    ----------
    gradient : callable
        Maps points, an array (n_points, n_dims), to gradients of the same shape, or to a dict
        of such arrays (several fields at once).
    center, d1, d2 : array-like, shape (n_dims,)
        Centre of the circle and two orthonormal directions.
    radius : float, default=1.0
    n_points : int, default=1000
        Quadrature points. The rule (equal weights on a periodic grid) converges exponentially
        for a smooth field and like ``1 / n_points`` for one with jumps.

    Returns
    -------
    LoopIntegral or dict of str to LoopIntegral

    Examples
    --------
    A rotation field is not a gradient; ``grad(x . x / 2) = x`` is:

    >>> rot = loop_integral(lambda p: p[:, ::-1] * [-1, 1], [0, 0], [1, 0], [0, 1], 1.0, 64)
    >>> round(rot.integral / (2 * np.pi), 12)
    1.0
    >>> abs(loop_integral(lambda p: p, [0, 0], [1, 0], [0, 1], 1.0, 64).integral) < 1e-12
    True
    """
    center, d1, d2 = (np.asarray(v, dtype=np.float64) for v in (center, d1, d2))
    phi = 2.0 * math.pi * np.arange(n_points) / n_points
    points = center + radius * (np.cos(phi)[:, None] * d1 + np.sin(phi)[:, None] * d2)
    velocity = radius * (-np.sin(phi)[:, None] * d1 + np.cos(phi)[:, None] * d2)
    fields = gradient(points)

    def one(g: np.ndarray) -> LoopIntegral:
        tangential = np.sum(np.asarray(g, dtype=np.float64) * velocity, axis=1)
        step = 2.0 * math.pi / n_points
        cumulative = np.concatenate([[0.0], np.cumsum(tangential) * step])
        return LoopIntegral(
            phi,
            tangential,
            cumulative,
            float(cumulative[-1]),
            float(np.abs(tangential).sum() * step),
        )

    if isinstance(fields, dict):
        return {name: one(g) for name, g in fields.items()}
    return one(fields)


# --------------------------------------------------------------------------------------------
# The five-weight sigmoid network
# --------------------------------------------------------------------------------------------
class _SmoothStep(torch.autograd.Function):
    """``sigmoid(beta z)`` forward, a surrogate derivative backward."""

    @staticmethod
    def forward(ctx, z: Tensor, beta: float, surrogate: Surrogate) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(z)
        ctx.surrogate = surrogate
        return _LOGISTIC.cdf(beta * z)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (z,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(z), None, None


def _activation(z: Tensor, forward_beta: float, surrogate: Surrogate | None) -> Tensor:
    if surrogate is None:
        if math.isinf(forward_beta):
            # The step itself; "+ 0 z" keeps it in the graph with its true derivative, zero
            # almost everywhere.
            return (z > 0).to(z.dtype) + 0.0 * z
        return _LOGISTIC.cdf(forward_beta * z)
    if math.isinf(forward_beta):
        # The deterministic spike of the estimators: Heaviside forward, surrogate backward.
        return spike(z, None, 0.0, _LOGISTIC, surrogate)
    return _SmoothStep.apply(z, forward_beta, surrogate)


def sigmoid_net_output(
    weights, x: float = 1.0, forward_beta: float = math.inf, surrogate: Surrogate | None = None
) -> Tensor:
    """Output ``y`` of the five-weight network of Gygax & Zenke (2025), section 3.

    ``g = s(w x)``, ``h_i = s(v_i g)``, ``y = s(u1 h1 + u2 h2)`` with ``s(z) = sigmoid(beta z)``
    (no biases), or the step ``[z > 0]`` for ``forward_beta = inf``.

    Parameters
    ----------
    weights : array-like or Tensor, shape (..., 5)
        ``(w, v1, v2, u1, u2)`` (:data:`SIGMOID_NET_WEIGHTS`).
    x : float, default=1.0
        The input.
    forward_beta : float, default=inf
        Steepness of the forward sigmoids.
    surrogate : Surrogate, optional
        Derivative used in the backward pass; None for the true derivative (for the step,
        ``forward_beta = inf``, that is zero almost everywhere).

    Returns
    -------
    Tensor, shape (...)

    Examples
    --------
    >>> float(sigmoid_net_output([1.0, 1.0, -1.0, 1.0, 1.0]))
    1.0
    """
    wts = torch.as_tensor(weights, dtype=torch.float64)
    w, v1, v2, u1, u2 = wts.unbind(-1)
    g = _activation(w * x, forward_beta, surrogate)
    h1 = _activation(v1 * g, forward_beta, surrogate)
    h2 = _activation(v2 * g, forward_beta, surrogate)
    return _activation(u1 * h1 + u2 * h2, forward_beta, surrogate)


def sigmoid_net_gradient(
    weights, x: float = 1.0, forward_beta: float = math.inf, surrogate: Surrogate | None = None
) -> np.ndarray:
    """Gradient of :func:`sigmoid_net_output` with respect to the weights, at each point.

    Parameters
    ----------
    weights : array-like, shape (n_points, 5) or (5,)
    x, forward_beta, surrogate
        As for :func:`sigmoid_net_output`.

    Returns
    -------
    ndarray of the shape of ``weights``
        The true gradient (``surrogate=None``) or the surrogate gradient.

    Examples
    --------
    >>> from sksnn.surrogates import Sigmoid
    >>> g = sigmoid_net_gradient([0.3, 1.0, -1.0, 1.0, 1.0], surrogate=Sigmoid(beta=5.0))
    >>> g.shape
    (5,)
    """
    wts = torch.as_tensor(np.asarray(weights, dtype=np.float64)).clone().requires_grad_(True)
    # Each output depends on its own row only, so the gradient of the sum is per-row.
    sigmoid_net_output(wts, x, forward_beta, surrogate).sum().backward()
    return wts.grad.numpy()


# --------------------------------------------------------------------------------------------
# Spiking networks
# --------------------------------------------------------------------------------------------
def network_gradient_field(
    module: SpikingNetwork,
    X,
    y=None,
    loss: str | LossFn = "mse",
    *,
    params: Sequence[str] = ("layers.0.weight",),
    temperature: float | None = None,
    surrogate: Surrogate | None = None,
    max_bits: int = 22,
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Exact and expected surrogate gradient of a small spiking network as fields.

    Parameters
    ----------
    module : SpikingNetwork
        The network; parameters outside ``params`` stay as they are.
    X, y, loss, temperature, surrogate, max_bits
        As for :func:`~sksnn.theory.enumerate_gradients`.
    params : sequence of str, default=("layers.0.weight",)
        Parameters spanning the space; a point is their concatenated flattened values.

    Returns
    -------
    callable
        Maps points (n_points, n_dims) to ``{"exact": ..., "surrogate": ...}``, each
        (n_points, n_dims), suitable for :func:`loop_integral`. At temperature 0 "exact" is
        the almost-everywhere gradient (zero for hidden weights).
    """
    net = with_lif(module)
    named = dict(net.named_parameters())
    shapes = [tuple(named[n].shape) for n in params]
    sizes = [int(np.prod(s)) for s in shapes]

    def field(points: np.ndarray) -> dict[str, np.ndarray]:
        out = {"exact": [], "surrogate": []}
        for point in np.atleast_2d(points):
            with torch.no_grad():
                for name, chunk, shape in zip(
                    params, np.split(point, np.cumsum(sizes)[:-1]), shapes, strict=True
                ):
                    named[name].copy_(torch.as_tensor(chunk).reshape(shape))
            cmp = enumerate_gradients(
                net, X, y, loss, temperature=temperature, surrogate=surrogate, max_bits=max_bits
            )
            out["exact"].append(np.concatenate([cmp.exact[n].ravel() for n in params]))
            out["surrogate"].append(np.concatenate([cmp.surrogate[n].ravel() for n in params]))
        return {k: np.array(v) for k, v in out.items()}

    return field


# --------------------------------------------------------------------------------------------
# Sign flips
# --------------------------------------------------------------------------------------------
@dataclass
class SignFlip:
    """A point where a surrogate derivative and the true derivative have opposite signs.

    Attributes
    ----------
    weights : ndarray, shape (5,)
    index : int
        The weight (into :data:`SIGMOID_NET_WEIGHTS`) whose derivatives disagree.
    true_gradient, surrogate_gradient : ndarray, shape (5,)
    """

    weights: np.ndarray
    index: int
    true_gradient: np.ndarray
    surrogate_gradient: np.ndarray


def find_sign_flip(
    surrogate: Surrogate,
    *,
    forward_beta: float = 10.0,
    x: float = 1.0,
    n_candidates: int = 20000,
    scale: float = 1.0,
    random_state: int = 0,
) -> SignFlip | None:
    """Search the five-weight network for a clear sign flip of the surrogate derivative.

    Candidates are weights ``N(0, scale**2)``; among the entries where the true and the
    surrogate derivative have opposite signs, the one whose smaller magnitude, relative to
    its gradient's norm, is largest is returned (a flip far from round-off).

    Parameters
    ----------
    surrogate : Surrogate
    forward_beta : float, default=10.0
        Steepness of the forward sigmoids; finite, so that the true gradient exists.
    x : float, default=1.0
    n_candidates : int, default=20000
    scale : float, default=1.0
    random_state : int, default=0

    Returns
    -------
    SignFlip or None
        None if no candidate flips a sign.
    """
    rng = np.random.default_rng(random_state)
    cand = rng.normal(scale=scale, size=(n_candidates, 5))
    true = sigmoid_net_gradient(cand, x, forward_beta)
    sur = sigmoid_net_gradient(cand, x, forward_beta, surrogate)
    norm_t = np.linalg.norm(true, axis=1, keepdims=True)
    norm_s = np.linalg.norm(sur, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        strength = np.minimum(np.abs(true) / norm_t, np.abs(sur) / norm_s)
    strength = np.where((true * sur < 0) & np.isfinite(strength), strength, -1.0)
    best = np.unravel_index(np.argmax(strength), strength.shape)
    if strength[best] <= 0:
        return None
    row, index = int(best[0]), int(best[1])
    return SignFlip(cand[row].copy(), index, true[row].copy(), sur[row].copy())
