"""One stochastic LIF neuron: the exact gradient of its expected output next to surrogate ones.

Without reset, the membrane potential of a neuron driven by a given input is a deterministic
linear function of its weights, ``U[n] = sum_k h[n - k] w . x[k]`` (``h`` the PSP kernel of
:func:`sksnn.neuron.psp_kernel`), so the expected output of every step is known in closed form,

    E[S[n]] = f((U[n] - threshold) / T),
    dE[S[n]]/dw = f'((U[n] - threshold) / T) / T * dU[n]/dw,

(the smoothed probabilistic model of Gygax & Zenke, 2025), and the surrogate gradient that
backpropagation through the spike computes is ``surrogate'(U[n] - threshold) * dU[n]/dw``.
They coincide when the surrogate is the derivative of ``f`` at ``beta = 1 / T`` (the matched
surrogate), and :func:`neuron_expected_spikes` / :func:`neuron_surrogate_gradient` let you see
by how much they differ otherwise. The closed form also holds with reset up to the first spike
(before it, nothing has been reset).

With reset, the output of one step depends on the spikes before it; :func:`single_neuron_gradients`
then enumerates all ``2**n_steps`` spike trains (see :mod:`sksnn.theory.multilayer`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..engines.reference import lif_reference
from ..network import SpikingNetwork
from ..neuron import LIFParameters, psp_kernel
from ._common import GradientComparison, check_lif
from .multilayer import enumerate_gradients
from .networks import LossFn

__all__ = [
    "NeuronExpectation",
    "neuron_expected_spikes",
    "neuron_surrogate_gradient",
    "single_neuron_gradients",
]


def _as_inputs(weights, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64)).reshape(-1)
    x = torch.as_tensor(np.asarray(inputs, dtype=np.float64))
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    if x.ndim != 2 or x.shape[1] != w.shape[0]:
        raise ValueError(
            f"inputs must have shape (n_steps, n_inputs) with n_inputs = {w.shape[0]} "
            f"(the number of weights), got {tuple(x.shape)}."
        )
    return w, x


@dataclass
class NeuronExpectation:
    """Closed-form expected output of one stochastic neuron without reset.

    Attributes
    ----------
    membrane : ndarray, shape (n_steps,)
        ``U[n]``, the potential spike ``n`` is drawn from.
    probability : ndarray, shape (n_steps,)
        ``E[S[n]] = f((U[n] - threshold) / T)``.
    gradient : ndarray, shape (n_steps, n_inputs)
        Exact ``dE[S[n]]/dw``.
    membrane_gradient : ndarray, shape (n_steps, n_inputs)
        ``dU[n]/dw``.
    """

    membrane: np.ndarray
    probability: np.ndarray
    gradient: np.ndarray
    membrane_gradient: np.ndarray


def neuron_expected_spikes(weights, inputs, lif: LIFParameters) -> NeuronExpectation:
    """Exact ``E[S[n]]`` and its gradient for a neuron without reset, in closed form.

    Parameters
    ----------
    weights : array-like, shape (n_inputs,)
    inputs : array-like, shape (n_steps, n_inputs)
        Input currents or spikes ``x[n]``; the drive of step ``n`` is ``w . x[n]``.
    lif : LIFParameters
        Time constants, threshold, escape noise and temperature (> 0). The reset is not
        applied: the result is exact for ``reset="none"``, and for any reset up to the first
        spike.

    Returns
    -------
    NeuronExpectation

    Examples
    --------
    >>> from sksnn.neuron import LIFParameters
    >>> res = neuron_expected_spikes([2.0], [[1.0]] * 5, LIFParameters(temperature=0.1))
    >>> res.probability.shape, res.gradient.shape
    ((5,), (5, 1))
    """
    check_lif(lif)
    if not lif.temperature > 0:
        raise ValueError("The expected output needs a stochastic neuron (temperature > 0).")
    w, x = _as_inputs(weights, inputs)
    n_steps = x.shape[0]
    h = psp_kernel(lif.alpha_syn, lif.alpha_mem, n_steps)
    # psp_kernel gives the membrane one step after the lag it is indexed by (V[n + 1]), so
    # U[n] = sum_{k < n} h[n - 1 - k] w . x[k].
    lag = torch.arange(n_steps).reshape(-1, 1) - torch.arange(n_steps).reshape(1, -1)
    kernel = torch.where(lag > 0, h[(lag - 1).clamp(min=0)], torch.zeros((), dtype=torch.float64))
    dudw = kernel @ x
    u = dudw @ w
    z = (u - lif.threshold) / lif.temperature
    p = lif.escape_noise.cdf(z)
    grad = (lif.escape_noise.pdf(z) / lif.temperature).reshape(-1, 1) * dudw
    return NeuronExpectation(u.numpy(), p.numpy(), grad.numpy(), dudw.numpy())


def neuron_surrogate_gradient(weights, inputs, lif: LIFParameters, seed: int = 0) -> np.ndarray:
    """Surrogate gradient ``dS[n]/dw`` of each step, by backpropagation through the LIF core.

    Runs :func:`sksnn.engines.reference.lif_reference` (the estimators' spike function and
    neuron loop) with ``lif.surrogate``, without reset so that the gradient does not depend on
    the sampled spikes.

    Parameters
    ----------
    weights : array-like, shape (n_inputs,)
    inputs : array-like, shape (n_steps, n_inputs)
    lif : LIFParameters
        Its ``reset`` is replaced by "none".
    seed : int, default=0
        Seed of the spike noise (the gradient does not depend on it).

    Returns
    -------
    ndarray, shape (n_steps, n_inputs)

    Examples
    --------
    >>> from sksnn.neuron import LIFParameters
    >>> from sksnn.surrogates import get_surrogate
    >>> lif = LIFParameters(temperature=0.1, surrogate=get_surrogate("matched", 10.0))
    >>> g = neuron_surrogate_gradient([2.0], [[1.0]] * 5, lif)
    >>> exact = neuron_expected_spikes([2.0], [[1.0]] * 5, lif).gradient
    >>> bool(np.allclose(g, exact, rtol=1e-12, atol=0))
    True
    """
    check_lif(lif)
    from dataclasses import replace

    w, x = _as_inputs(weights, inputs)
    params = replace(lif, reset="none")
    w = w.clone().requires_grad_(True)
    drive = (x @ w).reshape(-1, 1, 1)
    uniform = None
    if params.stochastic:
        gen = torch.Generator().manual_seed(int(seed))
        uniform = torch.rand(drive.shape, generator=gen, dtype=torch.float64)
    spikes, _ = lif_reference(drive, params, uniform)
    rows = [torch.autograd.grad(spikes[n].sum(), w, retain_graph=True)[0] for n in range(len(x))]
    return torch.stack(rows).numpy()


def single_neuron_gradients(
    weights,
    inputs,
    lif: LIFParameters,
    loss: str | LossFn = "spike_count",
    y=None,
    *,
    max_bits: int = 20,
) -> GradientComparison:
    """Exact gradient of an expected loss of one neuron and its expected surrogate gradient.

    Enumerates the neuron's ``2**n_steps`` spike trains (any reset mode), with
    :func:`~sksnn.theory.enumerate_gradients` on a one-neuron
    :class:`~sksnn.network.SpikingNetwork`.

    Parameters
    ----------
    weights : array-like, shape (n_inputs,)
    inputs : array-like, shape (n_steps, n_inputs)
    lif : LIFParameters
        Neuron constants, temperature (> 0, or 0 for the deterministic neuron), surrogate.
    loss : str or callable, default="spike_count"
        ``"spike_count"`` gives ``E[sum_n S[n]]``; a callable receives the network output (the
        neuron's spikes in ``out.spikes[0]``, time-major) and ``y``.
    y : array-like, optional
        Targets for the loss (one row).
    max_bits : int, default=20
        Largest ``n_steps`` accepted.

    Returns
    -------
    GradientComparison
        The neuron's weights are the parameter ``"layers.0.weight"``.

    Examples
    --------
    >>> from sksnn.neuron import LIFParameters
    >>> from sksnn.surrogates import get_surrogate
    >>> lif = LIFParameters(temperature=0.2, surrogate=get_surrogate("matched", 5.0),
    ...                     reset="none")
    >>> cmp = single_neuron_gradients([3.0, -1.0], [[1.0, 0.0], [0.0, 1.0]] * 4, lif)
    >>> round(cmp.cosine(), 12)
    1.0
    """
    check_lif(lif)
    w, x = _as_inputs(weights, inputs)
    net = SpikingNetwork(x.shape[1], (1,), 1, lif, engine="reference").to(torch.float64)
    with torch.no_grad():
        net.layers[0].weight.copy_(w.reshape(1, -1))
        net.readout.weight.zero_()
        net.readout.bias.zero_()
    y_rows = None if y is None else np.asarray(y, dtype=np.float64).reshape(1, -1)
    return enumerate_gradients(net, x.unsqueeze(0), y_rows, loss, max_bits=max_bits)
