"""Inference of the spiking estimators: chunked, trial by trial, without autograd."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from ._inputs import dense_samples
from .losses import reduce_readout
from .noise import CounterNoise, sample_keys

__all__ = ["InferenceMixin", "SimulationResult"]

# Inference is chunked so that no (n_steps, chunk, n_units) tensor exceeds this many elements
# (8 MiB of float32), but chunks keep at least _MIN_CHUNK samples so that the per-step
# overhead of the time loop stays amortised.
_INFERENCE_ELEMENTS = 1 << 21
_MIN_CHUNK = 256


@dataclass
class SimulationResult:
    """Activity recorded by the estimators' ``simulate`` method.

    Attributes
    ----------
    spikes : list of ndarray of uint8, shape (n_trials, n_samples, n_steps, n_units)
        Spikes of each hidden layer.
    output : ndarray of float32, shape (n_trials, n_samples, n_steps, n_outputs)
        Readout membrane potential.
    membranes : list of ndarray of float32 or None
        Membrane potentials of each hidden layer (``record_membrane=True``), same shapes as
        ``spikes``.
    """

    spikes: list[np.ndarray]
    output: np.ndarray
    membranes: list[np.ndarray] | None = None


def _to_numpy_trials(tensors: list[torch.Tensor], dtype) -> np.ndarray:
    """Stack per-trial time-major tensors into (n_trials, n_samples, n_steps, n_units)."""
    return np.stack([t.transpose(0, 1).cpu().numpy().astype(dtype, copy=False) for t in tensors])


class InferenceMixin:
    """Forward passes of a fitted estimator's network: readouts per chunk and ``simulate``."""

    def _n_trials(self) -> int:
        stochastic = self.module_.lif.stochastic or self.module_.encoding == "rate"
        return self.predict_trials if stochastic else 1

    def _chunks(self, n_samples: int, n_steps: int):
        width = max(*self.module_.hidden_layer_sizes, self.n_features_in_)
        size = max(_MIN_CHUNK, _INFERENCE_ELEMENTS // max(1, n_steps * width))
        for begin in range(0, n_samples, size):
            yield slice(begin, min(begin + size, n_samples))

    def _forward_trials(self, X: np.ndarray, n_trials: int, record_membrane: bool = False):
        """Yield (slice, trial, NetworkOutput) over chunks of X and trials, without autograd.

        One trial's output is alive at a time, so memory does not grow with ``n_trials``.
        """
        module = self.module_
        device = self._inference_device()
        if next(module.parameters()).device != device:
            # Work on a copy: inference must not mutate the fitted estimator.
            module = _copy_module(module, device)
        n_steps = X.shape[1] if X.ndim == 3 else module.n_steps
        module.eval()
        with torch.inference_mode():
            for chunk in self._chunks(len(X), n_steps):
                x = torch.tensor(dense_samples(X, chunk), device=device)
                keys = sample_keys(x)
                for trial in range(n_trials):
                    noise = CounterNoise(self._predict_seed, keys, trial)
                    yield chunk, trial, module(x, noise, record_membrane)

    def _readout_chunks(self, X: np.ndarray):
        """Yield (slice, readouts) per inference chunk: the time-reduced readout of every
        trial, float64 of shape (n_trials, chunk_size, n_outputs)."""
        n_trials = self._n_trials()
        mode = self._readout_mode()
        readouts = None
        for chunk, trial, out in self._forward_trials(X, n_trials):
            if trial == 0:
                readouts = np.empty((n_trials, chunk.stop - chunk.start, out.output.shape[-1]))
            readouts[trial] = reduce_readout(out.output, mode).double().cpu().numpy()
            del out  # free this trial's activity before the next one is simulated
            if trial == n_trials - 1:
                yield chunk, readouts

    def simulate(self, X, n_trials: int = 1, record_membrane: bool = False) -> SimulationResult:
        """Record the network's activity on X over ``n_trials`` stochastic trials.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, n_steps, n_inputs)
        n_trials : int, default=1
            Independent noise realisations (all identical when the network is deterministic).
        record_membrane : bool, default=False
            Also record the hidden membrane potentials.

        Returns
        -------
        SimulationResult
            ``spikes``: one uint8 array (n_trials, n_samples, n_steps, n_units) per hidden
            layer; ``output``: float32 (n_trials, n_samples, n_steps, n_outputs); ``membranes``.
        """
        check_is_fitted(self)
        if not (isinstance(n_trials, Integral) and n_trials >= 1):
            raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}.")
        X = self._validate_X(X, reset=False)
        n_layers = len(self.module_.layers)
        spikes = [[] for _ in range(n_layers)]
        membranes = [[] for _ in range(n_layers)]
        output = []
        outs = []
        for _, trial, out in self._forward_trials(X, n_trials, record_membrane):
            outs.append(out)
            if trial < n_trials - 1:
                continue
            output.append(_to_numpy_trials([o.output for o in outs], np.float32))
            for layer in range(n_layers):
                spikes[layer].append(_to_numpy_trials([o.spikes[layer] for o in outs], np.uint8))
                if record_membrane:
                    membranes[layer].append(
                        _to_numpy_trials([o.membranes[layer] for o in outs], np.float32)
                    )
            outs = []
        return SimulationResult(
            spikes=[np.concatenate(s, axis=1) for s in spikes],
            output=np.concatenate(output, axis=1),
            membranes=[np.concatenate(m, axis=1) for m in membranes] if record_membrane else None,
        )


def _copy_module(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    return copy.deepcopy(module).to(device)
