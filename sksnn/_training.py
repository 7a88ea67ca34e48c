"""Mini-batch training of a :class:`~sksnn.network.SpikingNetwork`: batches, losses, penalties.

One call of :func:`train_epoch` is one pass over the data. The estimators run the epochs,
early stopping and bookkeeping; this module does not know about scikit-learn.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ._sparse import SampleEvents, binary_pattern
from .exceptions import TrainingDivergedError
from .lif import resolve_engine
from .network import NetworkOutput, SpikingNetwork
from .noise import NoiseSource

__all__ = [
    "MAX_SPIKE_RATE",
    "EpochResult",
    "TrainingDivergedError",
    "activity_penalty",
    "available_memory",
    "batch_memory",
    "check_batch_fits",
    "input_events",
    "restore",
    "snapshot",
    "train_epoch",
    "weight_penalty",
]

# Upper bound of the activity regulariser: spikes per neuron per step above which the rate is
# penalised (7 spikes in 100 steps, the bound used by Gygax & Zenke 2025).
MAX_SPIKE_RATE = 0.07


@dataclass
class EpochResult:
    """Summary of one epoch.

    Attributes
    ----------
    loss : float
        Sample-weighted mean training loss including penalties.
    firing_rates : numpy.ndarray
        Mean spikes per neuron per step of each hidden layer.
    seconds : float
    """

    loss: float
    firing_rates: np.ndarray
    seconds: float


def weight_penalty(module: SpikingNetwork) -> Tensor:
    """Sum of squared connection weights (biases excluded), for the L2 penalty ``alpha``."""
    weights = [*module.weights, *module.recurrent_weights, module.readout_weight]
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


def snapshot(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """A deep copy of the weights and optimiser state, to roll back to."""
    return {
        "module": {k: v.detach().clone() for k, v in module.state_dict().items()},
        "optimizer": copy.deepcopy(optimizer.state_dict()),
    }


def restore(module: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a :func:`snapshot` back."""
    module.load_state_dict(state["module"])
    optimizer.load_state_dict(state["optimizer"])


def input_events(X: Tensor, module: SpikingNetwork) -> SampleEvents | None:
    """The active entries of a 0/1 3-D training set, indexed once for all epochs, or None.

    Only where the fused engine would take the event-driven path for it anyway (CPU; input
    binary and sparse enough for the first hidden layer's width, see
    :func:`sksnn._sparse.prefer_sparse`).
    """
    if X.ndim != 3 or X.device.type != "cpu" or resolve_engine(module.engine) == "reference":
        return None
    n_samples, n_steps, n_inputs = X.shape
    pattern = binary_pattern(X.reshape(-1, n_inputs), module.weights[0].shape[0])
    if pattern is None or pattern.nnz >= np.iinfo(np.int32).max:  # int32 offsets
        return None
    return SampleEvents(pattern, n_samples, n_steps)


def train_epoch(
    module: SpikingNetwork,
    optimizer: torch.optim.Optimizer,
    X: Tensor,
    y: Tensor,
    sample_weight: Tensor,
    loss_fn: Callable[[NetworkOutput, Tensor], Tensor],
    *,
    batch_size: int,
    order: np.ndarray,
    noise: NoiseSource,
    alpha: float,
    activity_reg: float,
    on_batch: Callable[[float], None] | None = None,
    events: SampleEvents | None = None,
) -> EpochResult:
    """One pass over ``X`` in mini-batches of ``batch_size`` in the given ``order``.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(output, y_batch)`` returns the per-sample data loss, shape (n_batch,).
    sample_weight : Tensor, shape (n_samples,)
        Normalised to mean 1 over the training set, so a batch's loss is the mean of
        ``w_i * loss_i`` and unit weights reproduce the unweighted loss exactly.
    alpha : float
        L2 penalty, ``0.5 * alpha * ||W||^2 / n_batch`` per batch as in scikit-learn's MLP.
    activity_reg : float
        Strength of :func:`activity_penalty`.
    on_batch : callable, optional
        Called with each batch's loss (progress reporting).
    events : SampleEvents, optional
        Active entries of a 0/1 3-D ``X``, indexed once per fit (:func:`input_events`); each
        batch's are gathered from it instead of scanned.

    Raises
    ------
    TrainingDivergedError
        When a batch loss or, at the end, a weight is not finite.
    """
    start = time.perf_counter()
    n_samples = len(order)
    total_loss = 0.0
    rate_sums = np.zeros(len(module.weights))
    module.train()
    for begin in range(0, n_samples, batch_size):
        samples = order[begin : begin + batch_size]
        idx = torch.as_tensor(samples, device=X.device)
        n_batch = idx.shape[0]
        if events is None:
            out = module(X[idx], noise)
        else:
            # The fused layer reads only the gathered pattern: a shape-only stand-in saves
            # copying the dense batch (W1: 30 ms of a 66 ms step). NaN, so a read would show.
            stand_in = X.new_full((1, 1, 1), float("nan")).expand(n_batch, *X.shape[1:])
            out = module(stand_in, noise, input_pattern=events.batch(samples))
        per_sample = loss_fn(out, y[idx])
        if activity_reg > 0:
            per_sample = per_sample + activity_reg * activity_penalty(out.spikes)
        loss = (sample_weight[idx] * per_sample).mean()
        if alpha > 0:
            loss = loss + 0.5 * alpha * weight_penalty(module) / n_batch
        loss_value = loss.item()
        if not np.isfinite(loss_value):
            raise TrainingDivergedError(
                f"The training loss became {loss_value} (diverged); try a smaller "
                "learning_rate_init or standardise the input features."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss_value * n_batch
        rate_sums += np.array([s.detach().mean().item() for s in out.spikes]) * n_batch
        if on_batch is not None:
            on_batch(loss_value)
    # A non-finite gradient in the last batch leaves no trace in the losses: check the weights.
    if not all(bool(torch.isfinite(p).all()) for p in module.parameters()):
        raise TrainingDivergedError(
            "The weights became NaN or infinite (diverged); try a smaller learning_rate_init "
            "or standardise the input features."
        )
    return EpochResult(
        loss=total_loss / n_samples,
        firing_rates=rate_sums / n_samples,
        seconds=time.perf_counter() - start,
    )


# Bytes kept alive per hidden unit and time step during one training batch, by LIF engine
# (activations saved for the backward pass plus the working set), and per input unit and step
# for a materialised input. Measured with benchmarks/bench_engine.py (growth of the resident
# set during a step, per hidden unit, step and sample): reference 23 (W1), 19 (W2), 20 (W3);
# fused 11 (W1, event-driven input), 10 (W2), 16 (W3, dense drive). About 1.4x the largest,
# so that the early check refuses only batches that would not fit.
_BYTES_PER_UNIT_STEP = {"reference": 32, "fused": 24}
_BYTES_PER_INPUT_STEP = 8


def batch_memory(
    n_steps: int,
    batch_size: int,
    n_inputs: int,
    hidden_layer_sizes: tuple[int, ...],
    n_outputs: int,
    engine: str,
    dense_input: bool,
) -> int:
    """Rough upper estimate of the memory (bytes) one training batch needs."""
    per_unit = _BYTES_PER_UNIT_STEP.get(engine, max(_BYTES_PER_UNIT_STEP.values()))
    units = sum(hidden_layer_sizes) * per_unit + n_outputs * 16
    inputs = n_inputs * _BYTES_PER_INPUT_STEP if dense_input else 0
    return n_steps * batch_size * (units + inputs)


def available_memory(device: torch.device) -> int | None:
    """Free memory on ``device`` in bytes, or None when it cannot be determined."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_batch_fits(needed: int, device: torch.device) -> None:
    """Raise a MemoryError-like ValueError early when one batch cannot fit in memory."""
    free = available_memory(device)
    if free is not None and needed > free:
        raise ValueError(
            f"One training batch needs about {needed / 2**30:.1f} GiB but only "
            f"{free / 2**30:.1f} GiB is available on {device}; use a smaller batch_size or "
            "n_steps (or fewer hidden units)."
        )
