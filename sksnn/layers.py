"""The network's layers as modules: :class:`LIFLayer` (spiking) and :class:`LeakyReadout`.

A layer owns its weights; how its time loop runs is its engine's business
(:mod:`sksnn.engines`), and the neuron's constants and spike live in :mod:`sksnn.neuron`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .engines import Engine, LayerInput
from .neuron import LIFParameters
from .noise import CounterUniform, NoiseSource, layer_uniform

__all__ = ["DTYPE", "LIFLayer", "LeakyReadout"]

# The network simulates in float32 whatever torch's default dtype is: inputs are converted to
# float32 by the estimators, and the weights must match them.
DTYPE = torch.float32


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
        return spikes, membrane, readout.integrate(currents, params, engine)


class LeakyReadout(nn.Module):
    """Non-spiking leaky integrators: one potential per output, ``V = h * (W s) + b``.

    ``h`` is the PSP kernel of the hidden neurons' time constants
    (:func:`sksnn.readout.leaky_readout`).
    """

    def __init__(self, n_inputs: int, n_outputs: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_outputs, n_inputs, dtype=DTYPE))
        self.bias = nn.Parameter(torch.zeros(n_outputs, dtype=DTYPE))

    def forward(self, spikes: Tensor, params: LIFParameters, engine: Engine) -> Tensor:
        """Readout potential (n_steps, n_samples, n_outputs) from hidden ``spikes``."""
        currents = engine.project(spikes, self.weight, binary=True)
        return self.integrate(currents, params, engine)

    def integrate(self, currents: Tensor, params: LIFParameters, engine: Engine) -> Tensor:
        """Readout potential from its input currents ``W s`` (n_steps, n_samples, n_outputs)."""
        potential = engine.integrate_readout(currents, params.alpha_syn, params.alpha_mem)
        return potential + self.bias
