"""Losses and penalties, per sample, shared by the estimators and :mod:`sksnn.theory`.

Each loss takes the readout potential over time (time-major, as
:class:`~sksnn.network.NetworkOutput` holds it) and reduces it over time first.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "MAX_SPIKE_RATE",
    "READOUTS",
    "activity_penalty",
    "cross_entropy",
    "spike_count",
    "squared_error",
    "weight_penalty",
]

# Upper bound of the activity regulariser: spikes per neuron per step above which the rate is
# penalised (7 spikes in 100 steps, the bound used by Gygax & Zenke 2025).
MAX_SPIKE_RATE = 0.07
# How the readout potential is reduced over time.
READOUTS = ("max", "mean", "last")


def reduce_readout(output: Tensor, readout: str) -> Tensor:
    """Collapse the readout over time (axis 0): "max", "mean" or "last".

    The mean is summed in float64: a float32 sum's order, and so its last bit, would depend on
    the number of samples in the batch.
    """
    if readout == "max":
        return output.max(dim=0).values
    if readout == "mean":
        return output.to(torch.float64).mean(dim=0).to(output.dtype)
    if readout == "last":
        return output[-1]
    raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}.")


def cross_entropy(output: Tensor, y: Tensor, readout: str = "max") -> Tensor:
    """Softmax cross-entropy of the time-reduced readout (the logits) against class indices."""
    logits = reduce_readout(output, readout)
    return torch.nn.functional.cross_entropy(logits, y, reduction="none")


def squared_error(output: Tensor, y: Tensor, readout: str = "mean") -> Tensor:
    """Half the squared error of the time-reduced readout, averaged over the outputs."""
    pred = reduce_readout(output, readout)
    return 0.5 * (pred - y.reshape(pred.shape)).pow(2).mean(dim=1)


def spike_count(spikes: list[Tensor]) -> Tensor:
    """Total hidden spikes of each sample (linear in the spikes)."""
    return sum(s.sum(dim=(0, 2)) for s in spikes)


def weight_penalty(weights: list[Tensor]) -> Tensor:
    """Sum of squared connection weights, for the L2 penalty ``alpha``."""
    return sum(w.pow(2).sum() for w in weights)


def activity_penalty(spikes: list[Tensor], max_rate: float = MAX_SPIKE_RATE) -> Tensor:
    """Per-sample upper-bound activity penalty: squared excess spike count per neuron.

    ``mean over neurons of relu(count - max_rate * n_steps)^2``, summed over layers; shape
    (n_samples,).
    """
    total = 0.0
    for s in spikes:
        counts = s.sum(dim=0)  # (n_samples, n_units)
        total = total + torch.relu(counts - max_rate * s.shape[0]).pow(2).mean(dim=1)
    return total
