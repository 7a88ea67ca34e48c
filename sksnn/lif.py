"""Functional core of the leaky integrate-and-fire (LIF) layer: pure functions over explicit state.

Discrete-time dynamics of one layer (THEORY.md §1), for step ``n`` and drive ``P[n] = W S_in[n]``::

    S[n]   = [u[n] < f((U[n] - threshold) / T)]      (or [U[n] > threshold] at T = 0)
    U[n+1] = alpha_mem U[n] + (1 - alpha_mem) I[n]    then reset by S[n]
    I[n+1] = alpha_syn I[n] + P[n] (+ V S[n] if recurrent)

with ``U[0] = I[0] = 0``. Reset "zero" multiplies ``U[n+1]`` by ``1 - S[n]``, "subtract"
subtracts ``threshold * S[n]``, "none" leaves it; with ``detach_reset`` no gradient flows
through the reset. Tensors are time-major: ``(n_steps, n_samples, n_units)``.

Two engines run the loop: :func:`lif_reference`, plain autograd step by step (kept as the
definition the fast path is tested against), and the fused kernel of :mod:`sksnn._fused` (one
autograd node per layer, hand-written adjoint; the default). Nothing here knows about
scikit-learn or about how inputs are encoded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ._fused import lif_fused
from .spike import spike
from .surrogates import EscapeNoise, SigmoidNoise, Surrogate, get_surrogate

__all__ = [
    "ENGINES",
    "RESETS",
    "LIFParameters",
    "decay",
    "leaky_readout",
    "lif_layer",
    "lif_reference",
    "psp_kernel",
    "resolve_engine",
]

RESETS = ("zero", "subtract", "none")
# LIF time-loop implementations; "auto" in the estimators resolves to the first.
ENGINES = ("fused", "reference")


# Steps per Toeplitz product in :func:`leaky_readout`; sequences up to this length take a
# single product.
READOUT_WINDOW = 128


def decay(dt: float, tau: float) -> float:
    """Per-step decay factor ``exp(-dt / tau)`` of a leaky variable."""
    return math.exp(-dt / tau)


@dataclass(frozen=True)
class LIFParameters:
    """Constants of a LIF layer.

    Parameters
    ----------
    alpha_syn, alpha_mem : float
        Per-step decay of synaptic current and membrane, ``exp(-dt / tau)``.
    threshold : float
        Firing threshold.
    temperature : float
        Escape-noise temperature ``T``; 0 gives the deterministic network.
    escape_noise : EscapeNoise
        Spike probability ``f`` as a function of ``(U - threshold) / T``.
    surrogate : Surrogate
        Derivative used for ``dS/dU`` in the backward pass.
    reset : {"zero", "subtract", "none"}
    detach_reset : bool
    """

    alpha_syn: float = decay(2e-3, 10e-3)
    alpha_mem: float = decay(2e-3, 20e-3)
    threshold: float = 1.0
    temperature: float = 0.0
    escape_noise: EscapeNoise = field(default_factory=SigmoidNoise)
    surrogate: Surrogate = field(default_factory=lambda: get_surrogate("matched", 10.0))
    reset: str = "zero"
    detach_reset: bool = True

    def __post_init__(self) -> None:
        if self.reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {self.reset!r}.")

    @property
    def stochastic(self) -> bool:
        return self.temperature > 0


def lif_reference(
    drive: Tensor,
    params: LIFParameters,
    uniform: Tensor | None = None,
    recurrent_weight: Tensor | None = None,
    record_membrane: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Run a LIF layer step by step with ordinary autograd (the reference path).

    Parameters
    ----------
    drive : Tensor, shape (n_steps, n_samples, n_units)
        Feed-forward input current ``P[n]``. May be an expanded (stride-0) view.
    params : LIFParameters
    uniform : Tensor, shape (n_steps, n_samples, n_units), optional
        Uniform [0, 1) numbers for the Bernoulli spikes; required when ``T > 0``.
    recurrent_weight : Tensor, shape (n_units, n_units), optional
        ``V``; the recurrent current is ``S[n] @ V.T``.
    record_membrane : bool
        Also return ``U[n]`` (the potential the spike at step ``n`` was drawn from).

    Returns
    -------
    spikes : Tensor, shape (n_steps, n_samples, n_units)
    membrane : Tensor or None
    """
    n_steps, n_samples, n_units = drive.shape
    u = drive.new_zeros(n_samples, n_units)
    i = drive.new_zeros(n_samples, n_units)
    # unbind, not drive[n]: the backward of n separate selects would build a full-size zero
    # gradient per step (quadratic in n_steps); unbind's backward stacks once.
    drives = drive.unbind(0)
    spikes, membrane = [], []
    for n in range(n_steps):
        if record_membrane:
            membrane.append(u)
        s = spike(
            u - params.threshold,
            None if uniform is None else uniform[n],
            params.temperature,
            params.escape_noise,
            params.surrogate,
        )
        spikes.append(s)
        s_reset = s.detach() if params.detach_reset else s
        # alpha_mem * u + (1 - alpha_mem) * i and alpha_syn * i + P[n], written as the single
        # operations the fused engine uses, so both round identically.
        u_next = torch.lerp(i, u, params.alpha_mem)
        if params.reset == "zero":
            u_next = u_next * (1.0 - s_reset)
        elif params.reset == "subtract":
            u_next = u_next - params.threshold * s_reset
        i = torch.add(drives[n], i, alpha=params.alpha_syn)
        if recurrent_weight is not None:
            i = i + s @ recurrent_weight.T
        u = u_next
    return torch.stack(spikes), (torch.stack(membrane) if record_membrane else None)


def lif_layer(
    drive: Tensor,
    params: LIFParameters,
    uniform: Tensor | None = None,
    recurrent_weight: Tensor | None = None,
    record_membrane: bool = False,
    engine: str = "auto",
) -> tuple[Tensor, Tensor | None]:
    """Run a LIF layer with the chosen engine; see :func:`lif_reference` for the arguments.

    ``engine`` is "auto" (the first of :data:`ENGINES`), "fused" or "reference". Both give
    identical spikes and membranes from the same uniform numbers, and the same gradients to
    float32 round-off.
    """
    engine = resolve_engine(engine)
    if engine == "fused":
        return lif_fused(drive, params, uniform, recurrent_weight, record_membrane)
    return lif_reference(drive, params, uniform, recurrent_weight, record_membrane)


def resolve_engine(engine: str) -> str:
    """The engine "auto" stands for (the first of :data:`ENGINES`), or ``engine`` if valid."""
    if engine == "auto":
        return ENGINES[0]
    if engine not in ENGINES:
        raise ValueError(f"Unknown LIF engine {engine!r}; expected 'auto' or one of {ENGINES}.")
    return engine


def psp_kernel(alpha_syn: float, alpha_mem: float, n_steps: int) -> Tensor:
    """Impulse response ``h[k]`` of the membrane to a unit drive ``k`` steps earlier (no spikes).

    ``h[0] = 0`` (a drive reaches the current one step later and the membrane the step after
    that), ``h[1] = 1 - alpha_mem`` and ``sum(h) -> 1 / (1 - alpha_syn)`` for long windows.
    Returned in float64, length n_steps.
    """
    h = torch.zeros(n_steps, dtype=torch.float64)
    u = i = 0.0
    for k in range(n_steps):
        u, i = alpha_mem * u + (1.0 - alpha_mem) * i, alpha_syn * i + (1.0 if k == 0 else 0.0)
        h[k] = u
    return h


def _toeplitz(h: Tensor) -> Tensor:
    n = h.shape[0]
    idx = torch.arange(n)
    lag = idx.reshape(-1, 1) - idx.reshape(1, -1)
    return torch.where(lag >= 0, h[lag.clamp(min=0)], torch.zeros((), dtype=h.dtype))


def leaky_readout(drive: Tensor, alpha_syn: float, alpha_mem: float) -> Tensor:
    """Membrane potential of non-spiking leaky integrators driven by ``drive``.

    Same current and membrane equations as :func:`lif_reference` without spikes; returns
    ``V[n + 1]`` for every step ``n``, shape ``drive.shape``. Being linear and time-invariant,
    a window of steps is one matrix product with the lower-triangular Toeplitz matrix of
    :func:`psp_kernel`. Longer sequences run window by window, each window starting from the
    state ``(V, I)`` the previous one ended in, so time and memory grow linearly with the
    number of steps (a single Toeplitz matrix would grow with its square).
    """
    n_steps = drive.shape[0]
    flat = drive.reshape(n_steps, -1)
    if n_steps <= READOUT_WINDOW:
        kernel = _toeplitz(psp_kernel(alpha_syn, alpha_mem, n_steps)).to(drive)
        return (kernel @ flat).reshape(drive.shape)
    window = READOUT_WINDOW
    h = psp_kernel(alpha_syn, alpha_mem, window + 1)
    kernel = _toeplitz(h[:window]).to(drive)
    lags = torch.arange(window, dtype=torch.float64)
    # V[t0 + j + 1] from the state (V, I) at t0: alpha_mem^(j+1) V[t0] + h[j+1] I[t0]
    from_state = torch.stack([alpha_mem ** (lags + 1), h[1:]], dim=1).to(drive)
    # I[t0 + L] = alpha_syn^L I[t0] + sum_m alpha_syn^(L - 1 - m) P[t0 + m]
    into_current = (alpha_syn ** lags.flip(0)).to(drive)
    pieces = []
    state = None
    # split, not slicing: the backward of each slice would build a zero gradient of the whole
    # drive (quadratic in n_steps); split's backward concatenates once.
    for p in flat.split(window):
        length = p.shape[0]
        if state is None:
            v = kernel[:length, :length] @ p
            current = into_current[window - length :] @ p
        else:
            v = torch.addmm(from_state[:length] @ state, kernel[:length, :length], p)
            current = alpha_syn**length * state[1] + into_current[window - length :] @ p
        state = torch.stack([v[-1], current])
        pieces.append(v)
    return torch.cat(pieces).reshape(drive.shape)
