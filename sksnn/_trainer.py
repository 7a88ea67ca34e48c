"""Mini-batch training of a :class:`~sksnn.network.SpikingNetwork` with Adam.

:class:`Trainer` runs epochs (:func:`train_epoch` is one pass over the data) with a snapshot
before each, rolled back when training diverges or is interrupted, and moves the network and
its optimiser between devices. The estimators keep scikit-learn's bookkeeping (the loss curve,
the stopping rule); this module does not know about scikit-learn.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ._progress import EpochReporter
from ._sparse import SampleEvents, StepPattern, binary_pattern, prefer_sparse
from .engines import Engine
from .exceptions import TrainingDivergedError
from .losses import activity_penalty, weight_penalty
from .network import SIGMA_U, NetworkOutput, SpikingNetwork
from .neuron import LIFParameters
from .noise import GeneratorNoise, NoiseSource
from .spikes import SpikeTrains

__all__ = [
    "EpochResult",
    "Trainer",
    "TrainingData",
    "available_memory",
    "batch_memory",
    "check_batch_fits",
    "input_events",
    "make_optimizer",
    "restore",
    "snapshot",
    "train_epoch",
]

SEED_MAX = 2**31 - 1


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
    validation : float or None
        Validation score, when the caller computes one.
    """

    loss: float
    firing_rates: np.ndarray
    seconds: float
    validation: float | None = None


def make_optimizer(
    module: SpikingNetwork, lr: float, lr_scales: list[float] | None = None
) -> torch.optim.Adam:
    """Adam with one parameter group per parameter (module order), each weight matrix
    stepping in proportion to its initial scale.

    The fluctuation-driven initialisation sets weight scales from the input statistics: the
    first layer's weights on sparse spike input start tens of times larger than on
    standardised tabular currents. Adam's step is absolute, so one step size would either
    crawl on the one or thrash the other. Each weight matrix therefore steps with
    ``lr * lr_scale``, ``lr_scale = std(W_init) * sqrt(fan_in)`` (its scale relative to the
    standard ``1 / sqrt(fan_in)``); hidden layers' biases with :func:`bias_step_scale`; the
    readout's bias with ``lr``. ``lr_scales`` (from a fitted state) restores the scales of a
    network that has trained since.
    """
    params = list(module.parameters())
    if lr_scales is None:
        lr_scales = initial_step_scales(module.named_parameters(), module.lif)
    groups = [
        {"params": [p], "lr": lr * s, "lr_scale": s}
        for p, s in zip(params, lr_scales, strict=True)
    ]
    return torch.optim.Adam(groups, lr=lr)


def initial_step_scales(named: Iterable[tuple[str, Tensor]], lif: LIFParameters) -> list[float]:
    """Each parameter's relative step size (see :func:`make_optimizer`), from its initial
    value; ``named`` gives ``(name, tensor)`` pairs in the module's parameter order."""
    return [
        bias_step_scale(lif) if is_hidden_bias(name) else _initial_scale(p) for name, p in named
    ]


def is_hidden_bias(name: str) -> bool:
    """Whether the parameter ``name`` is a hidden layer's bias current (``layers.i.bias``)."""
    return name.startswith("layers.") and name.endswith(".bias")


def bias_step_scale(lif: LIFParameters) -> float:
    """Relative step size of a hidden layer's bias current.

    A constant bias ``b`` settles the membrane at ``b / (1 - alpha_syn)``; with this scale an
    Adam step of ``lr`` moves that level by ``lr`` times the membrane's initial fluctuation
    (``SIGMA_U`` thresholds), whatever the layer's input. Scaling the bias like the layer's
    input weights instead would make it step tens of times faster on sparse spike input,
    whose weights start large.
    """
    return SIGMA_U * lif.threshold * (1.0 - lif.alpha_syn)


def _initial_scale(p: Tensor) -> float:
    if p.ndim != 2 or p.numel() < 2:
        return 1.0
    std = float(p.detach().std())
    return std * math.sqrt(p.shape[1]) if math.isfinite(std) and std > 0 else 1.0


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


def input_events(
    X: Tensor | SpikeTrains, module: SpikingNetwork, device: torch.device
) -> SampleEvents | None:
    """The active entries of a 0/1 3-D training set, indexed once for all epochs, or None.

    Only for an engine that takes events, and where it would take the event-driven path for
    this input anyway (CPU; input binary and sparse enough for the first hidden layer's width,
    see :func:`sksnn._sparse.prefer_sparse`). A :class:`~sksnn.spikes.SpikeTrains` gets the
    same decision and the same index as its dense array, without the dense array.
    """
    if device.type != "cpu" or not module.engine_object.takes_events:
        return None
    width = module.hidden_layer_sizes[0]
    if isinstance(X, SpikeTrains):
        # binary_pattern's rule: the sampled density (halved) and then the exact one
        sparse = prefer_sparse(X.sampled_density() / 2, width) and prefer_sparse(X.density, width)
        if not sparse or X.n_events >= np.iinfo(np.int32).max:
            return None
        return X.sample_events()
    if X.ndim != 3:
        return None
    n_samples, n_steps, n_inputs = X.shape
    pattern = binary_pattern(X.reshape(-1, n_inputs), width)
    if pattern is None or pattern.nnz >= np.iinfo(np.int32).max:  # int32 offsets
        return None
    return SampleEvents(pattern, n_samples, n_steps)


def train_epoch(
    module: SpikingNetwork,
    optimizer: torch.optim.Optimizer,
    data: TrainingData,
    loss_fn: Callable[[NetworkOutput, Tensor], Tensor],
    *,
    batch_size: int,
    order: np.ndarray,
    noise: NoiseSource,
    alpha: float,
    activity_reg: float,
    on_batch: Callable[[float], None] | None = None,
) -> EpochResult:
    """One pass over ``data`` in mini-batches of ``batch_size`` in the given ``order``.

    Parameters
    ----------
    data : TrainingData
        Its sample weights are normalised to mean 1 over the training set, so a batch's loss
        is the mean of ``w_i * loss_i`` and unit weights reproduce the unweighted loss exactly.
    loss_fn : callable
        ``loss_fn(output, y_batch)`` returns the per-sample data loss, shape (n_batch,).
    alpha : float
        L2 penalty, ``0.5 * alpha * ||W||^2 / n_batch`` per batch as in scikit-learn's MLP.
    activity_reg : float
        Strength of :func:`activity_penalty`.
    on_batch : callable, optional
        Called with each batch's loss (progress reporting).

    Raises
    ------
    TrainingDivergedError
        When a batch loss or, at the end, a weight is not finite.
    """
    start = time.perf_counter()
    n_samples = len(order)
    total_loss = 0.0
    rate_sums = np.zeros(len(module.layers))
    module.train()
    for begin in range(0, n_samples, batch_size):
        samples = order[begin : begin + batch_size]
        idx = torch.as_tensor(samples, device=data.device)
        n_batch = idx.shape[0]
        out = module(data.inputs(samples, idx), noise)
        per_sample = loss_fn(out, data.y[idx])
        if activity_reg > 0:
            per_sample = per_sample + activity_reg * activity_penalty(out.spikes)
        loss = (data.sample_weight[idx] * per_sample).mean()
        if alpha > 0:
            loss = loss + 0.5 * alpha * weight_penalty(module.connection_weights()) / n_batch
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


# Bytes kept alive per input unit and step for a materialised input (float32 and its copy).
_BYTES_PER_INPUT_STEP = 8


def batch_memory(
    n_steps: int,
    batch_size: int,
    n_inputs: int,
    hidden_layer_sizes: tuple[int, ...],
    n_outputs: int,
    engine: Engine,
    dense_input: bool,
) -> int:
    """Rough upper estimate of the memory (bytes) one training batch needs."""
    units = sum(hidden_layer_sizes) * engine.bytes_per_unit_step + n_outputs * 16
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


@dataclass
class TrainingData:
    """A training set: inputs (on the training device, or as :class:`SpikeTrains`), encoded
    targets and sample weights (normalised to mean 1) on the device and, for 0/1 spike data,
    its events indexed once (:func:`input_events`)."""

    X: Tensor | SpikeTrains
    y: Tensor
    sample_weight: Tensor
    events: SampleEvents | None = None

    @property
    def device(self) -> torch.device:
        return self.y.device

    def __len__(self) -> int:
        return len(self.y)

    def inputs(self, samples: np.ndarray, idx: Tensor) -> Tensor | StepPattern:
        """A batch's input: its events when indexed, else its dense array (``idx`` is
        ``samples`` on the device)."""
        if self.events is not None:
            return self.events.batch(samples)
        if isinstance(self.X, SpikeTrains):
            return torch.from_numpy(self.X.dense_samples(samples)).to(self.device)
        return self.X[idx]


class Trainer:
    """Epochs of mini-batch training of ``module`` with ``optimizer``.

    Parameters
    ----------
    module : SpikingNetwork
    optimizer : torch.optim.Optimizer
        Over ``module``'s parameters.
    """

    def __init__(self, module: SpikingNetwork, optimizer: torch.optim.Optimizer) -> None:
        self.module = module
        self.optimizer = optimizer

    def to(self, device: torch.device) -> None:
        """Move the network and the optimiser's state to ``device``."""
        self.module.to(device)
        for state in self.optimizer.state.values():
            for k, v in state.items():
                if torch.is_tensor(v):
                    state[k] = v.to(device)

    def set_learning_rate(self, learning_rate: float) -> None:
        """Step sizes from ``learning_rate``, each group's relative scale kept."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate * group.get("lr_scale", 1.0)

    def run(
        self,
        data: TrainingData,
        loss_fn: Callable[[NetworkOutput, Tensor], Tensor],
        *,
        n_epochs: int,
        rng: np.random.RandomState,
        shuffle: bool,
        batch_size: int,
        alpha: float,
        activity_reg: float,
        first_epoch: int,
        on_epoch: Callable[[EpochResult], None],
        should_stop: Callable[[], bool],
        verbose: bool = False,
        name: str = "fit",
    ) -> bool:
        """Train for up to ``n_epochs`` epochs; True when ``should_stop`` ended it early.

        ``on_epoch(result)`` records each completed epoch (and may set its validation score);
        ``should_stop()`` is asked after each and ends training early when True.

        Each epoch starts from a snapshot: when it diverges (:class:`TrainingDivergedError`)
        or is interrupted (KeyboardInterrupt) the weights and optimiser state of the last
        completed epoch are restored before the exception propagates. Each epoch draws its
        sample order and then its noise seed from ``rng``.
        """
        for epoch in range(first_epoch, first_epoch + n_epochs):
            order = rng.permutation(len(data)) if shuffle else np.arange(len(data))
            reporter = EpochReporter(epoch, -(-len(data) // batch_size)) if verbose else None
            good = snapshot(self.module, self.optimizer)
            try:
                result = train_epoch(
                    self.module,
                    self.optimizer,
                    data,
                    loss_fn,
                    batch_size=batch_size,
                    order=order,
                    noise=GeneratorNoise(rng.randint(SEED_MAX)),
                    alpha=alpha,
                    activity_reg=activity_reg,
                    on_batch=None if reporter is None else reporter.batch,
                )
            except TrainingDivergedError:
                restore(self.module, self.optimizer, good)
                raise
            except KeyboardInterrupt:
                # Keep a usable model: the weights after the last completed epoch, consistent
                # with the history; warm_start or partial_fit continue from there.
                restore(self.module, self.optimizer, good)
                warnings.warn(
                    f"{name} was interrupted during epoch {epoch}; the estimator keeps the "
                    f"weights after epoch {epoch - 1}.",
                    UserWarning,
                    stacklevel=4,
                )
                raise
            on_epoch(result)
            if reporter is not None:
                reporter.close(result.loss, result.firing_rates, result.seconds, result.validation)
            if should_stop():
                return True
        return False
