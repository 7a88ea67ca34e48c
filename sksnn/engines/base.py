"""What every engine offers a layer, and what a layer hands an engine.

A hidden layer receives its input over time as a :class:`LayerInput` (a tensor, or the spike
events of a 0/1 input) and asks its engine for the spikes. Engines differ in how they run the
time loop and how they project inputs; they agree on the results (the tests check spikes and
membranes bit for bit and gradients to round-off).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from .._sparse import StepPattern
from ..neuron import LIFParameters
from ..noise import CounterUniform
from ..readout import leaky_readout

__all__ = ["Engine", "LayerInput", "memory_rows", "project"]


@dataclass(frozen=True)
class LayerInput:
    """A hidden layer's input over time.

    Attributes
    ----------
    values : Tensor of shape (n_steps, n_samples, n_in), or None
        The input, time-major (it may be a transposed view of a batch-major tensor). None when
        only ``events`` describe it.
    events : StepPattern or None
        The active entries of a 0/1 input, grouped by step, when they are already known (spike
        data indexed once per fit); engines that take events then never read ``values``.
    binary : bool
        ``values`` is known to hold only 0 and 1 (spikes, rate or latency codes).
    """

    values: Tensor | None
    events: StepPattern | None = None
    binary: bool = False

    def __post_init__(self) -> None:
        if self.values is None and self.events is None:
            raise ValueError("A layer input needs values or events.")

    @property
    def n_steps(self) -> int:
        if self.values is not None:
            return self.values.shape[0]
        return self.events.n_rows // self.events.n_samples

    @property
    def n_samples(self) -> int:
        return self.values.shape[1] if self.values is not None else self.events.n_samples


class Engine:
    """Runs LIF layers' time loops; one instance serves a network (engines hold no state).

    Subclasses implement :meth:`run_currents`; :meth:`run_layer` and :meth:`project` default to
    dense matrix products, :meth:`run_last_layer` to the two in turn.
    """

    name: ClassVar[str] = "engine"
    #: Whether :meth:`run_layer` accepts a :class:`LayerInput` given by events alone.
    takes_events: ClassVar[bool] = False
    #: Bytes kept alive per hidden unit, step and sample during a training batch (saved
    #: activations and working set), with a margin: the early memory check of ``fit`` uses it.
    bytes_per_unit_step: ClassVar[int] = 32

    def run_currents(
        self,
        drive: Tensor,
        params: LIFParameters,
        uniform: Tensor | CounterUniform | None,
        recurrent_weight: Tensor | None,
        record_membrane: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """Spikes (and membranes, if recorded) of a layer driven by currents ``P[n]``.

        Parameters
        ----------
        drive : Tensor, shape (n_steps, n_samples, n_units)
            Feed-forward input current; may be an expanded (stride-0) view.
        params : LIFParameters
        uniform : Tensor of the shape of ``drive``, CounterUniform, or None
            Uniform [0, 1) numbers for the Bernoulli spikes; required when ``T > 0``. A
            :class:`~sksnn.noise.CounterUniform` describes them without drawing them: an
            engine computes them where it uses them or asks for the array (the same numbers).
        recurrent_weight : Tensor, shape (n_units, n_units), optional
            ``V``; the recurrent current is ``S[n] @ V.T``.
        record_membrane : bool
            Also return ``U[n]`` (the potential the spike at step ``n`` was drawn from).
        """
        raise NotImplementedError

    def run_layer(
        self,
        layer_input: LayerInput,
        weight: Tensor,
        params: LIFParameters,
        uniform: Tensor | CounterUniform | None,
        recurrent_weight: Tensor | None,
        record_membrane: bool,
        bias: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """A layer driven by ``layer_input @ weight.T + bias``; see :meth:`run_currents`."""
        if layer_input.values is None:
            raise ValueError(f"The {self.name} engine needs the layer input's values.")
        drive = project(layer_input.values, weight, bias=bias)
        return self.run_currents(drive, params, uniform, recurrent_weight, record_membrane)

    def run_last_layer(
        self,
        layer_input: LayerInput,
        weight: Tensor,
        params: LIFParameters,
        uniform: Tensor | CounterUniform | None,
        recurrent_weight: Tensor | None,
        record_membrane: bool,
        bias: Tensor | None,
        readout_weight: Tensor,
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """:meth:`run_layer` for the layer that drives the readout: its spikes, membranes and
        the readout's input currents ``spikes @ readout_weight.T`` (as :meth:`project`).

        An engine may compute the currents, and in the backward pass their gradient with
        respect to the spikes, inside the layer's own loops (the compiled engine does).
        """
        spikes, membrane = self.run_layer(
            layer_input, weight, params, uniform, recurrent_weight, record_membrane, bias
        )
        return spikes, membrane, self.project(spikes, readout_weight, binary=True)

    def project(self, x: Tensor, weight: Tensor, binary: bool) -> Tensor:
        """``x @ weight.T`` over all steps, time-major (the readout's input currents)."""
        return project(x, weight)

    def integrate_readout(self, currents: Tensor, alpha_syn: float, alpha_mem: float) -> Tensor:
        """The readout's potential from its input currents (n_steps, n_samples, n_outputs):
        :func:`sksnn.readout.leaky_readout`."""
        return leaky_readout(currents, alpha_syn, alpha_mem)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def memory_rows(x: Tensor) -> tuple[Tensor, bool]:
    """``x`` (n_steps, n_samples, n) as a 2-D matrix in its memory order, and whether that
    order is batch-major (``x`` a transposed view of a batch-major tensor)."""
    n_steps, _, n_in = x.shape
    batch_major = n_steps > 1 and not x.is_contiguous() and x.transpose(0, 1).is_contiguous()
    return (x.transpose(0, 1) if batch_major else x).reshape(-1, n_in), batch_major


def is_constant_in_time(x: Tensor) -> bool:
    """A stride-0 time axis: the same input every step (e.g. the current encoding)."""
    return x.shape[0] > 1 and x.stride(0) == 0


def _affine(rows: Tensor, weight: Tensor, bias: Tensor | None, product) -> Tensor:
    """``rows @ weight.T + bias`` without a second pass over the result."""
    if product is None:
        return rows @ weight.T if bias is None else torch.addmm(bias, rows, weight.T)
    out = product(rows, weight)
    return out if bias is None else out.add_(bias)


def project(x: Tensor, weight: Tensor, product=None, bias: Tensor | None = None) -> Tensor:
    """Input currents ``x @ weight.T`` (plus ``bias``) for all time steps at once, time-major.

    A stride-0 time axis (constant input) is projected once and expanded, so the product costs
    one step instead of ``n_steps``. A batch-major input seen through a transposed view (3-D
    ``X``) is projected in its own memory order and the result returned as a transposed view,
    which saves copying the input. ``product(rows, weight)``, when given, replaces the dense
    ``rows @ weight.T`` (e.g. by an event-driven product).
    """
    n_steps, n_samples, _ = x.shape
    n_out = weight.shape[0]
    if is_constant_in_time(x):
        once = _affine(x[0], weight, bias, None)
        return once.unsqueeze(0).expand(n_steps, n_samples, n_out)
    rows, batch_major = memory_rows(x)
    out = _affine(rows, weight, bias, product)
    if batch_major:
        return out.reshape(n_samples, n_steps, n_out).transpose(0, 1)
    return out.reshape(n_steps, n_samples, n_out)
