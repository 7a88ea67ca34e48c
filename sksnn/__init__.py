"""sksnn: scikit-learn estimators for stochastic spiking neural networks.

Spiking networks whose neurons fire with probability ``f((U - threshold) / T)`` (escape noise),
trained with surrogate gradients; by default the surrogate derivative is the derivative of
``f``, as stochastic automatic differentiation prescribes (Gygax & Zenke, Neural Computation
2025).
"""

from ._version import __version__
from .estimators import (
    SimulationResult,
    SpikingClassifier,
    SpikingRegressor,
)
from .exceptions import InconsistentVersionWarning, TrainingDivergedError
from .spikes import SpikeTimeBinner, SpikeTrains

__all__ = [
    "InconsistentVersionWarning",
    "SimulationResult",
    "SpikeTimeBinner",
    "SpikeTrains",
    "SpikingClassifier",
    "SpikingRegressor",
    "TrainingDivergedError",
    "__version__",
]
