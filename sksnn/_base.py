"""The shared implementation of the spiking estimators: parameters, fitting, persistence.

The time loops, the optimiser and the devices belong to :mod:`sksnn._trainer` and the network;
inference to :mod:`sksnn._inference`; input checks to :mod:`sksnn._inputs`; the fitted state as
plain data to :mod:`sksnn._state`. This layer keeps scikit-learn's bookkeeping.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
)

from ._inference import InferenceMixin
from ._inputs import InputMixin, as_tensor, dense_samples
from ._state import fitted_state, restore_fitted_state
from ._trainer import (
    SEED_MAX,
    EpochResult,
    Trainer,
    TrainingData,
    batch_memory,
    check_batch_fits,
    input_events,
    make_optimizer,
)
from ._version import __version__
from .encoding import ENCODINGS
from .engines import ENGINES, get_engine
from .exceptions import InconsistentVersionWarning
from .losses import READOUTS
from .network import NetworkOutput, SpikingNetwork
from .neuron import RESETS, LIFParameters, decay
from .noise import GeneratorNoise
from .spikes import SpikeTrains
from .surrogates import ESCAPE_NOISE, SURROGATES, Surrogate, get_escape_noise, get_surrogate

__all__ = ["BaseSpiking"]

# A fit whose final loss exceeds this multiple of a constant prediction's loss has diverged.
DIVERGENCE_FACTOR = 10.0


class _RegisteredSurrogates(StrOptions):
    """The surrogate names registered when a parameter is validated, not at import: a
    surrogate added with :func:`sksnn.surrogates.register_surrogate` is accepted by name."""

    def __init__(self) -> None:
        super().__init__(set(SURROGATES))

    def is_satisfied_by(self, val) -> bool:
        return isinstance(val, str) and val in SURROGATES

    def __str__(self) -> str:
        self.options = set(SURROGATES)
        return super().__str__()


class BaseSpiking(InputMixin, InferenceMixin, BaseEstimator):
    """Shared implementation of the spiking estimators (parameters, fitting, inference)."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "n_steps": [Interval(Integral, 1, None, closed="left")],
        "encoding": [StrOptions(set(ENCODINGS))],
        "escape_noise": [StrOptions(set(ESCAPE_NOISE))],
        "noise_temperature": [Interval(Real, 0, None, closed="left")],
        "surrogate": [_RegisteredSurrogates(), Surrogate],
        "surrogate_beta": [Interval(Real, 0, None, closed="neither"), None],
        "tau_mem": [Interval(Real, 0, None, closed="neither")],
        "tau_syn": [Interval(Real, 0, None, closed="neither")],
        "dt": [Interval(Real, 0, None, closed="neither")],
        "threshold": [Interval(Real, 0, None, closed="neither")],
        "reset": [StrOptions(set(RESETS))],
        "detach_reset": ["boolean"],
        "recurrent": ["boolean"],
        "readout": [StrOptions({"auto", *READOUTS})],
        "activity_reg": [Interval(Real, 0, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "predict_trials": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
        "engine": [StrOptions({"auto", *ENGINES})],
    }

    def __init__(
        self,
        hidden_layer_sizes=(128,),
        *,
        n_steps=50,
        encoding="current",
        escape_noise="sigmoid",
        noise_temperature=0.1,
        surrogate="matched",
        surrogate_beta=None,
        tau_mem=20e-3,
        tau_syn=10e-3,
        dt=2e-3,
        threshold=1.0,
        reset="zero",
        detach_reset=True,
        recurrent=False,
        readout="auto",
        activity_reg=0.0,
        alpha=1e-4,
        batch_size="auto",
        learning_rate_init=1e-2,
        max_iter=100,
        shuffle=True,
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction=0.1,
        predict_trials=1,
        random_state=None,
        warm_start=False,
        verbose=False,
        device="cpu",
        engine="auto",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.n_steps = n_steps
        self.encoding = encoding
        self.escape_noise = escape_noise
        self.noise_temperature = noise_temperature
        self.surrogate = surrogate
        self.surrogate_beta = surrogate_beta
        self.tau_mem = tau_mem
        self.tau_syn = tau_syn
        self.dt = dt
        self.threshold = threshold
        self.reset = reset
        self.detach_reset = detach_reset
        self.recurrent = recurrent
        self.readout = readout
        self.activity_reg = activity_reg
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.predict_trials = predict_trials
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.device = device
        self.engine = engine

    # ---------------------------------------------------------------------------------------
    # Subclass hooks
    # ---------------------------------------------------------------------------------------
    _default_readout = "mean"

    def _loss(self, out: NetworkOutput, y: torch.Tensor) -> torch.Tensor:
        """Per-sample data loss."""
        raise NotImplementedError

    def _prepare_targets(self, y, *, first_call: bool, incremental: bool, classes=None):
        """Validate and encode targets.

        Returns the encoded targets and a function (or None) that updates the target-related
        fitted state; it is called once all validation has passed, just before training.
        """
        raise NotImplementedError

    def _score_validation(self, X: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    # ---------------------------------------------------------------------------------------
    # Configuration derived from the parameters
    # ---------------------------------------------------------------------------------------
    def _readout_mode(self) -> str:
        return self._default_readout if self.readout == "auto" else self.readout

    def _surrogate_object(self) -> Surrogate:
        beta = self.surrogate_beta
        if beta is None and not isinstance(self.surrogate, Surrogate):
            beta = 1.0 / self.noise_temperature if self.noise_temperature > 0 else 10.0
        return get_surrogate(self.surrogate, beta, self.escape_noise)

    def _lif_parameters(self) -> LIFParameters:
        return LIFParameters(
            alpha_syn=decay(self.dt, self.tau_syn),
            alpha_mem=decay(self.dt, self.tau_mem),
            threshold=float(self.threshold),
            temperature=float(self.noise_temperature),
            escape_noise=get_escape_noise(self.escape_noise),
            surrogate=self._surrogate_object(),
            reset=self.reset,
            detach_reset=bool(self.detach_reset),
        )

    def _hidden_sizes(self) -> tuple[int, ...]:
        sizes = self.hidden_layer_sizes
        sizes = (sizes,) if isinstance(sizes, Integral) else tuple(sizes)
        if len(sizes) == 0 or not all(isinstance(h, Integral) and h >= 1 for h in sizes):
            raise ValueError(
                f"hidden_layer_sizes must be a positive integer or a non-empty sequence of "
                f"positive integers, got {self.hidden_layer_sizes!r}."
            )
        return tuple(int(h) for h in sizes)

    def _torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' was requested but CUDA is not available here.")
        return torch.device(self.device)

    def _inference_device(self) -> torch.device:
        # A model fitted on a GPU and loaded on a machine without one predicts on the CPU.
        if self.device != "cpu" and torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")

    # ---------------------------------------------------------------------------------------
    # Fitting
    # ---------------------------------------------------------------------------------------
    def _batch_size(self, n_samples: int, sequences: bool = False) -> int:
        if self.batch_size == "auto":
            if sequences:
                # sequences: at least ~16 updates per epoch (batches of 32 to 200); on tabular
                # data the same rule only slowed small fits down (benchmarks/results.md)
                return min(n_samples, max(32, min(200, n_samples // 16)))
            return min(200, n_samples)
        if self.batch_size > n_samples:
            warnings.warn(
                f"batch_size={self.batch_size} is larger than the {n_samples} training samples; "
                "using all samples per batch.",
                UserWarning,
                stacklevel=3,
            )
        return min(self.batch_size, n_samples)

    def _build(self, n_inputs: int, n_outputs: int, X_init: np.ndarray, device) -> None:
        torch_seed = int(self._rng.randint(SEED_MAX))
        module = SpikingNetwork(
            n_inputs,
            self._hidden_sizes(),
            n_outputs,
            self._lif_parameters(),
            recurrent=bool(self.recurrent),
            encoding=self.encoding,
            n_steps=self.n_steps,
            engine=self.engine,
        )
        # Weights are drawn on the CPU so that initial weights do not depend on the device.
        generator = torch.Generator().manual_seed(torch_seed)
        n_init = min(len(X_init), 256)
        x0 = as_tensor(dense_samples(X_init, slice(0, n_init)))
        module.initialize(x0, generator, GeneratorNoise(torch_seed + 1))
        self.module_ = module.to(device)
        self._optimizer = make_optimizer(self.module_, self.learning_rate_init)
        self._predict_seed = int(self._rng.randint(SEED_MAX))
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self._reset_stopping_history()

    def _refresh_hyperparameters(self) -> None:
        """Apply parameters that may change between warm-started fits."""
        self.module_.lif = self._lif_parameters()
        self.module_.encoding = self.encoding
        self.module_.n_steps = self.n_steps
        self.module_.engine = self.engine

    def fit(self, X, y, sample_weight=None):
        """Fit the network to data X and targets y (from scratch unless ``warm_start``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, n_steps, n_inputs)
            Tabular features (encoded over ``n_steps``) or sequences used as they are. 3-D spike
            data may also be a :class:`~sksnn.spikes.SpikeTrains` (events, never made dense
            as a whole), wherever X is taken: the same results as its dense array.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Class labels (classifier) or targets (regressor, one or more columns).
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight, *, incremental: bool, classes=None):
        first_call = not (hasattr(self, "module_") and (incremental or self.warm_start))
        # every call: set_params between partial_fit calls must not slip past validation
        self._validate_params()
        if not first_call:
            self._check_architecture(incremental)
        else:
            self._hidden_sizes()
        device = self._torch_device()
        X, y = self._validate_X(X, reset=first_call, y=y)
        y_enc, commit_targets = self._prepare_targets(
            y, first_call=first_call, incremental=incremental, classes=classes
        )
        sw = _sample_weights(sample_weight, X)
        if first_call or not incremental:
            self._rng = check_random_state(self.random_state)
        if not first_call and not incremental:
            self._restart_stopping_history_if_toggled()
        X_val = y_val = None
        if self.early_stopping and not incremental:
            X, X_val, y_enc, y_val, sw = self._validation_split(X, y_enc, sw)
        batch_size = self._batch_size(len(X), sequences=X.ndim == 3)
        self._check_memory(X, batch_size, device)
        if first_call:
            self._build(X.shape[-1], self._n_readout(), X, device)
        trainer = Trainer(self.module_, self._optimizer)
        if not first_call:
            self._refresh_hyperparameters()
            trainer.set_learning_rate(self.learning_rate_init)
            trainer.to(device)
        if commit_targets is not None:
            commit_targets()

        y_t = torch.as_tensor(y_enc, device=device)
        # spike trains stay events: batches are gathered or made dense one at a time
        X_t = X if isinstance(X, SpikeTrains) else as_tensor(X).to(device)
        sw_t = torch.as_tensor(sw / sw.mean(), dtype=torch.float32, device=device)

        def on_epoch(result: EpochResult) -> None:
            self._record_epoch(result, len(X))
            if X_val is not None:
                result.validation = self._score_validation(X_val, y_val)
                self.validation_scores_.append(result.validation)

        stopped = trainer.run(
            TrainingData(X_t, y_t, sw_t, input_events(X_t, self.module_, device)),
            self._loss,
            n_epochs=1 if incremental else self.max_iter,
            rng=self._rng,
            shuffle=self.shuffle,
            batch_size=batch_size,
            alpha=self.alpha,
            activity_reg=self.activity_reg,
            first_epoch=self.n_iter_ + 1,
            on_epoch=on_epoch,
            should_stop=lambda: not incremental and self._update_no_improvement(),
            verbose=self.verbose,
            name=f"{type(self).__name__}.fit",
        )
        if self.early_stopping and not incremental and self._best_state is not None:
            self.module_.load_state_dict(self._best_state)
        self._warn_if_diverged(y_enc)
        if not incremental and not stopped:
            warnings.warn(
                f"{type(self).__name__}: maximum iterations ({self.max_iter}) reached and the "
                "optimisation hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    def _check_memory(self, X: np.ndarray, batch_size: int, device: torch.device) -> None:
        """Refuse, before anything is built, a batch that cannot fit in memory."""
        needed = batch_memory(
            X.shape[1] if X.ndim == 3 else self.n_steps,
            batch_size,
            X.shape[-1],
            self._hidden_sizes(),
            self._n_readout(),
            get_engine(self.engine),
            dense_input=X.ndim == 3 or self.encoding != "current",
        )
        check_batch_fits(needed, device)

    def _warn_if_diverged(self, y_enc: np.ndarray) -> None:
        """Warn when training ended far worse than a constant prediction would be.

        A learning rate that is much too large can leave the loss finite but huge; nothing
        trained should end at ten times the loss of predicting the target mean (regressor) or
        the class frequencies (classifier).
        """
        baseline, what = self._constant_prediction_loss(y_enc)
        loss = self.loss_curve_[-1]
        if baseline > 0 and loss > DIVERGENCE_FACTOR * baseline:
            warnings.warn(
                f"{type(self).__name__}: the training loss ended at {loss:.3g}, far above the "
                f"{baseline:.3g} of predicting {what}: training diverged. Try a smaller "
                f"learning_rate_init (now {self.learning_rate_init}).",
                ConvergenceWarning,
                stacklevel=4,
            )

    def _constant_prediction_loss(self, y_enc: np.ndarray) -> tuple[float, str]:
        raise NotImplementedError

    def _check_architecture(self, incremental: bool) -> None:
        """Refuse to continue training a network whose shape the parameters no longer give."""
        sizes, recurrent = self._hidden_sizes(), bool(self.recurrent)
        built = (self.module_.hidden_layer_sizes, self.module_.recurrent)
        if (sizes, recurrent) != built:
            how = "partial_fit" if incremental else "A warm_start fit"
            raise ValueError(
                f"{how} cannot change the network's architecture: the parameters ask for "
                f"hidden_layer_sizes={sizes}, recurrent={recurrent}, but the fitted network has "
                f"hidden_layer_sizes={built[0]}, recurrent={built[1]}. Fit with "
                "warm_start=False to build a new network."
            )

    def _reset_stopping_history(self) -> None:
        """Start the bookkeeping of the stopping rule for the current early_stopping."""
        self._no_improvement_count = 0
        self._best_state = None
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf

    def _restart_stopping_history_if_toggled(self) -> None:
        # Like MLP, warm-started fits keep the stopping history; it only restarts when
        # early_stopping was switched, since the history then measures something else.
        if self.early_stopping != isinstance(self.validation_scores_, list):
            self._reset_stopping_history()

    def _validation_split(self, X, y, sw):
        stratify = y if is_classifier(self) else None
        n_val = round(self.validation_fraction * len(X))
        if n_val < 1 or len(X) - n_val < 1:
            raise ValueError(
                f"early_stopping with validation_fraction={self.validation_fraction} leaves no "
                f"validation or no training samples out of {len(X)}."
            )
        if stratify is not None:
            counts = np.unique(y, return_counts=True)[1]
            # a stratified split needs every class twice and a place for each class on both
            # sides; otherwise split at random, as for a regressor
            if counts.min() < 2 or min(n_val, len(X) - n_val) < len(counts):
                stratify = None
        seed = self._rng.randint(SEED_MAX)
        X_tr, X_val, y_tr, y_val, sw_tr, _ = train_test_split(
            X, y, sw, test_size=n_val, random_state=seed, stratify=stratify
        )
        return X_tr, X_val, y_tr, y_val, sw_tr

    def _record_epoch(self, result: EpochResult, n_samples: int) -> None:
        self.n_iter_ += 1
        self.t_ += n_samples
        self.loss_curve_.append(result.loss)
        self.firing_rates_ = result.firing_rates

    def _update_no_improvement(self) -> bool:
        """Scikit-learn's MLP stopping rule; returns True when training should stop."""
        if self.early_stopping:
            score = self.validation_scores_[-1]
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_state = {
                    k: v.detach().clone() for k, v in self.module_.state_dict().items()
                }
        else:
            loss = self.loss_curve_[-1]
            if loss > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(self.best_loss_, loss)
        if self._no_improvement_count > self.n_iter_no_change:
            if self.verbose:
                what = "Validation score" if self.early_stopping else "Training loss"
                print(
                    f"{what} did not improve more than tol={self.tol} for "
                    f"{self.n_iter_no_change} consecutive epochs. Stopping."
                )
            return True
        return False

    # ---------------------------------------------------------------------------------------
    # Persistence
    # ---------------------------------------------------------------------------------------
    def __getstate__(self):
        # Parameters and the fitted state as plain data (sksnn._state): no torch objects, so
        # a pickle loads on any device and with other torch versions, and skops can save it.
        # sksnn.io writes the same state without pickle.
        state = {name: getattr(self, name) for name in self._get_param_names()}
        state.update(fitted_state(self))
        state["_sksnn_version"] = __version__
        return state

    def __setstate__(self, state):
        state = dict(state)
        version = state.pop("_sksnn_version", None)
        if version != __version__:
            warnings.warn(
                f"Trying to unpickle {type(self).__name__} from sksnn version {version} when "
                f"using version {__version__}. This might lead to breaking code or invalid "
                "results. Use at your own risk.",
                InconsistentVersionWarning,
                stacklevel=2,
            )
        names = self._get_param_names()
        params = {name: state.pop(name) for name in names if name in state}
        super().__setstate__(params)
        restore_fitted_state(self, state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


def _sample_weights(sample_weight, X: np.ndarray) -> np.ndarray:
    sw = _check_sample_weight(sample_weight, X, dtype=np.float64)
    if (sw < 0).any():
        raise ValueError("sample_weight must be non-negative; found negative weights.")
    if not (sw.sum() > 0):
        raise ValueError("sample_weight sums to zero; at least one weight must be positive.")
    return sw
