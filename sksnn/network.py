"""The stochastic spiking network as a ``torch.nn.Module``: encoder, LIF layers, readout.

The module takes inputs batch-major as users hold them, ``(n_samples, n_features)`` or
``(n_samples, n_steps, n_inputs)``, or the spike events of a 3-D batch, and returns the readout
potential over time. The time loops belong to the layers' engine (:mod:`sksnn.engines`),
chosen by name once, when the network is built or its ``engine`` is set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor, nn

from ._sparse import StepPattern
from .encoding import ENCODINGS, encode
from .engines import Engine, LayerInput, get_engine
from .engines.base import project
from .layers import DTYPE, LeakyReadout, LIFLayer
from .neuron import LIFParameters
from .noise import NoiseSource
from .readout import leaky_readout

__all__ = ["NetworkOutput", "SpikingNetwork"]

# Target standard deviation of the free membrane potential at initialisation, in units of the
# threshold (fluctuation-driven initialisation, Rossbroich, Gygax & Zenke 2022): large enough
# that a fresh network spikes on any input, small enough that it does not saturate.
SIGMA_U = 1.0
# Share of that variance carried by recurrent input when the layers are recurrent.
RECURRENT_SHARE = 0.1
# Target standard deviation of the readout potential (the logits, or the standardised
# regression targets) at initialisation: below 1, so that the regressor does not start from a
# random function of unit variance it must unlearn, not so far below that spike-timing
# classification slows down (benchmarks/results.md, learning quality).
SIGMA_READOUT = 0.3


@dataclass
class NetworkOutput:
    """What one forward pass produced (time-major tensors).

    Attributes
    ----------
    output : Tensor, shape (n_steps, n_samples, n_outputs)
        Readout membrane potential.
    spikes : list of Tensor, shape (n_steps, n_samples, n_units)
        Spikes of each hidden layer.
    membranes : list of Tensor or None
        Membrane potentials of each hidden layer, when recorded.
    """

    output: Tensor
    spikes: list[Tensor]
    membranes: list[Tensor] | None = None


class SpikingNetwork(nn.Module):
    """Feed-forward (optionally recurrent) stochastic LIF network with a leaky readout.

    Parameters
    ----------
    n_inputs : int
        Features (2-D input) or input channels (3-D input).
    hidden_layer_sizes : sequence of int
    n_outputs : int
    lif : LIFParameters
        Neuron constants shared by all hidden layers; the readout uses the same time constants.
    recurrent : bool, default=False
    encoding : {"current", "rate", "latency"}, default="current"
        Used for 2-D input only.
    n_steps : int, default=50
        Steps simulated for 2-D input; 3-D input brings its own.
    engine : str, default="auto"
        Name of the LIF engine (:func:`sksnn.engines.get_engine`).
    """

    def __init__(
        self,
        n_inputs: int,
        hidden_layer_sizes: tuple[int, ...],
        n_outputs: int,
        lif: LIFParameters,
        *,
        recurrent: bool = False,
        encoding: str = "current",
        n_steps: int = 50,
        engine: str = "auto",
    ) -> None:
        super().__init__()
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}.")
        sizes = [int(n_inputs), *(int(h) for h in hidden_layer_sizes)]
        if len(sizes) < 2 or min(sizes) < 1 or int(n_outputs) < 1:
            raise ValueError(
                f"A network needs positive sizes, got {n_inputs} inputs, hidden layers "
                f"{tuple(hidden_layer_sizes)} and {n_outputs} outputs."
            )
        self.lif = lif
        self.encoding = encoding
        self.n_steps = int(n_steps)
        self.engine = engine
        self.layers = nn.ModuleList(
            LIFLayer(n_in, n_out, recurrent) for n_in, n_out in pairwise(sizes)
        )
        self.readout = LeakyReadout(sizes[-1], int(n_outputs))
        # Placeholder scale until initialize() sees data; keeps a bare module usable.
        with torch.no_grad():
            for w in self.connection_weights():
                w.normal_(0.0, 1.0 / math.sqrt(w.shape[1]))

    @property
    def engine(self) -> str:
        """Name of the LIF engine; setting it resolves the engine object once."""
        return self._engine_name

    @engine.setter
    def engine(self, name: str) -> None:
        self._engine = get_engine(name)
        self._engine_name = name

    @property
    def engine_object(self) -> Engine:
        return self._engine

    @property
    def recurrent(self) -> bool:
        return self.layers[0].recurrent_weight is not None

    @property
    def hidden_layer_sizes(self) -> tuple[int, ...]:
        return tuple(layer.n_units for layer in self.layers)

    @property
    def n_inputs(self) -> int:
        return self.layers[0].weight.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.readout.weight.shape[0]

    def connection_weights(self) -> list[Tensor]:
        """Feed-forward, then recurrent, then readout weights (biases excluded)."""
        ff = [layer.weight for layer in self.layers]
        rec = [
            layer.recurrent_weight for layer in self.layers if layer.recurrent_weight is not None
        ]
        return [*ff, *rec, self.readout.weight]

    def encode(self, x: Tensor, noise: NoiseSource | None) -> LayerInput:
        """The first layer's input from 2-D features or 3-D sequences (batch-major)."""
        if x.ndim == 2:
            values = encode(x, self.encoding, self.n_steps, noise)
            return LayerInput(values, binary=self.encoding in ("rate", "latency"))
        if x.ndim == 3:
            return LayerInput(x.transpose(0, 1))
        raise ValueError(f"Expected 2-D or 3-D input, got {x.ndim}-D.")

    def forward(
        self,
        x: Tensor | StepPattern,
        noise: NoiseSource | None = None,
        record_membrane: bool = False,
    ) -> NetworkOutput:
        """Simulate the network on a batch.

        Parameters
        ----------
        x : Tensor of shape (n_samples, n_features) or (n_samples, n_steps, n_inputs), or
            StepPattern
            Features, sequences, or the spike events of a 0/1 3-D batch grouped by step
            (:meth:`sksnn._sparse.SampleEvents.batch`; engines with ``takes_events`` only).
        noise : NoiseSource, optional
            Uniform numbers for rate encoding and stochastic spikes.
        record_membrane : bool, default=False
        """
        if isinstance(x, StepPattern):
            if not self._engine.takes_events:
                raise ValueError(f"The {self._engine.name} engine does not take spike events.")
            if x.n_cols != self.n_inputs:
                raise ValueError(
                    f"The events have {x.n_cols} inputs, the network {self.n_inputs}."
                )
            layer_input = LayerInput(None, events=x, binary=True)
        else:
            layer_input = self.encode(x, noise)
        spikes, membranes = [], []
        *hidden, last = self.layers
        for index, layer in enumerate(hidden):
            s, u = layer(layer_input, self.lif, self._engine, noise, index + 1, record_membrane)
            spikes.append(s)
            membranes.append(u)
            layer_input = LayerInput(s, binary=True)
        s, u, out = last.forward_to_readout(
            layer_input,
            self.lif,
            self._engine,
            noise,
            len(self.layers),
            self.readout,
            record_membrane,
        )
        spikes.append(s)
        membranes.append(u)
        return NetworkOutput(out, spikes, membranes if record_membrane else None)

    @torch.no_grad()
    def initialize(self, x: Tensor, generator: torch.Generator, noise: NoiseSource | None) -> None:
        """Data-dependent fluctuation-driven initialisation on a sample batch ``x``.

        Weights are drawn i.i.d. zero-mean Gaussian; for a layer with input spike trains (or
        currents) ``s_k`` and no reset, the free membrane potential is ``U = sum_k w_k (h * s_k)``
        with ``h`` the PSP kernel, so its variance over weight draws is
        ``sigma_w^2 * sum_k (h * s_k)^2``. Averaging that over samples and steps of ``x`` and
        solving for ``sigma_w`` gives membrane fluctuations of ``SIGMA_U * threshold`` whatever
        the encoding, input density or layer width (Rossbroich, Gygax & Zenke, "Fluctuation-driven
        initialization for spiking neural network training", Neuromorph. Comput. Eng. 2022).
        Layers are initialised in order, each on the spikes of the one below.
        """
        h = self.encode(x, noise).values
        target = SIGMA_U * self.lif.threshold
        for layer in self.layers:
            layer.bias.zero_()
        for index, layer in enumerate(self.layers):
            ff_share = 1.0 - RECURRENT_SHARE if self.recurrent else 1.0
            self._scale_to(layer.weight, h, math.sqrt(ff_share) * target, generator)
            if self.recurrent:
                layer.recurrent_weight.zero_()
                s = self._run_dense(layer, index, h, noise)
                self._scale_to(
                    layer.recurrent_weight, s, math.sqrt(RECURRENT_SHARE) * target, generator
                )
            h = self._run_dense(layer, index, h, noise)
        self._scale_to(self.readout.weight, h, SIGMA_READOUT, generator)
        self.readout.bias.zero_()

    def _run_dense(self, layer: LIFLayer, index: int, h: Tensor, noise) -> Tensor:
        """A layer's spikes from a dense projection of ``h`` (initialisation)."""
        n_steps, n_samples = h.shape[:2]
        uniform = layer.noise(noise, index + 1, n_steps, n_samples, self.lif)
        drive = project(h, layer.weight, bias=layer.bias)
        spikes, _ = self._engine.run_currents(
            drive, self.lif, uniform, layer.recurrent_weight, False
        )
        return spikes

    def _scale_to(
        self, weight: Tensor, inputs: Tensor, sigma: float, generator: torch.Generator
    ) -> None:
        """Draw ``weight`` so the free potential it drives from ``inputs`` has std ``sigma``."""
        filtered = leaky_readout(inputs.contiguous(), self.lif.alpha_syn, self.lif.alpha_mem)
        # Mean squared norm, scaled by the largest value so that float32 cannot overflow, in
        # place: a float64 copy of a large input's filtered values would cost memory and time.
        low = high = 0.0
        if filtered.numel():
            low, high = (v.item() for v in filtered.aminmax())  # no temporary, unlike abs()
        peak = max(-low, high)
        power = 0.0
        if math.isfinite(low) and math.isfinite(high) and peak > 0:
            filtered.div_(peak)
            norms = torch.linalg.vector_norm(filtered, dim=-1).double()
            power = norms.square().mean().item() * peak**2
        if not (math.isfinite(low) and math.isfinite(high) and math.isfinite(power)):
            # float32 overflow (inf, or inf - inf = NaN) in the filtered inputs: training
            # would only produce NaNs
            raise ValueError(
                "The input values are too large for float32 simulation (their filtered "
                "amplitude overflows); scale the features first, e.g. with StandardScaler."
            )
        n_in = weight.shape[1]
        scale = sigma / math.sqrt(power) if power > 1e-12 else 1.0 / math.sqrt(n_in)
        noise = torch.randn(
            weight.shape, generator=generator, device=generator.device, dtype=DTYPE
        )
        weight.copy_(noise.to(weight) * scale)
