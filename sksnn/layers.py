"""The network's layers as modules: :class:`LIFLayer` (spiking) and :class:`LeakyReadout`.

A layer owns its weights; how its time loop runs is its engine's business
(:mod:`sksnn.engines`), and the neuron's constants and spike live in :mod:`sksnn.neuron`.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from .engines import Engine, LayerInput
from .neuron import LIFParameters, psp_kernel
from .noise import CounterUniform, NoiseSource, layer_uniform

__all__ = ["DTYPE", "READOUT_WINDOW", "LIFLayer", "LeakyReadout", "leaky_readout"]

# The network simulates in float32 whatever torch's default dtype is: inputs are converted to
# float32 by the estimators, and the weights must match them.
DTYPE = torch.float32
# Steps per Toeplitz product in :func:`leaky_readout`; sequences up to this length take a
# single product.
READOUT_WINDOW = 128


class LIFLayer(nn.Module):
    """A layer of stochastic LIF neurons: input weights, a bias current and, optionally,
    recurrent weights.

    The input current of step ``n`` is ``W x[n] + b``: the bias ``b`` (zero at
    initialisation) sets each neuron's operating point, as a hidden unit's bias does in a
    multilayer perceptron.

    Parameters
    ----------
    n_inputs, n_units : int
    recurrent : bool, default=False
        Also a weight ``V`` of shape (n_units, n_units) from the layer's spikes to its currents.
    """

    def __init__(self, n_inputs: int, n_units: int, recurrent: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_units, n_inputs, dtype=DTYPE))
        self.recurrent_weight = (
            nn.Parameter(torch.empty(n_units, n_units, dtype=DTYPE)) if recurrent else None
        )
        self.bias = nn.Parameter(torch.zeros(n_units, dtype=DTYPE))

    @property
    def n_units(self) -> int:
        return self.weight.shape[0]

    def noise(
        self, noise: NoiseSource | None, stream: int, n_steps: int, n_samples: int, params
    ) -> Tensor | CounterUniform | None:
        """Uniform numbers for the layer's spikes (None when deterministic); counter-based
        numbers are not yet drawn: the engine computes them where its loop needs them."""
        if not params.stochastic:
            return None
        if noise is None:
            raise ValueError("A stochastic network (temperature > 0) needs a noise source.")
        shape = (n_steps, n_samples, self.n_units)
        return layer_uniform(noise, stream, shape, self.weight.device)

    def forward(
        self,
        layer_input: LayerInput,
        params: LIFParameters,
        engine: Engine,
        noise: NoiseSource | None,
        stream: int,
        record_membrane: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Spikes (n_steps, n_samples, n_units) and, if recorded, membranes of the layer.

        ``stream`` names the layer's own noise stream, so that each layer draws independent
        numbers from ``noise``.
        """
        uniform = self.noise(noise, stream, layer_input.n_steps, layer_input.n_samples, params)
        return engine.run_layer(
            layer_input,
            self.weight,
            params,
            uniform,
            self.recurrent_weight,
            record_membrane,
            self.bias,
        )

    def forward_to_readout(
        self,
        layer_input: LayerInput,
        params: LIFParameters,
        engine: Engine,
        noise: NoiseSource | None,
        stream: int,
        readout: LeakyReadout,
        record_membrane: bool = False,
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """:meth:`forward` for the last layer: also ``readout``'s output from the spikes, whose
        input currents the engine may compute within the layer's loops."""
        uniform = self.noise(noise, stream, layer_input.n_steps, layer_input.n_samples, params)
        spikes, membrane, currents = engine.run_last_layer(
            layer_input,
            self.weight,
            params,
            uniform,
            self.recurrent_weight,
            record_membrane,
            self.bias,
            readout.weight,
        )
        return spikes, membrane, readout.integrate(currents, params)


class LeakyReadout(nn.Module):
    """Non-spiking leaky integrators: one potential per output, ``V = h * (W s) + b``.

    ``h`` is the PSP kernel of the hidden neurons' time constants (:func:`leaky_readout`).
    """

    def __init__(self, n_inputs: int, n_outputs: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_outputs, n_inputs, dtype=DTYPE))
        self.bias = nn.Parameter(torch.zeros(n_outputs, dtype=DTYPE))

    def forward(self, spikes: Tensor, params: LIFParameters, engine: Engine) -> Tensor:
        """Readout potential (n_steps, n_samples, n_outputs) from hidden ``spikes``."""
        return self.integrate(engine.project(spikes, self.weight, binary=True), params)

    def integrate(self, currents: Tensor, params: LIFParameters) -> Tensor:
        """Readout potential from its input currents ``W s`` (n_steps, n_samples, n_outputs)."""
        return leaky_readout(currents, params.alpha_syn, params.alpha_mem) + self.bias


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
