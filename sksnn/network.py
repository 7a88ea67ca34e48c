"""The stochastic spiking network as a ``torch.nn.Module``.

Input encoding, a stack of LIF layers (optionally recurrent) and a non-spiking leaky-integrator
readout. The module takes inputs batch-major as users hold them, ``(n_samples, n_features)`` or
``(n_samples, n_steps, n_inputs)``, and returns the readout potential over time; everything
about time loops stays in here and in :mod:`sksnn.lif`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor, nn

from ._fused import lif_fused_projected
from ._sparse import BinaryPattern, StepPattern, binary_linear, binary_pattern
from .encoding import ENCODINGS, encode
from .lif import LIFParameters, leaky_readout, lif_layer, resolve_engine
from .noise import NoiseSource

__all__ = ["READOUTS", "NetworkOutput", "SpikingNetwork", "project", "reduce_readout"]

READOUTS = ("max", "mean", "last")

# The network simulates in float32 whatever torch's default dtype is: inputs are converted to
# float32 by the estimators, and the weights must match them.
DTYPE = torch.float32
# Target standard deviation of the free membrane potential at initialisation, in units of the
# threshold (fluctuation-driven initialisation, Rossbroich, Gygax & Zenke 2022): large enough
# that a fresh network spikes on any input, small enough that it does not saturate.
SIGMA_U = 1.0
# Share of that variance carried by recurrent input when the layers are recurrent.
RECURRENT_SHARE = 0.1
# Target standard deviation of the readout potential (the logits) at initialisation.
SIGMA_READOUT = 1.0


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


def project(x: Tensor, weight: Tensor, *, sparse: bool = False, binary: bool = False) -> Tensor:
    """Input currents ``x @ weight.T`` for all time steps at once, time-major.

    A stride-0 time axis (constant input, e.g. the current encoding) is projected once and
    expanded, so the matrix product costs one step instead of ``n_steps``. A batch-major input
    seen through a transposed view (3-D ``X``) is projected in its own memory order and the
    result returned as a transposed view, which saves copying the input.

    Parameters
    ----------
    x : Tensor, shape (n_steps, n_samples, n_in)
    weight : Tensor, shape (n_out, n_in)
    sparse : bool, default=False
        Allow the event-driven product of :mod:`sksnn._sparse` when ``x`` is 0/1 and sparse
        enough (decided per call from the measured density).
    binary : bool, default=False
        ``x`` is known to hold only 0 and 1 (spikes); otherwise that is checked first.
    """
    n_steps, n_samples, _ = x.shape
    n_out = weight.shape[0]
    if n_steps > 1 and x.stride(0) == 0:
        return (x[0] @ weight.T).unsqueeze(0).expand(n_steps, n_samples, n_out)
    x2, batch_major = _memory_rows(x)
    pattern = binary_pattern(x2, n_out, known_binary=binary) if sparse else None
    out = x2 @ weight.T if pattern is None else binary_linear(x2, weight, pattern)
    if batch_major:
        return out.reshape(n_samples, n_steps, n_out).transpose(0, 1)
    return out.reshape(n_steps, n_samples, n_out)


def _memory_rows(x: Tensor) -> tuple[Tensor, bool]:
    """``x`` (n_steps, n_samples, n) as a 2-D matrix in its memory order, and whether that
    order is batch-major (``x`` a transposed view of a batch-major tensor)."""
    n_steps, _, n_in = x.shape
    batch_major = n_steps > 1 and not x.is_contiguous() and x.transpose(0, 1).is_contiguous()
    return (x.transpose(0, 1) if batch_major else x).reshape(-1, n_in), batch_major


def _input_pattern(x: Tensor, weight: Tensor, binary: bool) -> BinaryPattern | None:
    """The event-driven pattern of a layer input when it is 0/1 and sparse enough, else None."""
    if x.shape[0] > 1 and x.stride(0) == 0:
        return None  # constant over time: projected once, densely
    return binary_pattern(_memory_rows(x)[0], weight.shape[0], known_binary=binary)


def reduce_readout(output: Tensor, readout: str) -> Tensor:
    """Collapse the readout over time (axis 0): "max", "mean" or "last"."""
    if readout == "max":
        return output.max(dim=0).values
    if readout == "mean":
        return output.mean(dim=0)
    if readout == "last":
        return output[-1]
    raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}.")


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
        LIF implementation (see :func:`sksnn.lif.lif_layer`).
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
        self.lif = lif
        self.encoding = encoding
        self.n_steps = int(n_steps)
        self.engine = engine
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(n_out, n_in, dtype=DTYPE)) for n_in, n_out in pairwise(sizes)
        )
        self.recurrent_weights = nn.ParameterList(
            nn.Parameter(torch.empty(n, n, dtype=DTYPE)) for n in (sizes[1:] if recurrent else [])
        )
        self.readout_weight = nn.Parameter(torch.empty(n_outputs, sizes[-1], dtype=DTYPE))
        self.readout_bias = nn.Parameter(torch.zeros(n_outputs, dtype=DTYPE))
        # Placeholder scale until initialize() sees data; keeps a bare module usable.
        with torch.no_grad():
            for w in [*self.weights, *self.recurrent_weights, self.readout_weight]:
                w.normal_(0.0, 1.0 / math.sqrt(w.shape[1]))

    @property
    def recurrent(self) -> bool:
        return len(self.recurrent_weights) > 0

    @property
    def hidden_layer_sizes(self) -> tuple[int, ...]:
        return tuple(w.shape[0] for w in self.weights)

    def encode(self, x: Tensor, noise: NoiseSource | None) -> Tensor:
        """Time-major input (n_steps, n_samples, n_inputs) from 2-D features or 3-D sequences."""
        if x.ndim == 2:
            return encode(x, self.encoding, self.n_steps, noise)
        if x.ndim == 3:
            return x.transpose(0, 1)
        raise ValueError(f"Expected 2-D or 3-D input, got {x.ndim}-D.")

    def _run_layer(
        self,
        index: int,
        drive: Tensor,
        noise: NoiseSource | None,
        record: bool,
        uniform: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        if self.lif.stochastic and uniform is None:
            if noise is None:
                raise ValueError("A stochastic network (temperature > 0) needs a noise source.")
            uniform = noise.uniform(index + 1, tuple(drive.shape), drive.device)
        recurrent_weight = self.recurrent_weights[index] if self.recurrent else None
        return lif_layer(drive, self.lif, uniform, recurrent_weight, record, engine=self.engine)

    def _layer(
        self,
        index: int,
        h: Tensor,
        weight: Tensor,
        noise: NoiseSource | None,
        record: bool,
        fast: bool,
        binary: bool,
        pattern: BinaryPattern | StepPattern | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Project the layer input ``h`` and run hidden layer ``index``."""
        if pattern is None and fast:
            pattern = _input_pattern(h, weight, binary)
        if pattern is None:
            return self._run_layer(index, project(h, weight), noise, record)
        # Sparse 0/1 input: the projection runs inside the fused layer, block by block.
        uniform = None
        if self.lif.stochastic:
            if noise is None:
                raise ValueError("A stochastic network (temperature > 0) needs a noise source.")
            shape = (h.shape[0], h.shape[1], weight.shape[0])
            uniform = noise.uniform(index + 1, shape, h.device)
        recurrent_weight = self.recurrent_weights[index] if self.recurrent else None
        return lif_fused_projected(h, weight, pattern, self.lif, uniform, recurrent_weight, record)

    def forward(
        self,
        x: Tensor,
        noise: NoiseSource | None = None,
        record_membrane: bool = False,
        input_pattern: StepPattern | None = None,
    ) -> NetworkOutput:
        """Simulate the network on a batch.

        Parameters
        ----------
        x : Tensor, shape (n_samples, n_features) or (n_samples, n_steps, n_inputs)
        noise : NoiseSource, optional
            Uniform numbers for rate encoding and stochastic spikes.
        record_membrane : bool, default=False
        input_pattern : StepPattern, optional
            The active entries of a 0/1 3-D ``x``, grouped by step, when the caller has them
            (:meth:`sksnn._sparse.SampleEvents.batch`): the fused engine then skips scanning
            ``x`` (whose values are then not read). Fused engine only.
        """
        if input_pattern is not None and (
            x.ndim != 3
            or input_pattern.n_samples != x.shape[0]
            or input_pattern.n_rows != x.shape[0] * x.shape[1]
            or input_pattern.n_cols != x.shape[2]
        ):
            raise ValueError("input_pattern does not describe x (3-D input, same shape).")
        # The reference engine stays plain autograd throughout, projections included.
        fast = resolve_engine(self.engine) != "reference"
        if input_pattern is not None and not fast:
            raise ValueError("input_pattern is read by the fused engine only.")
        h = self.encode(x, noise)
        binary = x.ndim == 2 and self.encoding in ("rate", "latency")
        spikes, membranes = [], []
        for index, weight in enumerate(self.weights):
            h, u = self._layer(
                index,
                h,
                weight,
                noise,
                record_membrane,
                fast,
                binary,
                input_pattern if index == 0 else None,
            )
            spikes.append(h)
            membranes.append(u)
            binary = True
        drive = project(h, self.readout_weight, sparse=fast, binary=True)
        out = leaky_readout(drive, self.lif.alpha_syn, self.lif.alpha_mem) + self.readout_bias
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
        h = self.encode(x, noise)
        target = SIGMA_U * self.lif.threshold
        for index, weight in enumerate(self.weights):
            ff_share = 1.0 - RECURRENT_SHARE if self.recurrent else 1.0
            self._scale_to(weight, h, math.sqrt(ff_share) * target, generator)
            if self.recurrent:
                rec = self.recurrent_weights[index]
                rec.zero_()
                s, _ = self._run_layer(index, project(h, weight), noise, False)
                self._scale_to(rec, s, math.sqrt(RECURRENT_SHARE) * target, generator)
            h, _ = self._run_layer(index, project(h, weight), noise, False)
        self._scale_to(self.readout_weight, h, SIGMA_READOUT, generator)
        self.readout_bias.zero_()

    def _scale_to(
        self, weight: Tensor, inputs: Tensor, sigma: float, generator: torch.Generator
    ) -> None:
        """Draw ``weight`` so the free potential it drives from ``inputs`` has std ``sigma``."""
        filtered = leaky_readout(inputs.contiguous(), self.lif.alpha_syn, self.lif.alpha_mem)
        # Mean squared norm, scaled by the largest value so that float32 cannot overflow, in
        # place: a float64 copy of W1's filtered inputs (143 MB) cost its fit 0.15 s.
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
