"""Bad input is rejected with a clear error that names the problem, before any training."""

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from sksnn import SpikingClassifier, SpikingRegressor

SMALL = dict(hidden_layer_sizes=(8,), n_steps=5, max_iter=1, random_state=0)
RNG = np.random.RandomState(0)
X = RNG.randn(30, 4)
Y = np.arange(30) % 3


def _with(value, index=(3, 2)):
    bad = X.copy()
    bad[index] = value
    return bad


@pytest.mark.parametrize("Est", [SpikingClassifier, SpikingRegressor])
@pytest.mark.parametrize(
    "X_bad, message",
    [
        (_with(np.nan), "NaN"),
        (_with(np.inf), "infinity"),
        (_with(-np.inf), "infinity"),
        (_with(1e300), "too large"),
        (X[:, 0], "Expected 2D array, got 1D array"),
        (np.empty((0, 4)), "0 sample"),
        (np.empty((30, 0)), "0 feature"),
        (np.empty((0, 5, 4)), "0 sample"),
        (np.zeros((30, 0, 4)), "at least one step"),
        (X.reshape(30, 2, 2, 1), "4-D|dim 4"),
        (np.array([["a", "b", "c", "d"]] * 30), "string|float"),
    ],
)
def test_bad_X_in_fit(Est, X_bad, message):
    est = Est(**SMALL)
    y = Y[: len(X_bad)] if len(X_bad) else Y[:0]
    with pytest.raises(ValueError, match=message):
        est.fit(X_bad, y)
    assert not hasattr(est, "module_")  # nothing was built or trained


@pytest.mark.parametrize("Est", [SpikingClassifier, SpikingRegressor])
def test_bad_X_at_predict(Est):
    est = Est(**SMALL).fit(X, Y)
    with pytest.raises(ValueError, match=r"X has 3 features, but .* is expecting 4 features"):
        est.predict(X[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        est.predict(_with(np.nan))
    with pytest.raises(ValueError, match=r"3-D but .* fitted on 2-D"):
        est.predict(X.reshape(30, 1, 4))
    with pytest.raises(ValueError, match="1D array"):
        est.predict(X[0])
    with pytest.raises(ValueError, match="n_trials"):
        est.simulate(X, n_trials=2.5)


def test_unfitted_is_a_clear_error():
    from sklearn.exceptions import NotFittedError

    for method in ("predict", "predict_proba", "simulate"):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            getattr(SpikingClassifier(), method)(X)


def test_targets():
    with pytest.raises(ValueError, match="one class"):
        SpikingClassifier(**SMALL).fit(X, np.zeros(30))
    with pytest.raises(ValueError, match="Unknown label type"):
        SpikingClassifier(**SMALL).fit(X, RNG.randn(30))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        SpikingClassifier(**SMALL).fit(X, Y[:-1])
    with pytest.raises(ValueError, match="NaN"):
        SpikingRegressor(**SMALL).fit(X, np.r_[np.nan, np.ones(29)])
    with pytest.raises(ValueError, match="requires y to be passed"):
        SpikingRegressor(**SMALL).fit(X, None)
    with pytest.raises(ValueError, match=r"sample_weight|samples"):
        SpikingClassifier(**SMALL).fit(X, Y, sample_weight=np.ones(5))


@pytest.mark.parametrize(
    "param, value",
    [
        ("hidden_layer_sizes", (0,)),
        ("hidden_layer_sizes", ()),
        ("hidden_layer_sizes", (8, -1)),
        ("n_steps", 0),
        ("encoding", "phase"),
        ("escape_noise", "gumbel"),
        ("noise_temperature", -0.1),
        ("surrogate", "fancy"),
        ("surrogate", 3),
        ("surrogate_beta", 0.0),
        ("tau_mem", 0.0),
        ("tau_syn", -1.0),
        ("dt", 0),
        ("threshold", 0.0),
        ("reset", "hard"),
        ("detach_reset", "yes"),
        ("readout", "sum"),
        ("activity_reg", -1.0),
        ("alpha", -1e-4),
        ("batch_size", 0),
        ("batch_size", "big"),
        ("learning_rate_init", 0.0),
        ("max_iter", 0),
        ("validation_fraction", 1.0),
        ("predict_trials", 0),
        ("device", "tpu"),
        ("engine", "warp"),
    ],
)
def test_invalid_parameters(param, value):
    est = SpikingClassifier(**{**SMALL, param: value})  # never raises in __init__
    assert est.get_params()[param] == value
    with pytest.raises((InvalidParameterError, ValueError), match=param):
        est.fit(X, Y)
    assert not hasattr(est, "module_")


def test_early_stopping_needs_a_validation_set():
    est = SpikingClassifier(**SMALL, early_stopping=True, validation_fraction=0.01)
    with pytest.raises(ValueError, match="validation_fraction"):
        est.fit(X, Y)
    assert not hasattr(est, "module_")
