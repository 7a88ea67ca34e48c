"""Exact (or unbiased Monte-Carlo) gradients of expected losses of small stochastic networks.

A stochastic network with ``B`` hidden spike bits per input (steps times hidden units, all
layers) has ``2**B`` spike patterns ("paths"). Given a path, every membrane potential is a
deterministic, differentiable function of the weights, so are the path's probability

    P(s; theta) = prod_{layer, step, unit} p^s (1 - p)^(1 - s),   p = f((U - threshold) / T)

and its loss ``L(s; theta)``, and ``E[L] = sum_s P(s; theta) L(s; theta)`` is exact, with an
exact gradient by automatic differentiation (:func:`enumerate_gradients`). Next to it stands
what surrogate-gradient training follows on average: the per-path surrogate gradient
(backpropagation through the spike function with the surrogate derivative, exactly as in
training) weighted by the path probabilities.

Networks too big to enumerate get Monte-Carlo estimates of both from the same sampled paths
(common random numbers, :func:`sample_gradients`): the exact gradient by the score-function
(likelihood-ratio) estimator ``E[(L - b) d log P + dL]``, which is unbiased, and the surrogate
gradient by its sample mean; both with standard errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..network import SpikingNetwork
from ..noise import GeneratorNoise
from ..surrogates import Surrogate, get_surrogate
from ._common import GradientComparison
from .networks import (
    ForcedPaths,
    LossFn,
    exact_pass,
    path_bits,
    path_log_probability,
    path_probability,
    resolve_loss,
    with_lif,
)

__all__ = [
    "BiasRecord",
    "bias_study",
    "enumerate_gradients",
    "expected_loss",
    "finite_difference_gradient",
    "sample_gradients",
]


def _prepare(module, X, y, temperature, surrogate):
    changes = {}
    if temperature is not None:
        changes["temperature"] = float(temperature)
    if surrogate is not None:
        changes["surrogate"] = surrogate
    net = with_lif(module, **changes)
    x = torch.as_tensor(np.asarray(X), dtype=torch.float64)
    if x.ndim == 2 and net.encoding == "rate":
        raise ValueError("Exact computations need a deterministic input encoding, not 'rate'.")
    yt = None if y is None else torch.as_tensor(np.asarray(y))
    if yt is not None and yt.is_floating_point():
        yt = yt.to(torch.float64)
    return net, x, yt


def _n_bits(net: SpikingNetwork, x: Tensor) -> int:
    n_steps = x.shape[1] if x.ndim == 3 else net.n_steps
    return n_steps * sum(net.hidden_layer_sizes)


def _check_bits(net: SpikingNetwork, x: Tensor, max_bits: int) -> int:
    n_bits = _n_bits(net, x)
    if n_bits > max_bits:
        raise ValueError(
            f"The network has {n_bits} hidden spike bits per sample (2**{n_bits} paths), more "
            f"than max_bits={max_bits}; use fewer neurons or steps, raise max_bits, or use "
            "sample_gradients."
        )
    return n_bits


def _chunks(n_bits: int, n_samples: int, chunk_size: int):
    n_paths = 1 << n_bits
    per_chunk = max(1, chunk_size // n_samples)
    for begin in range(0, n_paths, per_chunk):
        yield torch.arange(begin, min(begin + per_chunk, n_paths), dtype=torch.int64)


def _run_paths(net, x, y, index, loss_fn):
    """Forward pass of every path in ``index`` for every sample: (probability, loss) per row."""
    n_steps = x.shape[1] if x.ndim == 3 else net.n_steps
    bits = path_bits(index, n_steps, net.hidden_layer_sizes, len(x))
    m = len(index)
    y_rep = None if y is None else y.repeat_interleave(m, dim=0)
    out = net(x.repeat_interleave(m, dim=0), ForcedPaths(bits), record_membrane=True)
    prob = path_probability(out.membranes, bits, net.lif)
    # A path is left only where a wanted spike had probability 0 (see ForcedPaths).
    left = torch.stack(
        [(s != b).any(dim=2).any(dim=0) for s, b in zip(out.spikes, bits, strict=True)]
    )
    if bool((left.any(dim=0) & (prob.detach() > 0)).any()):
        raise RuntimeError("An imposed spike pattern was not followed; please report this.")
    return prob, loss_fn(out, y_rep)


def expected_loss(
    module: SpikingNetwork,
    X,
    y=None,
    loss: str | LossFn = "mse",
    *,
    temperature: float | None = None,
    chunk_size: int = 1 << 15,
    max_bits: int = 22,
) -> float:
    """Exact expected loss ``E[L]`` of a small stochastic network (mean over the samples).

    Parameters
    ----------
    module : SpikingNetwork
        The network; it is copied, not modified.
    X : array-like, shape (n_samples, n_features) or (n_samples, n_steps, n_inputs)
        Inputs, encoded as by the network (any deterministic encoding).
    y : array-like, optional
        Targets for the loss.
    loss : str or callable, default="mse"
        See :func:`~sksnn.theory.resolve_loss`.
    temperature : float, optional
        Escape-noise temperature to use instead of ``module.lif.temperature``; must be > 0.
    chunk_size : int, default=32768
        Paths (times samples) simulated per forward pass.
    max_bits : int, default=22
        Refuse networks with more hidden spike bits than this per sample.

    Returns
    -------
    float

    Examples
    --------
    >>> from sksnn.theory import make_small_network
    >>> net = make_small_network(hidden_layer_sizes=(1,), n_steps=3)
    >>> 0.0 <= expected_loss(net, [[1.0, 0.5, -0.2]], loss="spike_count") <= 3.0
    True
    """
    net, x, yt = _prepare(module, X, y, temperature, None)
    if not net.lif.stochastic:
        raise ValueError("expected_loss needs a stochastic network (temperature > 0).")
    loss_fn = resolve_loss(loss)
    n_bits = _check_bits(net, x, max_bits)
    total = 0.0
    with torch.no_grad():
        for index in _chunks(n_bits, len(x), chunk_size):
            prob, losses = _run_paths(net, x, yt, index, loss_fn)
            total += float((prob * losses).sum())
    return total / len(x)


def _grads(model: SpikingNetwork) -> dict[str, Tensor]:
    return {
        n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
        for n, p in model.named_parameters()
    }


def _add(store: dict[str, Tensor] | None, grads: dict[str, Tensor]) -> dict[str, Tensor]:
    if store is None:
        return grads
    return {n: store[n] + grads[n] for n in store}


def _numpy(grads: dict[str, Tensor]) -> dict[str, np.ndarray]:
    return {n: g.numpy().copy() for n, g in grads.items()}


def enumerate_gradients(
    module: SpikingNetwork,
    X,
    y=None,
    loss: str | LossFn = "mse",
    *,
    temperature: float | None = None,
    surrogate: Surrogate | None = None,
    chunk_size: int = 1 << 15,
    max_bits: int = 22,
) -> GradientComparison:
    """Exact gradient of the expected loss and the expected surrogate gradient, by enumeration.

    Parameters
    ----------
    module : SpikingNetwork
        The network; it is copied (float64, reference engine), not modified.
    X : array-like, shape (n_samples, n_features) or (n_samples, n_steps, n_inputs)
    y : array-like, optional
    loss : str or callable, default="mse"
        See :func:`~sksnn.theory.resolve_loss`.
    temperature : float, optional
        Instead of ``module.lif.temperature``. At 0 the network is deterministic: one path,
        and the exact gradient is the almost-everywhere one (zero for hidden weights).
    surrogate : Surrogate, optional
        Instead of ``module.lif.surrogate``.
    chunk_size : int, default=32768
    max_bits : int, default=22

    Returns
    -------
    GradientComparison

    Notes
    -----
    ``exact`` is the gradient of ``sum_s P(s) L(s)`` over all ``2**B`` spike patterns, to
    float64 round-off (checked against finite differences in the tests), and ``surrogate`` is
    the probability-weighted mean of the per-path surrogate gradients: the expectation of the
    stochastic gradient estimate that training uses. For one neuron without reset and a loss
    linear in the spikes, the matched surrogate makes them equal; reset, several stochastic
    layers and losses nonlinear in the spikes make them differ.

    Examples
    --------
    >>> from sksnn.theory import make_small_network
    >>> net = make_small_network(hidden_layer_sizes=(1,), n_steps=3, reset="none")
    >>> cmp = enumerate_gradients(net, [[1.0, 0.5, -0.2]], loss="spike_count")
    >>> cmp.relative_error() < 1e-12
    True
    """
    net, x, yt = _prepare(module, X, y, temperature, surrogate)
    loss_fn = resolve_loss(loss)
    n_samples = len(x)
    frozen = exact_pass(net)
    if not net.lif.stochastic:
        # Deterministic network: the only path is the one the network takes.
        found = []
        for model in (frozen, net):
            value = loss_fn(model(x), yt).sum() / n_samples
            value.backward()
            found.append(_grads(model))
        return GradientComparison(float(value.detach()), _numpy(found[0]), _numpy(found[1]), 1)

    n_bits = _check_bits(net, x, max_bits)
    exact = sur = None
    total = 0.0
    for index in _chunks(n_bits, n_samples, chunk_size):
        frozen.zero_grad()
        prob, losses = _run_paths(frozen, x, yt, index, loss_fn)
        value = (prob * losses).sum() / n_samples
        value.backward()
        exact = _add(exact, _grads(frozen))
        total += float(value.detach())

        net.zero_grad()
        _, losses_sur = _run_paths(net, x, yt, index, loss_fn)
        ((prob.detach() * losses_sur).sum() / n_samples).backward()
        sur = _add(sur, _grads(net))
    return GradientComparison(total, _numpy(exact), _numpy(sur), 1 << n_bits)


def sample_gradients(
    module: SpikingNetwork,
    X,
    y=None,
    loss: str | LossFn = "mse",
    *,
    n_paths: int = 1 << 16,
    n_batches: int = 16,
    temperature: float | None = None,
    surrogate: Surrogate | None = None,
    random_state: int = 0,
) -> GradientComparison:
    """Monte-Carlo estimates of the exact and the expected surrogate gradient, with errors.

    Both come from the same sampled spike patterns (common random numbers). The exact gradient
    uses the score-function estimator ``(L - b) d log P(s) + dL`` (spikes held fixed in
    ``dL``) with a leave-one-out baseline ``b``, which keeps it unbiased; the surrogate
    gradient is the plain mean of the per-path surrogate gradients, as in training.

    Parameters
    ----------
    module : SpikingNetwork
        The network; it is copied (float64, reference engine), not modified.
    X, y, loss
        As for :func:`enumerate_gradients`.
    n_paths : int, default=65536
        Sampled paths per input sample, split into ``n_batches`` batches.
    n_batches : int, default=16
        The standard errors come from the spread of the batch means.
    temperature : float, optional
        Must be > 0.
    surrogate : Surrogate, optional
    random_state : int, default=0

    Returns
    -------
    GradientComparison
        With ``method="sample"`` and standard errors.
    """
    net, x, yt = _prepare(module, X, y, temperature, surrogate)
    if not net.lif.stochastic:
        raise ValueError("sample_gradients needs a stochastic network (temperature > 0).")
    if n_batches < 2 or n_paths < 2 * n_batches:
        raise ValueError("Need n_batches >= 2 and at least 2 paths per batch.")
    loss_fn = resolve_loss(loss)
    n_samples = len(x)
    m = n_paths // n_batches
    x_rep = x.repeat_interleave(m, dim=0)
    y_rep = None if yt is None else yt.repeat_interleave(m, dim=0)
    frozen = exact_pass(net)
    exact_b, sur_b, loss_b = [], [], []
    for batch in range(n_batches):
        seed = int(random_state) * 1_000_003 + batch
        frozen.zero_grad()
        out = frozen(x_rep, GeneratorNoise(seed), record_membrane=True)
        logp = path_log_probability(out.membranes, out.spikes, net.lif)
        losses = loss_fn(out, y_rep).reshape(n_samples, m)
        lv = losses.detach()
        baseline = (lv.sum(dim=1, keepdim=True) - lv) / (m - 1)
        score = ((lv - baseline) * logp.reshape(n_samples, m)).sum()
        ((score + losses.sum()) / (n_samples * m)).backward()
        exact_b.append(_grads(frozen))
        loss_b.append(float(lv.mean()))

        net.zero_grad()
        # Same seed, same shapes, same order of draws: the same spikes as above.
        out = net(x_rep, GeneratorNoise(seed))
        (loss_fn(out, y_rep).sum() / (n_samples * m)).backward()
        sur_b.append(_grads(net))

    def mean_err(batches):
        stacked = {n: torch.stack([b[n] for b in batches]) for n in batches[0]}
        mean = {n: s.mean(dim=0).numpy() for n, s in stacked.items()}
        err = {n: (s.std(dim=0) / np.sqrt(len(batches))).numpy() for n, s in stacked.items()}
        return mean, err

    exact, exact_err = mean_err(exact_b)
    sur, sur_err = mean_err(sur_b)
    return GradientComparison(
        float(np.mean(loss_b)), exact, sur, m * n_batches, "sample", exact_err, sur_err
    )


def finite_difference_gradient(
    module: SpikingNetwork,
    X,
    y=None,
    loss: str | LossFn = "mse",
    *,
    params: Sequence[str] | None = None,
    eps: float = 1e-5,
    temperature: float | None = None,
    max_bits: int = 22,
) -> dict[str, np.ndarray]:
    """Central finite differences of the exact expected loss (:func:`expected_loss`).

    Parameters
    ----------
    module : SpikingNetwork
    X, y, loss, temperature, max_bits
        As for :func:`expected_loss`.
    params : sequence of str, optional
        Names of the parameters to differentiate (default: all).
    eps : float, default=1e-5
        Step; the error is ``O(eps**2)`` plus float64 round-off ``O(1e-16 / eps)``.

    Returns
    -------
    dict of str to ndarray
    """
    net = with_lif(module)
    named = dict(net.named_parameters())
    result = {}
    for name in params if params is not None else list(named):
        p = named[name]
        grad = np.zeros(tuple(p.shape))
        for idx in np.ndindex(*p.shape):
            values = []
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    original = p[idx].item()
                    p[idx] = original + sign * eps
                values.append(
                    expected_loss(net, X, y, loss, temperature=temperature, max_bits=max_bits)
                )
                with torch.no_grad():
                    p[idx] = original
            grad[idx] = (values[0] - values[1]) / (2 * eps)
        result[name] = grad
    return result


@dataclass(frozen=True)
class BiasRecord:
    """One row of :func:`bias_study`.

    Attributes
    ----------
    temperature : float
    surrogate : str
        Label of the surrogate (its name, or the instance's repr).
    beta : float
        Its steepness.
    cosine, relative_error, sign_agreement : float
        Over all hidden-layer weights.
    layer_cosine, layer_relative_error : tuple of float
        The same per hidden layer (``layers.0.weight``, ``layers.1.weight``, ...).
    expected_loss : float
    """

    temperature: float
    surrogate: str
    beta: float
    cosine: float
    relative_error: float
    sign_agreement: float
    layer_cosine: tuple[float, ...]
    layer_relative_error: tuple[float, ...]
    expected_loss: float


def bias_study(
    module: SpikingNetwork,
    X,
    y=None,
    loss: str | LossFn = "mse",
    *,
    temperatures: Sequence[float] = (0.05, 0.1, 0.2, 0.5),
    surrogates: Sequence[str | Surrogate] = ("matched", "superspike"),
    surrogate_beta: float | None = None,
    max_bits: int = 22,
) -> list[BiasRecord]:
    """Bias of the expected surrogate gradient against the exact gradient, over T and shape.

    Parameters
    ----------
    module : SpikingNetwork
        Weights and neuron constants; the temperature and surrogate are replaced per row.
    X, y, loss
        As for :func:`enumerate_gradients`.
    temperatures : sequence of float, default=(0.05, 0.1, 0.2, 0.5)
        Escape-noise temperatures, each > 0.
    surrogates : sequence of str or Surrogate, default=("matched", "superspike")
        Names are built with :func:`~sksnn.surrogates.get_surrogate` at steepness
        ``surrogate_beta`` (default ``1 / T``, as in the estimators; ``"matched"`` uses the
        network's escape noise); instances are used as they are.
    surrogate_beta : float, optional
    max_bits : int, default=22

    Returns
    -------
    list of BiasRecord
        One per (temperature, surrogate), temperatures outermost.
    """
    records = []
    layers = [f"layers.{i}.weight" for i in range(len(module.layers))]
    for temperature in temperatures:
        if not temperature > 0:
            raise ValueError(f"bias_study needs temperatures > 0, got {temperature!r}.")
        beta = surrogate_beta if surrogate_beta is not None else 1.0 / temperature
        for spec in surrogates:
            given = isinstance(spec, Surrogate)
            sur = get_surrogate(spec, None if given else beta, module.lif.escape_noise)
            cmp = enumerate_gradients(
                module, X, y, loss, temperature=temperature, surrogate=sur, max_bits=max_bits
            )
            records.append(
                BiasRecord(
                    temperature=float(temperature),
                    surrogate=repr(spec) if given else spec,
                    beta=float(sur.beta),
                    cosine=cmp.cosine(),
                    relative_error=cmp.relative_error(),
                    sign_agreement=cmp.sign_agreement(),
                    layer_cosine=tuple(cmp.cosine([n]) for n in layers),
                    layer_relative_error=tuple(cmp.relative_error([n]) for n in layers),
                    expected_loss=cmp.expected_loss,
                )
            )
    return records
