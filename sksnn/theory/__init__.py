"""Check the theory behind sksnn on your own settings (Gygax & Zenke, Neural Computation 2025).

In a stochastic spiking network, the surrogate derivative that stochastic automatic
differentiation justifies is the derivative of the neuron's escape-noise function (the
"matched" surrogate). This subpackage computes the quantities that make that statement, and
its limits, visible, with the same surrogate and escape-noise objects, neuron loop and network
code as the estimators:

Single neuron (:mod:`~sksnn.theory.single_neuron`)
    :func:`neuron_expected_spikes` (closed-form exact ``dE[S]/dw`` without reset),
    :func:`neuron_surrogate_gradient` (the surrogate gradient backpropagation computes),
    :func:`single_neuron_gradients` (exact enumeration of the spike trains, any reset).
Small multilayer networks (:mod:`~sksnn.theory.multilayer`)
    :func:`enumerate_gradients` (exact gradient of the expected loss and the expected
    surrogate gradient), :func:`sample_gradients` (unbiased Monte-Carlo estimates of both
    with standard errors, for networks too big to enumerate), :func:`expected_loss`,
    :func:`finite_difference_gradient`, :func:`bias_study`; networks from
    :func:`make_small_network`.
Non-conservativeness (:mod:`~sksnn.theory.nonconservative`)
    :func:`loop_integral` of any gradient field around a circle, the five-weight sigmoid
    network (:func:`sigmoid_net_output`, :func:`sigmoid_net_gradient`),
    :func:`network_gradient_field` for spiking networks, :func:`find_sign_flip`.
Variability (:mod:`~sksnn.theory.variability`)
    :func:`fano_factors`, :func:`estimator_fano_factors`, and "other mode" evaluation with
    :func:`with_noise_temperature` and :func:`cross_mode_scores`.

Everything runs in float64 on the CPU; matplotlib is not needed (the ``examples/theory_*.py``
scripts draw the figures).

Examples
--------
The matched surrogate gives the exact gradient of a single neuron's expected output:

>>> from sksnn.neuron import LIFParameters
>>> from sksnn.surrogates import get_surrogate
>>> from sksnn.theory import neuron_expected_spikes, neuron_surrogate_gradient
>>> lif = LIFParameters(temperature=0.2, surrogate=get_surrogate("matched", 1 / 0.2))
>>> inputs = [[1.0, 0.0], [0.5, 1.0], [0.0, 1.0], [1.0, 1.0]] * 3
>>> exact = neuron_expected_spikes([2.0, 1.0], inputs, lif).gradient
>>> bool(abs(neuron_surrogate_gradient([2.0, 1.0], inputs, lif) - exact).max() < 1e-15)
True
"""

from ._common import GradientComparison, cosine_similarity, relative_error
from .multilayer import (
    BiasRecord,
    bias_study,
    enumerate_gradients,
    expected_loss,
    finite_difference_gradient,
    sample_gradients,
)
from .networks import make_small_network, resolve_loss, with_lif
from .nonconservative import (
    SIGMOID_NET_WEIGHTS,
    LoopIntegral,
    SignFlip,
    find_sign_flip,
    loop_integral,
    network_gradient_field,
    random_plane,
    sigmoid_net_gradient,
    sigmoid_net_output,
)
from .single_neuron import (
    NeuronExpectation,
    neuron_expected_spikes,
    neuron_surrogate_gradient,
    single_neuron_gradients,
)
from .variability import (
    cross_mode_scores,
    estimator_fano_factors,
    fano_factors,
    with_noise_temperature,
)

__all__ = [
    "SIGMOID_NET_WEIGHTS",
    "BiasRecord",
    "GradientComparison",
    "LoopIntegral",
    "NeuronExpectation",
    "SignFlip",
    "bias_study",
    "cosine_similarity",
    "cross_mode_scores",
    "enumerate_gradients",
    "estimator_fano_factors",
    "expected_loss",
    "fano_factors",
    "find_sign_flip",
    "finite_difference_gradient",
    "loop_integral",
    "make_small_network",
    "network_gradient_field",
    "neuron_expected_spikes",
    "neuron_surrogate_gradient",
    "random_plane",
    "relative_error",
    "resolve_loss",
    "sample_gradients",
    "sigmoid_net_gradient",
    "sigmoid_net_output",
    "single_neuron_gradients",
    "with_lif",
    "with_noise_temperature",
]
