"""Small networks, losses and imposed spike patterns for the exact gradient computations.

The multilayer checks of :mod:`sksnn.theory.multilayer` and the single-neuron checks run the
estimators' own network code (:class:`sksnn.network.SpikingNetwork`, reference LIF engine) in
float64. Two devices make that code compute exact probabilities:

* a spike pattern ("path") is imposed by handing the spike function uniform numbers 0 (spike)
  and 1 (no spike) instead of random ones (:class:`ForcedPaths`);
* a surrogate whose derivative is zero turns the spikes into constants for autograd, so that
  the recorded membrane potentials, and hence the path probabilities, are differentiated with
  the path held fixed (:func:`exact_pass`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ..losses import cross_entropy, spike_count, squared_error
from ..network import NetworkOutput, SpikingNetwork
from ..neuron import LIFParameters, decay
from ..noise import NoiseSource
from ..surrogates import Surrogate, get_escape_noise, get_surrogate
from ._common import check_int

__all__ = [
    "ForcedPaths",
    "LossFn",
    "exact_pass",
    "make_small_network",
    "path_bits",
    "path_log_probability",
    "path_probability",
    "resolve_loss",
    "with_lif",
]

LossFn = Callable[[NetworkOutput, Tensor | None], Tensor]


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------
def _spike_count(out: NetworkOutput, y: Tensor | None) -> Tensor:
    return spike_count(out.spikes)


def _mse(out: NetworkOutput, y: Tensor | None) -> Tensor:
    if y is None:
        raise ValueError('loss="mse" needs targets y.')
    return squared_error(out.output, y, "mean")


def _cross_entropy(out: NetworkOutput, y: Tensor | None) -> Tensor:
    if y is None:
        raise ValueError('loss="cross_entropy" needs class indices y.')
    return cross_entropy(out.output, y.long(), "max")


_LOSSES: dict[str, LossFn] = {
    "spike_count": _spike_count,
    "mse": _mse,
    "cross_entropy": _cross_entropy,
}


def resolve_loss(loss: str | LossFn) -> LossFn:
    """Per-sample loss ``loss(out, y) -> Tensor (n_samples,)`` from a name or a callable.

    Parameters
    ----------
    loss : str or callable
        ``"spike_count"`` (total hidden spikes; linear in the spikes), ``"mse"`` (the
        regressor's loss: half the squared error of the time-averaged readout), or
        ``"cross_entropy"`` (the classifier's loss on the maximum over time of the readout), or
        a callable taking a :class:`~sksnn.network.NetworkOutput` (time-major tensors) and the
        targets, returning one loss per sample.

    Returns
    -------
    callable
    """
    if callable(loss):
        return loss
    try:
        return _LOSSES[loss]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown loss {loss!r}; expected one of {sorted(_LOSSES)}.") from None


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _NoDerivative(Surrogate):
    """Zero surrogate derivative: spikes become constants for autograd (the exact pass)."""

    name = "none"

    def derivative(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)


def with_lif(module: SpikingNetwork, **changes) -> SpikingNetwork:
    """A float64 copy of ``module`` on the reference engine with ``module.lif`` fields replaced.

    Parameters
    ----------
    module : SpikingNetwork
    **changes
        Fields of :class:`~sksnn.neuron.LIFParameters`, e.g. ``temperature=0.2``.

    Returns
    -------
    SpikingNetwork
        The input module is not modified.

    Examples
    --------
    >>> net = make_small_network(random_state=0)
    >>> with_lif(net, temperature=0.3).lif.temperature
    0.3
    """
    out = copy.deepcopy(module).to(torch.float64)
    out.engine = "reference"
    if changes:
        out.lif = replace(out.lif, **changes)
    return out


def make_small_network(
    n_inputs: int = 3,
    hidden_layer_sizes: Sequence[int] = (2, 2),
    n_outputs: int = 1,
    *,
    n_steps: int = 5,
    temperature: float = 0.2,
    escape_noise: str = "sigmoid",
    surrogate: str | Surrogate = "matched",
    surrogate_beta: float | None = None,
    reset: str = "zero",
    detach_reset: bool = True,
    weight_scale: float = 3.0,
    random_state: int = 0,
) -> SpikingNetwork:
    """A small float64 network for exact enumeration, with fast neurons.

    The time constants are ``tau_mem = 2 dt`` and ``tau_syn = dt`` so that a few steps are
    enough for activity to cross two layers (each layer adds a delay of two steps). Weights are
    ``N(0, weight_scale**2 / n_in)``, the readout bias 0.

    Parameters
    ----------
    n_inputs, hidden_layer_sizes, n_outputs : int, tuple of int, int
    n_steps : int, default=5
        Steps simulated for 2-D (constant-current) input.
    temperature : float, default=0.2
    escape_noise : str, default="sigmoid"
    surrogate : str or Surrogate, default="matched"
    surrogate_beta : float, optional
        Default ``1 / temperature`` (10 at temperature 0), as in the estimators.
    reset : {"zero", "subtract", "none"}, default="zero"
    detach_reset : bool, default=True
    weight_scale : float, default=3.0
    random_state : int, default=0

    Returns
    -------
    SpikingNetwork

    Examples
    --------
    >>> net = make_small_network(hidden_layer_sizes=(2,), random_state=1)
    >>> net.hidden_layer_sizes, net.lif.temperature
    ((2,), 0.2)
    """
    sizes = tuple(hidden_layer_sizes) if isinstance(hidden_layer_sizes, Sequence) else None
    if not sizes:
        raise ValueError(
            f"hidden_layer_sizes must be a non-empty sequence, got {hidden_layer_sizes!r}."
        )
    for name, value in [("n_inputs", n_inputs), ("n_outputs", n_outputs), ("n_steps", n_steps)]:
        check_int(value, name)
    for size in sizes:
        check_int(size, "each hidden layer size")
    beta = surrogate_beta
    if beta is None and not isinstance(surrogate, Surrogate):
        beta = 1.0 / temperature if temperature > 0 else 10.0
    lif = LIFParameters(
        alpha_syn=decay(1.0, 1.0),
        alpha_mem=decay(1.0, 2.0),
        threshold=1.0,
        temperature=float(temperature),
        escape_noise=get_escape_noise(escape_noise),
        surrogate=get_surrogate(surrogate, beta, escape_noise),
        reset=reset,
        detach_reset=detach_reset,
    )
    net = SpikingNetwork(
        n_inputs, tuple(hidden_layer_sizes), n_outputs, lif, n_steps=n_steps, engine="reference"
    ).to(torch.float64)
    gen = torch.Generator().manual_seed(int(random_state))
    with torch.no_grad():
        for w in [*(layer.weight for layer in net.layers), net.readout.weight]:
            w.copy_(torch.randn(w.shape, generator=gen, dtype=torch.float64))
            w.mul_(weight_scale / math.sqrt(w.shape[1]))
        net.readout.bias.zero_()
    return net


def exact_pass(module: SpikingNetwork) -> SpikingNetwork:
    """A copy of ``module`` whose spikes carry no gradient (zero surrogate derivative).

    Backpropagating through it differentiates the membrane potentials, and everything computed
    from them, with the spike pattern held fixed: the derivative the path probabilities need.
    """
    return with_lif(module, surrogate=_NoDerivative(beta=1.0))


class ForcedPaths(NoiseSource):
    """Uniform numbers that impose given spikes: 0 where a spike is wanted, 1 where not.

    ``u = 0 < p`` fires whenever ``p > 0`` and ``u = 1 < p`` never does, so the imposed
    pattern is followed exactly unless a wanted spike has probability 0 in float64, and such a
    path has probability 0 anyway.

    Parameters
    ----------
    bits : list of Tensor, shape (n_steps, n_rows, n_units)
        The wanted spikes of each hidden layer.
    """

    def __init__(self, bits: list[Tensor]) -> None:
        self.bits = bits

    def uniform(self, stream: int, shape: tuple[int, int, int], device: torch.device) -> Tensor:
        if stream == 0:
            raise ValueError(
                "Exact computations need a deterministic input encoding (not 'rate' for 2-D "
                "input)."
            )
        bits = self.bits[stream - 1]
        if tuple(bits.shape) != tuple(shape):
            raise RuntimeError(f"Path bits of shape {tuple(bits.shape)}, asked for {shape}.")
        return 1.0 - bits


def path_bits(index: Tensor, n_steps: int, sizes: Sequence[int], n_samples: int) -> list[Tensor]:
    """Spike patterns numbered ``index``, per hidden layer, for ``n_samples`` inputs.

    Bit ``j`` of a path number is one spike: layers first, then steps, then units.

    Parameters
    ----------
    index : Tensor of int64, shape (m,)
    n_steps : int
    sizes : sequence of int
        Hidden layer sizes.
    n_samples : int
        Input samples; the rows are sample-major (row ``s * m + k`` is path ``k`` of sample
        ``s``, the order of ``x.repeat_interleave(m, 0)``).

    Returns
    -------
    list of Tensor, shape (n_steps, n_samples * m, units), float64 0/1

    Examples
    --------
    >>> [b.shape for b in path_bits(torch.arange(4), 1, (2,), 1)]
    [torch.Size([1, 4, 2])]
    """
    total = n_steps * sum(sizes)
    bits = ((index.reshape(-1, 1) >> torch.arange(total)) & 1).to(torch.float64)
    out, start = [], 0
    for size in sizes:
        b = bits[:, start : start + n_steps * size].reshape(-1, n_steps, size).transpose(0, 1)
        out.append(b.repeat(1, n_samples, 1).contiguous())
        start += n_steps * size
    return out


def path_log_probability(
    membranes: Sequence[Tensor], spikes: Sequence[Tensor], lif: LIFParameters
) -> Tensor:
    """``log P(path)`` per row: the sum of ``log p`` over spikes and ``log(1 - p)`` elsewhere.

    Parameters
    ----------
    membranes, spikes : sequence of Tensor, shape (n_steps, n_rows, n_units)
        Per hidden layer; ``membranes[l][n]`` is the potential spike ``n`` was drawn from.
    lif : LIFParameters
        Temperature (> 0), threshold and escape noise.

    Returns
    -------
    Tensor, shape (n_rows,)
        ``-inf`` for a path that has probability 0 in float64.
    """
    total = None
    for u, s in zip(membranes, spikes, strict=True):
        p = lif.escape_noise.cdf((u - lif.threshold) / lif.temperature)
        logp = torch.log(torch.where(s > 0, p, 1.0 - p)).sum(dim=2).sum(dim=0)
        total = logp if total is None else total + logp
    return total


def path_probability(
    membranes: Sequence[Tensor], spikes: Sequence[Tensor], lif: LIFParameters
) -> Tensor:
    """``P(path)`` per row, as a product (safe to differentiate where a factor is 0).

    Same arguments as :func:`path_log_probability`; use this one when paths can have
    probability 0 in float64 (enumeration): the gradient of ``exp(log P)`` would be NaN there.
    """
    total = None
    for u, s in zip(membranes, spikes, strict=True):
        p = lif.escape_noise.cdf((u - lif.threshold) / lif.temperature)
        prob = torch.where(s > 0, p, 1.0 - p).prod(dim=2).prod(dim=0)
        total = prob if total is None else total * prob
    return total
