"""The fused engine: one autograd node per layer with a hand-written adjoint (the default).

Inputs that are 0/1 and sparse enough (spike data, rate and latency codes, hidden spikes) are
projected event by event inside the layer's node; dense inputs are projected first. The kernel
itself lives in :mod:`sksnn.engines._fused` and :mod:`sksnn.engines._fused_steps`.
"""

from __future__ import annotations

import functools

from torch import Tensor

from .._sparse import BinaryPattern, StepPattern, binary_linear, binary_pattern
from ..noise import as_tensor
from ._fused import lif_fused, lif_fused_projected
from .base import Engine, LayerInput, is_constant_in_time, memory_rows, project

__all__ = ["FusedEngine"]


class FusedEngine(Engine):
    """Fused time loop, event-driven projections of sparse 0/1 inputs."""

    name = "fused"
    takes_events = True
    # the step memory of benchmarks/bench_engine.py per unit, step and sample, with a margin
    bytes_per_unit_step = 24

    def run_currents(self, drive, params, uniform, recurrent_weight, record_membrane):
        uniform = as_tensor(uniform, drive.shape)
        return lif_fused(drive, params, uniform, recurrent_weight, record_membrane)

    def run_layer(
        self, layer_input, weight, params, uniform, recurrent_weight, record_membrane, bias=None
    ):
        pattern = layer_input.events
        if pattern is None:
            pattern = _pattern(layer_input, weight)
        if pattern is None:
            drive = project(layer_input.values, weight, bias=bias)
            return self.run_currents(drive, params, uniform, recurrent_weight, record_membrane)
        shape = (layer_input.n_steps, layer_input.n_samples, weight.shape[0])
        uniform = as_tensor(uniform, shape)
        return lif_fused_projected(
            layer_input.values,
            weight,
            pattern,
            params,
            uniform,
            recurrent_weight,
            record_membrane,
            bias,
        )

    def project(self, x: Tensor, weight: Tensor, binary: bool) -> Tensor:
        return project(x, weight, functools.partial(_product, binary=binary))


def _product(rows: Tensor, weight: Tensor, binary: bool) -> Tensor:
    """``rows @ weight.T``, event by event where ``rows`` is 0/1 and sparse enough."""
    pattern = binary_pattern(rows, weight.shape[0], known_binary=binary)
    return rows @ weight.T if pattern is None else binary_linear(rows, weight, pattern)


def _pattern(layer_input: LayerInput, weight: Tensor) -> BinaryPattern | StepPattern | None:
    """The event-driven pattern of a layer input when it is 0/1 and sparse enough, else None."""
    x = layer_input.values
    if is_constant_in_time(x):
        return None  # projected once, densely
    return binary_pattern(memory_rows(x)[0], weight.shape[0], known_binary=layer_input.binary)
