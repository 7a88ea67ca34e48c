"""scikit-learn estimators on stochastic spiking networks: SpikingClassifier, SpikingRegressor."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import (
    _check_sample_weight,
    _check_y,
    check_consistent_length,
    check_is_fitted,
    validate_data,
)

from ._state import fitted_state, restore_fitted_state
from ._trainer import (
    SEED_MAX,
    EpochResult,
    Trainer,
    TrainingData,
    batch_memory,
    check_batch_fits,
    input_events,
)
from ._version import __version__
from .encoding import ENCODINGS
from .engines import ENGINES, get_engine
from .exceptions import InconsistentVersionWarning
from .losses import cross_entropy, reduce_readout, squared_error
from .network import READOUTS, NetworkOutput, SpikingNetwork
from .neuron import RESETS, LIFParameters, decay
from .noise import CounterNoise, GeneratorNoise, sample_keys
from .surrogates import ESCAPE_NOISE, SURROGATES, Surrogate, get_escape_noise, get_surrogate

__all__ = [
    "InconsistentVersionWarning",
    "SimulationResult",
    "SpikingClassifier",
    "SpikingRegressor",
]

# Inference is chunked so that no (n_steps, chunk, n_units) tensor exceeds this many elements
# (8 MiB of float32), but chunks keep at least _MIN_CHUNK samples so that the per-step
# overhead of the time loop stays amortised.
_INFERENCE_ELEMENTS = 1 << 21
_MIN_CHUNK = 256
_SEED_MAX = SEED_MAX
# A fit whose final loss exceeds this multiple of a constant prediction's loss has diverged.
DIVERGENCE_FACTOR = 10.0


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


class _BaseSpiking(BaseEstimator):
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
        learning_rate_init=2e-3,
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
    # Input validation
    # ---------------------------------------------------------------------------------------
    def _validate_X(self, X, *, reset: bool, y="no_validation"):
        """Validate X (2-D tabular or 3-D sequences), optionally with y; returns float32 X."""
        ndim = _ndim(X)
        if ndim > 3:
            raise ValueError(
                "X must be 2-D (n_samples, n_features) or 3-D (n_samples, n_steps, n_inputs); "
                f"got an array with dim {ndim}."
            )
        is_3d = ndim == 3
        check = {
            "dtype": [np.float64, np.float32],
            "ensure_min_samples": 1,
            "allow_nd": is_3d,
            "ensure_all_finite": True,
        }
        multi_output = not is_classifier(self)
        if is_3d:
            # validate_data would take the time axis for the features; check the array here.
            X = check_array(X, **check)
            if X.shape[1] < 1 or X.shape[2] < 1:
                raise ValueError(f"3-D X needs at least one step and one input, got {X.shape}.")
            if y is None:
                raise ValueError(
                    f"This {type(self).__name__} estimator requires y to be passed, but the "
                    "target y is None."
                )
            if not _is_no_validation(y):
                y = _check_y(y, multi_output=multi_output, y_numeric=multi_output)
                check_consistent_length(X, y)
            if reset:
                self.n_features_in_ = X.shape[2]
                if hasattr(self, "feature_names_in_"):
                    del self.feature_names_in_
            elif X.shape[2] != self.n_features_in_:
                raise ValueError(
                    f"X has {X.shape[2]} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input."
                )
        elif _is_no_validation(y):
            X = validate_data(self, X, reset=reset, **check)
        else:
            X, y = validate_data(
                self,
                X,
                y,
                reset=reset,
                multi_output=multi_output,
                y_numeric=multi_output,
                **check,
            )
        if reset:
            self._input_ndim = X.ndim
        elif X.ndim != self._input_ndim:
            raise ValueError(
                f"X is {X.ndim}-D but {type(self).__name__} was fitted on "
                f"{self._input_ndim}-D input."
            )
        with np.errstate(over="ignore"):  # overflow is detected just below
            X32 = X.astype(np.float32, copy=False)
        if not np.isfinite(X32).all():
            raise ValueError("X contains values too large in magnitude for float32.")
        return X32 if _is_no_validation(y) else (X32, y)

    # ---------------------------------------------------------------------------------------
    # Fitting
    # ---------------------------------------------------------------------------------------
    def _batch_size(self, n_samples: int) -> int:
        if self.batch_size == "auto":
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
        torch_seed = int(self._rng.randint(_SEED_MAX))
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
        x0 = _as_tensor(X_init[:n_init])
        module.initialize(x0, generator, GeneratorNoise(torch_seed + 1))
        self.module_ = module.to(device)
        self._optimizer = torch.optim.Adam(self.module_.parameters(), lr=self.learning_rate_init)
        self._predict_seed = int(self._rng.randint(_SEED_MAX))
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
        sw = _check_sample_weight(sample_weight, X, dtype=np.float64)
        if (sw < 0).any():
            raise ValueError("sample_weight must be non-negative; found negative weights.")
        if not (sw.sum() > 0):
            raise ValueError("sample_weight sums to zero; at least one weight must be positive.")

        if first_call or not incremental:
            self._rng = check_random_state(self.random_state)
        if not first_call and not incremental:
            self._restart_stopping_history_if_toggled()
        X_val = y_val = None
        if self.early_stopping and not incremental:
            X, X_val, y_enc, y_val, sw = self._validation_split(X, y_enc, sw)
        batch_size = self._batch_size(len(X))
        n_inputs = X.shape[2] if X.ndim == 3 else X.shape[1]
        check_batch_fits(
            batch_memory(
                X.shape[1] if X.ndim == 3 else self.n_steps,
                batch_size,
                n_inputs,
                self._hidden_sizes(),
                self._n_readout(),
                get_engine(self.engine),
                dense_input=X.ndim == 3 or self.encoding != "current",
            ),
            device,
        )
        if first_call:
            self._build(n_inputs, self._n_readout(), X, device)
        trainer = Trainer(self.module_, self._optimizer)
        if not first_call:
            self._refresh_hyperparameters()
            trainer.set_learning_rate(self.learning_rate_init)
            trainer.to(device)
        if commit_targets is not None:
            commit_targets()

        y_t = torch.as_tensor(y_enc, device=device)
        X_t = _as_tensor(X).to(device)
        sw_t = torch.as_tensor(sw / sw.mean(), dtype=torch.float32, device=device)

        def on_epoch(result: EpochResult) -> None:
            self._record_epoch(result, len(X))
            if X_val is not None:
                result.validation = self._score_validation(X_val, y_val)
                self.validation_scores_.append(result.validation)

        stopped = trainer.run(
            TrainingData(X_t, y_t, sw_t, input_events(X_t, self.module_)),
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
        seed = self._rng.randint(_SEED_MAX)
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
    # Inference
    # ---------------------------------------------------------------------------------------
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
                x = torch.tensor(X[chunk], device=device)
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


def _ndim(X) -> int:
    """Number of dimensions of array-like X without converting DataFrames or sparse matrices."""
    shape = getattr(X, "shape", None)
    if shape is not None:
        return len(shape)
    try:
        return np.asarray(X).ndim
    except (ValueError, TypeError):
        return 2  # ragged or odd input: let the 2-D validation report it


def _as_tensor(X: np.ndarray) -> torch.Tensor:
    """A tensor sharing X's memory; X may be read-only (a joblib memmap): it is never written."""
    X = np.ascontiguousarray(X)
    if X.flags.writeable:
        return torch.from_numpy(X)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(X)


def _is_no_validation(y) -> bool:
    return isinstance(y, str) and y == "no_validation"


def _copy_module(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    import copy

    return copy.deepcopy(module).to(device)


class SpikingClassifier(ClassifierMixin, _BaseSpiking):
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
        Mini-batch size; "auto" is ``min(200, n_samples)``.
    learning_rate_init : float, default=2e-3
        Adam step size.
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
    engine : {"auto", "fused", "reference"}, default="auto"
        Implementation of the LIF time loop: "reference" is a step-by-step autograd loop,
        "fused" a single autograd node with a hand-written backward pass that gives the same
        gradients; "auto" picks the fastest available.

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

    def fit(self, X, y, sample_weight=None):
        """Fit the network to data X and labels y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, n_steps, n_inputs)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False)

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


class SpikingRegressor(RegressorMixin, _BaseSpiking):
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
        # network keeps predicting standardised targets; measured on sorted and skewed
        # streams, this learns better than keeping its predictions by rescaling the readout.
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

    def fit(self, X, y, sample_weight=None):
        """Fit the network to data X and targets y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, n_steps, n_inputs)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, sample_weight=None):
        """Train for one epoch over (X, y).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, n_steps, n_inputs)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
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
