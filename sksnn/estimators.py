"""scikit-learn estimators on stochastic spiking networks: SpikingClassifier, SpikingRegressor."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import (
    check_is_fitted,
)

from ._base import BaseSpiking
from ._inference import SimulationResult
from .exceptions import InconsistentVersionWarning
from .losses import cross_entropy, squared_error
from .network import NetworkOutput

__all__ = [
    "InconsistentVersionWarning",
    "SimulationResult",
    "SpikingClassifier",
    "SpikingRegressor",
]


class SpikingClassifier(ClassifierMixin, BaseSpiking):
    """Classifier on a stochastic spiking neural network trained with surrogate gradients.

    Hidden layers of leaky integrate-and-fire neurons fire stochastically with probability
    ``f((U - threshold) / T)`` (escape noise at temperature ``T``); gradients flow through the
    spikes by a surrogate derivative, by default the derivative of ``f`` itself, which is what
    stochastic automatic differentiation prescribes (Gygax & Zenke, 2025). A non-spiking leaky
    integrator reads out one potential per class; its maximum over time is the logit of a
    softmax cross-entropy loss.

    Parameters
    ----------
    hidden_layer_sizes : array-like of int, default=(128,)
        Sizes of the spiking hidden layers.
    n_steps : int, default=50
        Simulation steps for 2-D X; 3-D X brings its own number of steps.
    encoding : {"current", "rate", "latency"}, default="current"
        How 2-D X drives the first layer: "current" applies each (standardised) feature as a
        constant input current; "rate" draws Bernoulli spikes with probability
        ``clip(x, 0, 1)`` every step; "latency" emits one spike per feature, earlier for larger
        ``x`` in [0, 1]. Ignored for 3-D X, which is used as it is.
    escape_noise : {"sigmoid", "erf", "exponential"}, default="sigmoid"
        Shape ``f`` of the firing probability.
    noise_temperature : float, default=0.1
        Escape-noise temperature ``T >= 0`` in units of membrane potential; 0 gives the
        deterministic network.
    surrogate : str or Surrogate, default="matched"
        "matched" (the derivative of the escape-noise shape), a name from
        :data:`sksnn.surrogates.SURROGATES` or a :class:`~sksnn.surrogates.Surrogate` instance.
    surrogate_beta : float, default=None
        Surrogate steepness. None: ``1 / T`` for ``T > 0`` (the exact derivative of the spike
        probability for "matched") and 10 for ``T = 0``. For a Surrogate instance, None keeps
        its own ``beta``.
    tau_mem, tau_syn : float, default=20e-3, 10e-3
        Membrane and synaptic time constants (s).
    dt : float, default=2e-3
        Time step (s).
    threshold : float, default=1.0
        Firing threshold.
    reset : {"zero", "subtract", "none"}, default="zero"
        Membrane reset after a spike.
    detach_reset : bool, default=True
        No gradient through the reset.
    recurrent : bool, default=False
        Recurrent weights within each hidden layer.
    readout : {"auto", "max", "mean", "last"}, default="auto"
        How the readout potential over time becomes the logits; "auto" is "max".
    activity_reg : float, default=0.0
        Strength of the upper-bound firing-rate regulariser (squared excess over 0.07 spikes
        per neuron per step).
    alpha : float, default=1e-4
        L2 penalty on the weights (divided by the batch size, as in MLPClassifier).
    batch_size : int or "auto", default="auto"
        Mini-batch size; "auto" is ``min(200, n_samples)`` for 2-D ``X`` and, for 3-D ``X``
        (sequences), ``n_samples // 16`` clipped to [32, 200] (at most ``n_samples``): at
        least ~16 updates per epoch.
    learning_rate_init : float, default=1e-2
        Adam step size for a weight matrix at the standard ``1/sqrt(fan_in)`` scale; each
        weight matrix steps in proportion to its initial scale (``std * sqrt(fan_in)``), so
        that the step is the same relative to the weights whatever the input statistics.
    max_iter : int, default=100
        Maximum number of epochs.
    shuffle : bool, default=True
        Shuffle the samples every epoch.
    tol : float, default=1e-4
        Minimum improvement of the loss (or validation score) counted as progress.
    n_iter_no_change : int, default=10
        Epochs without progress before stopping.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data, stop when the validation score stops
        improving and restore the best weights.
    validation_fraction : float, default=0.1
    predict_trials : int, default=1
        Stochastic forward passes averaged by ``predict`` and ``predict_proba`` when the
        network is stochastic.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling, validation split and all spike noise.
    warm_start : bool, default=False
        Continue from the previous solution when calling ``fit`` again.
    verbose : bool, default=False
        Report every epoch: its loss, validation score (with early stopping), firing rates
        and duration. With tqdm installed (the ``progress`` extra) each epoch is a progress
        bar over its batches on stderr that ends as that summary; otherwise one plain line
        per epoch is printed.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to train; "auto" picks CUDA when available.
    engine : {"auto", "compiled", "fused", "reference"}, default="auto"
        Implementation of the LIF time loop: "reference" is a step-by-step autograd loop,
        "fused" a single autograd node with a hand-written backward pass that gives the same
        gradients, "compiled" that node with its time loops compiled by numba (on a GPU its
        layers run the fused engine's torch operations); "auto" picks "compiled", or "fused"
        where numba does not load.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    module_ : SpikingNetwork
        The fitted ``torch.nn.Module``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame with string column names.
    n_outputs_ : int
        Readout units (one per class).
    n_iter_ : int
        Epochs run.
    t_ : int
        Training samples seen.
    loss_curve_ : list of float
        Training loss per epoch.
    best_loss_ : float or None
        Lowest training loss (None with early stopping).
    validation_scores_ : list of float or None
        Validation accuracy per epoch with early stopping.
    best_validation_score_ : float or None
    firing_rates_ : ndarray of shape (n_hidden_layers,)
        Mean spikes per neuron per step of each hidden layer over the last epoch.

    See Also
    --------
    SpikingRegressor : the regression counterpart.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sksnn import SpikingClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(), SpikingClassifier(max_iter=5, random_state=0))
    >>> clf.fit(X[:500], y[:500]).score(X[500:], y[500:]) > 0.8  # doctest: +SKIP
    True
    """

    _default_readout = "max"

    def _n_readout(self) -> int:
        return len(self.classes_)

    def _prepare_targets(self, y, *, first_call: bool, incremental: bool, classes=None):
        check_classification_targets(y)
        if first_call:
            if classes is not None:
                encoder = LabelEncoder().fit(classes)
                unseen = np.setdiff1d(np.unique(y), encoder.classes_)
                if len(unseen):
                    raise ValueError(f"y has labels {unseen} that are not in classes.")
            else:
                encoder = LabelEncoder().fit(y)
            if len(encoder.classes_) < 2:
                raise ValueError(
                    f"{type(self).__name__} needs samples of at least 2 classes in the data, "
                    f"but the data contains only one class: {encoder.classes_[0]!r}."
                )
            self._label_encoder = encoder
            self.classes_ = encoder.classes_
            self.n_outputs_ = len(self.classes_)
        else:
            if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
                raise ValueError(
                    f"classes={classes!r} differs from the classes of the first call "
                    f"{self.classes_!r}."
                )
            unseen = np.setdiff1d(np.unique(y), self.classes_)
            if len(unseen):
                raise ValueError(f"y has labels {unseen} that were not seen in the first call.")
        return self._label_encoder.transform(y).astype(np.int64), None

    def _constant_prediction_loss(self, y_enc: np.ndarray) -> tuple[float, str]:
        p = np.bincount(y_enc, minlength=len(self.classes_)) / len(y_enc)
        p = p[p > 0]
        return float(-(p * np.log(p)).sum()), "the class frequencies"

    def _loss(self, out: NetworkOutput, y: torch.Tensor) -> torch.Tensor:
        return cross_entropy(out.output, y, self._readout_mode())

    def _score_validation(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self._predict_encoded(X) == y))

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train for one epoch over (X, y).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, n_steps, n_inputs)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), default=None
            All classes; required on the first call.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        if not hasattr(self, "module_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def _proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities averaged over the trials, chunk by chunk."""
        proba = np.empty((len(X), len(self.classes_)))
        for chunk, logits in self._readout_chunks(X):
            logits -= logits.max(axis=-1, keepdims=True)
            p = np.exp(logits)
            proba[chunk] = (p / p.sum(axis=-1, keepdims=True)).mean(axis=0)
        return proba

    def _predict_encoded(self, X: np.ndarray) -> np.ndarray:
        return self._proba(X).argmax(axis=1)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, averaged over ``predict_trials`` stochastic trials.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, n_steps, n_inputs)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        return self._proba(self._validate_X(X, reset=False))

    def predict_log_proba(self, X) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """Predicted class labels (argmax of :meth:`predict_proba`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, n_steps, n_inputs)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]


class SpikingRegressor(RegressorMixin, BaseSpiking):
    """Regressor on a stochastic spiking neural network trained with surrogate gradients.

    The same network as :class:`SpikingClassifier`; the readout potentials averaged over time
    (``readout="auto"`` is "mean") predict the standardised targets with a squared loss, and
    predictions are transformed back to the scale of ``y``. ``y`` may have several columns.

    Targets are standardised per column with the mean and standard deviation of the data given
    to ``fit``; ``partial_fit`` keeps running estimates over every chunk seen so far, so the
    order of a stream does not fix the scale at its first chunk. A constant column is
    predicted as exactly its value.

    Parameters
    ----------
    hidden_layer_sizes, n_steps, encoding, escape_noise, noise_temperature, surrogate, \
surrogate_beta, tau_mem, tau_syn, dt, threshold, reset, detach_reset, recurrent, readout, \
activity_reg, alpha, batch_size, learning_rate_init, max_iter, shuffle, tol, n_iter_no_change, \
early_stopping, validation_fraction, predict_trials, random_state, warm_start, verbose, device, \
engine
        As for :class:`SpikingClassifier`; ``readout="auto"`` is "mean" and the validation
        score of early stopping is R^2.

    Attributes
    ----------
    module_ : SpikingNetwork
    n_features_in_ : int
    feature_names_in_ : ndarray of str
    n_outputs_ : int
        Number of targets.
    n_iter_, t_, loss_curve_, best_loss_, validation_scores_, best_validation_score_, \
firing_rates_
        As for :class:`SpikingClassifier`.

    Examples
    --------
    >>> from sklearn.datasets import make_friedman1
    >>> from sksnn import SpikingRegressor
    >>> X, y = make_friedman1(n_samples=300, random_state=0)
    >>> reg = SpikingRegressor(max_iter=5, random_state=0).fit(X, y)
    >>> reg.predict(X[:2]).shape
    (2,)
    """

    _default_readout = "mean"

    def _n_readout(self) -> int:
        return self.n_outputs_

    def _prepare_targets(self, y, *, first_call: bool, incremental: bool, classes=None):
        y = np.asarray(y, dtype=np.float64)
        if type_of_target(y) == "unknown":
            raise ValueError("y must be numeric.")
        y2 = y.reshape(len(y), -1)
        if not first_call and y2.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {y2.shape[1]} targets, but {type(self).__name__} was fitted with "
                f"{self.n_outputs_}."
            )
        count, mean, std = len(y2), y2.mean(axis=0), y2.std(axis=0)
        if first_call:
            self._y_ndim = y.ndim
            self.n_outputs_ = y2.shape[1]
            self._y_count, self._y_mean, self._y_scale = count, mean, std
            return _standardise(y2, mean, std), None
        # partial_fit: running statistics over the whole stream, so that a first chunk that is
        # not representative (a stream sorted by y, say) does not fix the scale for good. The
        # network keeps predicting standardised targets: on sorted and skewed streams this
        # learns better than keeping its predictions by rescaling the readout
        # (benchmarks/results.md).
        # A warm-started fit standardises with the statistics of the data it is given.
        if incremental:
            count, mean, std = _merge_moments(
                (self._y_count, self._y_mean, self._y_scale), (count, mean, std)
            )

        def commit() -> None:
            self._y_count, self._y_mean, self._y_scale = count, mean, std

        return _standardise(y2, mean, std), commit

    def _constant_prediction_loss(self, y_enc: np.ndarray) -> tuple[float, str]:
        centred = y_enc - y_enc.mean(axis=0)
        return float(0.5 * np.mean(centred.astype(np.float64) ** 2)), "the mean"

    def _loss(self, out: NetworkOutput, y: torch.Tensor) -> torch.Tensor:
        return squared_error(out.output, y, self._readout_mode())

    def _score_validation(self, X: np.ndarray, y: np.ndarray) -> float:
        from sklearn.metrics import r2_score

        pred = np.concatenate([r.mean(axis=0) for _, r in self._readout_chunks(X)])
        return float(r2_score(y, pred))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def partial_fit(self, X, y, sample_weight=None):
        """Train for one epoch over (X, y), one chunk of a stream.

        The targets are standardised with the running mean and standard deviation of every
        chunk seen since the network was built, so the first chunk need not represent the
        stream.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, n_steps, n_inputs)
            The chunk's inputs, of the width the first call set.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Its targets, as many columns as in the first call.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X, return_std: bool = False):
        """Predicted targets, averaged over ``predict_trials`` stochastic trials.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, n_steps, n_inputs)
        return_std : bool, default=False
            Also return the standard deviation over the trials (zero for a deterministic
            network or ``predict_trials=1``).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
        y_std : ndarray of the same shape, only with ``return_std=True``
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        mean = np.empty((len(X), self.n_outputs_))
        std = np.empty_like(mean)
        for chunk, readouts in self._readout_chunks(X):
            trials = readouts * self._y_scale + self._y_mean
            mean[chunk], std[chunk] = trials.mean(axis=0), trials.std(axis=0)
        if self._y_ndim == 1:
            mean, std = mean[:, 0], std[:, 0]
        return (mean, std) if return_std else mean


def _standardise(y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Targets in units of their standard deviation; constant columns become zero."""
    return ((y - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def _merge_moments(a: tuple, b: tuple) -> tuple[int, np.ndarray, np.ndarray]:
    """Count, mean and standard deviation of two sets of samples from theirs (Chan et al.)."""
    (n_a, mean_a, std_a), (n_b, mean_b, std_b) = a, b
    n = n_a + n_b
    delta = mean_b - mean_a
    mean = mean_a + delta * (n_b / n)
    m2 = n_a * std_a**2 + n_b * std_b**2 + delta**2 * (n_a * n_b / n)
    return n, mean, np.sqrt(m2 / n)
