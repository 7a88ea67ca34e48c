"""The readout's leaky integration: non-spiking LIF neurons driven by currents.

Being linear and time-invariant, the integration is a convolution with the PSP kernel of
:func:`sksnn.neuron.psp_kernel`. :func:`leaky_readout` computes it with matrix products (the
fused and reference engines), the compiled engine with the recursion itself, compiled; each
engine's :meth:`~sksnn.engines.Engine.integrate_readout` chooses.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from .neuron import psp_kernel

__all__ = ["READOUT_WINDOW", "leaky_readout"]

# Steps per Toeplitz product in :func:`leaky_readout`; sequences up to this length take a
# single product.
READOUT_WINDOW = 128


def _toeplitz(h: Tensor) -> Tensor:
    n = h.shape[0]
    idx = torch.arange(n)
    lag = idx.reshape(-1, 1) - idx.reshape(1, -1)
    return torch.where(lag >= 0, h[lag.clamp(min=0)], torch.zeros((), dtype=h.dtype))


@functools.lru_cache(maxsize=32)
def _readout_operators(alpha_syn: float, alpha_mem: float, n_steps: int | None) -> tuple:
    """The float64 matrices of :func:`leaky_readout` (never modified in place: cached, since
    they cost more to build than a short readout costs to run): for ``n_steps`` up to a window,
    its Toeplitz matrix; for ``None``, those of the window, of the state and of the current."""
    if n_steps is not None:
        return (_toeplitz(psp_kernel(alpha_syn, alpha_mem, n_steps)),)
    window = READOUT_WINDOW
    h = psp_kernel(alpha_syn, alpha_mem, window + 1)
    lags = torch.arange(window, dtype=torch.float64)
    # V[t0 + j + 1] from the state (V, I) at t0: alpha_mem^(j+1) V[t0] + h[j+1] I[t0]
    from_state = torch.stack([alpha_mem ** (lags + 1), h[1:]], dim=1)
    # I[t0 + L] = alpha_syn^L I[t0] + sum_m alpha_syn^(L - 1 - m) P[t0 + m]
    into_current = alpha_syn ** lags.flip(0)
    return _toeplitz(h[:window]), from_state, into_current


def leaky_readout(drive: Tensor, alpha_syn: float, alpha_mem: float) -> Tensor:
    """Membrane potential of non-spiking leaky integrators driven by ``drive``.

    Same current and membrane equations as a LIF layer without spikes (:mod:`sksnn.neuron`);
    returns ``V[n + 1]`` for every step ``n``, shape ``drive.shape``. Being linear and
    time-invariant, a window of steps is one matrix product with the lower-triangular Toeplitz
    matrix of :func:`psp_kernel`. Longer sequences run window by window, each window starting
    from the state ``(V, I)`` the previous one ended in, so time and memory grow linearly with
    the number of steps (a single Toeplitz matrix would grow with its square).

    The products run in float64: BLAS chooses its kernels by the matrices' shapes, so in
    float32 a sample's potential could change in the last bit with the number of samples it
    is computed with; rounded back from float64 it does not, and predictions do not depend on
    the batch.
    """
    n_steps = drive.shape[0]
    flat = drive.reshape(n_steps, -1).to(torch.float64)
    if n_steps <= READOUT_WINDOW:
        (kernel,) = _readout_operators(alpha_syn, alpha_mem, n_steps)
        return (kernel.to(flat) @ flat).to(drive.dtype).reshape(drive.shape)
    window = READOUT_WINDOW
    kernel, from_state, into_current = (
        x.to(flat) for x in _readout_operators(alpha_syn, alpha_mem, None)
    )
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
    return torch.cat(pieces).to(drive.dtype).reshape(drive.shape)
