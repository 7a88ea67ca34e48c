"""Encodings of tabular features (n_samples, n_features) as input over time.

Every encoder returns a time-major tensor of shape (n_steps, n_samples, n_features). The
"current" encoding returns a stride-0 view over time, so that nothing is copied and the first
layer can project the features once instead of once per step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .noise import NoiseSource

__all__ = ["ENCODINGS", "encode", "latency_steps"]

ENCODINGS = ("current", "rate", "latency")


def latency_steps(x: Tensor, n_steps: int) -> Tensor:
    """Spike step of the latency code: ``round((1 - clip(x, 0, 1)) * (n_steps - 1))``.

    A feature of 1 fires at the first step, a feature of 0 (or below) at the last.
    """
    return torch.round((1.0 - x.clamp(0.0, 1.0)) * (n_steps - 1)).long()


def encode(x: Tensor, encoding: str, n_steps: int, noise: NoiseSource | None = None) -> Tensor:
    """Turn features ``x`` (n_samples, n_features) into input over ``n_steps`` steps.

    Parameters
    ----------
    x : Tensor, shape (n_samples, n_features)
    encoding : {"current", "rate", "latency"}
        "current": each feature is a constant input current at every step.
        "rate": Bernoulli spikes with probability ``clip(x, 0, 1)`` at every step.
        "latency": one spike per feature, at :func:`latency_steps`.
    n_steps : int
    noise : NoiseSource, optional
        Required by "rate" (stream 0).
    """
    n_samples, n_features = x.shape
    if encoding == "current":
        return x.unsqueeze(0).expand(n_steps, n_samples, n_features)
    if encoding == "rate":
        if noise is None:
            raise ValueError("The rate encoding needs a noise source.")
        u = noise.uniform(0, (n_steps, n_samples, n_features), x.device)
        return (u < x.clamp(0.0, 1.0)).to(x.dtype)
    if encoding == "latency":
        steps = latency_steps(x, n_steps)
        out = x.new_zeros(n_steps, n_samples, n_features)
        return out.scatter_(0, steps.unsqueeze(0), 1.0)
    raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}.")
