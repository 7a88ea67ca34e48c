"""Behaviour of SpikingClassifier / SpikingRegressor beyond scikit-learn's generic checks."""

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning

from sksnn import SpikingClassifier, SpikingRegressor
from sksnn.surrogates import Atan, Matched, get_escape_noise

SMALL = dict(hidden_layer_sizes=(16,), n_steps=10, max_iter=3, random_state=0)


@pytest.fixture(autouse=True)
def _quiet_convergence():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@pytest.fixture(scope="module")
def clf_data():
    return make_classification(
        n_samples=120, n_features=6, n_informative=4, n_classes=3, random_state=0
    )


@pytest.fixture(scope="module")
def reg_data():
    X, y = make_regression(n_samples=120, n_features=5, n_targets=2, random_state=0)
    return X, y


def _weights(est):
    return {k: v.clone() for k, v in est.module_.state_dict().items()}


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fitted_attributes(clf_data):
    X, y = clf_data
    clf = SpikingClassifier(hidden_layer_sizes=(16, 8), n_steps=10, max_iter=4, random_state=0)
    clf.fit(X, y)
    assert isinstance(clf.module_, torch.nn.Module)
    assert clf.n_features_in_ == 6 and clf.n_outputs_ == 3
    assert list(clf.classes_) == [0, 1, 2]
    assert clf.n_iter_ == 4 == len(clf.loss_curve_)
    assert clf.t_ == 4 * len(X)
    assert clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert clf.firing_rates_.shape == (2,)
    assert np.all((clf.firing_rates_ > 0) & (clf.firing_rates_ < 1))
    assert not hasattr(clf, "feature_names_in_")
    proba = clf.predict_proba(X)
    assert proba.shape == (120, 3) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), proba)


def test_fresh_network_spikes_for_every_encoding_and_input():
    rng = np.random.RandomState(0)
    cases = [
        ("current", rng.randn(100, 8)),
        ("rate", rng.rand(100, 8)),
        ("latency", rng.rand(100, 8)),
        ("current", (rng.rand(100, 30, 40) < 0.02).astype(np.float32)),  # sparse 3-D spikes
    ]
    y = rng.randint(0, 2, 100)
    for encoding, X in cases:
        clf = SpikingClassifier(
            encoding=encoding,
            hidden_layer_sizes=(32, 32),
            n_steps=30,
            max_iter=1,
            learning_rate_init=1e-12,
            random_state=0,
        )
        rates = clf.fit(X, y).firing_rates_
        # fluctuation-driven init targets membrane fluctuations of one threshold: every layer
        # must fire, and not saturate (a silent network cannot learn)
        assert np.all(rates > 0.005) and np.all(rates < 0.5), (encoding, X.ndim, rates)


def test_string_labels_and_dataframe_feature_names(clf_data):
    pd = pytest.importorskip("pandas")
    X, y = clf_data
    labels = np.array(["ant", "bee", "cat"])[y]
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    clf = SpikingClassifier(**SMALL).fit(df, labels)
    assert list(clf.feature_names_in_) == list(df.columns)
    assert set(clf.predict(df)) <= {"ant", "bee", "cat"}
    assert clf.predict(df).dtype == labels.dtype


def test_same_seed_same_weights_and_predictions(clf_data):
    X, y = clf_data
    a = SpikingClassifier(**SMALL).fit(X, y)
    b = SpikingClassifier(**SMALL).fit(X, y)
    assert _same_weights(_weights(a), _weights(b))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c = SpikingClassifier(**{**SMALL, "random_state": 1}).fit(X, y)
    assert not _same_weights(_weights(a), _weights(c))


def test_predict_is_repeatable_and_does_not_mutate(clf_data):
    X, y = clf_data
    clf = SpikingClassifier(**SMALL, predict_trials=3).fit(X, y)
    before, keys = _weights(clf), set(vars(clf))
    first = clf.predict_proba(X)
    for _ in range(3):
        np.testing.assert_array_equal(clf.predict_proba(X), first)
    assert _same_weights(before, _weights(clf)) and set(vars(clf)) == keys
    # a prediction depends on the sample only, not on its batch or position
    np.testing.assert_array_equal(clf.predict_proba(X[::-1][:7]), first[::-1][:7])


def test_stochastic_trials_are_averaged(clf_data):
    X, y = clf_data
    one = SpikingClassifier(**SMALL, predict_trials=1).fit(X, y)
    many = SpikingClassifier(**SMALL, predict_trials=8).fit(X, y)
    p1, p8 = one.predict_proba(X), many.predict_proba(X)
    assert not np.allclose(p1, p8)
    # the 8-trial average is the mean over 8 simulations
    logits = many.simulate(X, n_trials=8).output.max(axis=2).astype(np.float64)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(p8, (e / e.sum(-1, keepdims=True)).mean(0), rtol=1e-5, atol=1e-6)
    # deterministic networks ignore predict_trials
    det = SpikingClassifier(**SMALL, noise_temperature=0.0, predict_trials=1).fit(X, y)
    det8 = SpikingClassifier(**SMALL, noise_temperature=0.0, predict_trials=8).fit(X, y)
    np.testing.assert_array_equal(det.predict_proba(X), det8.predict_proba(X))


def test_simulate_shapes_and_variability(clf_data):
    X, y = clf_data
    clf = SpikingClassifier(hidden_layer_sizes=(16, 8), n_steps=12, max_iter=2, random_state=0)
    sim = clf.fit(X, y).simulate(X[:5], n_trials=4, record_membrane=True)
    assert [s.shape for s in sim.spikes] == [(4, 5, 12, 16), (4, 5, 12, 8)]
    assert sim.spikes[0].dtype == np.uint8 and set(np.unique(sim.spikes[0])) <= {0, 1}
    assert sim.output.shape == (4, 5, 12, 3)
    assert [m.shape for m in sim.membranes] == [(4, 5, 12, 16), (4, 5, 12, 8)]
    # stochastic trials differ, repeated calls agree
    assert not np.array_equal(sim.spikes[0][0], sim.spikes[0][1])
    np.testing.assert_array_equal(clf.simulate(X[:5], n_trials=4).spikes[0], sim.spikes[0])
    # spikes are where the membrane crossed threshold or was likely to
    u, s = sim.membranes[0], sim.spikes[0]
    assert u[s == 1].mean() > u[s == 0].mean()
    det = SpikingClassifier(**{**SMALL, "noise_temperature": 0.0}).fit(X, y)
    sim0 = det.simulate(X[:5], n_trials=3, record_membrane=True)
    np.testing.assert_array_equal(sim0.spikes[0][0], sim0.spikes[0][2])
    np.testing.assert_array_equal(sim0.spikes[0], (sim0.membranes[0] > 1.0).astype(np.uint8))
    with pytest.raises(ValueError, match="n_trials"):
        det.simulate(X, n_trials=0)


def test_partial_fit(clf_data):
    X, y = clf_data
    clf = SpikingClassifier(**SMALL)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:60], y[:60], classes=[0, 1, 2])
    w1 = _weights(clf)
    clf.partial_fit(X[60:], y[60:])
    assert clf.n_iter_ == 2 and clf.t_ == 120 and len(clf.loss_curve_) == 2
    assert not _same_weights(w1, _weights(clf))
    with pytest.raises(ValueError, match="not seen"):
        clf.partial_fit(X[:5], np.array([0, 1, 2, 3, 3]))
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:, :3], y)


def test_warm_start_continues(clf_data):
    X, y = clf_data
    cold = SpikingClassifier(**SMALL).fit(X, y)
    warm = SpikingClassifier(**SMALL, warm_start=True).fit(X, y)
    w = _weights(warm)
    warm.fit(X, y)
    assert warm.n_iter_ == 6 and len(warm.loss_curve_) == 6
    assert not _same_weights(w, _weights(warm))
    # continuing from trained weights starts below where a cold fit started
    assert warm.loss_curve_[3] < cold.loss_curve_[0]
    refit = SpikingClassifier(**SMALL).fit(X, y).fit(X, y)
    assert refit.n_iter_ == 3 and _same_weights(_weights(refit), _weights(cold))


def test_early_stopping_restores_best(clf_data):
    X, y = clf_data
    clf = SpikingClassifier(
        **{**SMALL, "max_iter": 40}, early_stopping=True, n_iter_no_change=2, tol=0.0
    )
    clf.fit(X, y)
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_loss_ is None
    # the kept weights are the best epoch's: the validation split is re-drawn identically
    # with the same seed, so re-scoring it gives the best score back
    assert clf.n_iter_ < 40
    best_epoch = int(np.argmax(clf.validation_scores_))
    replay = SpikingClassifier(
        **{**SMALL, "max_iter": best_epoch + 1}, early_stopping=True, n_iter_no_change=100
    ).fit(X, y)
    assert _same_weights(_weights(replay), _weights(clf))


def test_convergence_warning_and_early_stop_message(clf_data, capsys):
    X, y = clf_data
    with pytest.warns(ConvergenceWarning, match="maximum iterations"):
        SpikingClassifier(**SMALL).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        # tol larger than any possible improvement: the first epoch improves on the initial
        # best loss (inf), the next n_iter_no_change + 1 do not (MLP's rule: stop when the
        # count exceeds n_iter_no_change)
        clf = SpikingClassifier(**{**SMALL, "max_iter": 50}, tol=1e3, n_iter_no_change=2)
        clf.fit(X, y)
    assert clf.n_iter_ == 4


def test_verbose_prints_one_line_per_epoch_without_tqdm(clf_data, capsys, monkeypatch):
    X, y = clf_data
    SpikingClassifier(**SMALL).fit(X, y)
    assert capsys.readouterr() == ("", "")
    monkeypatch.setattr("sksnn._progress.load_tqdm", lambda: None)
    SpikingClassifier(**SMALL, verbose=True, early_stopping=True).fit(X, y)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for n, line in enumerate(lines, 1):
        assert line.startswith(f"Epoch {n},")
        assert "loss =" in line and "validation score =" in line
        assert "firing rate =" in line and line.endswith(" s")


def test_verbose_progress_bar_per_epoch(clf_data, capsys):
    pytest.importorskip("tqdm")
    X, y = clf_data
    SpikingClassifier(**SMALL, verbose=True, batch_size=40, early_stopping=True).fit(X, y)
    out, err = capsys.readouterr()
    assert out == ""
    # tqdm redraws each bar in place; keep the last drawn state of every epoch's bar
    import re

    finals = {}
    for segment in re.split(r"[\r\n]+", err):
        if segment.startswith("Epoch "):
            finals[int(segment.split(":")[0].split()[1])] = segment
    assert sorted(finals) == [1, 2, 3]
    for bar in finals.values():
        assert "3/3" in bar  # 108 training rows in batches of 40
        assert "loss=" in bar and "val=" in bar and "rate=[" in bar


def test_sample_weight(clf_data):
    X, y = clf_data
    ones = SpikingClassifier(**SMALL).fit(X, y, sample_weight=np.ones(len(y)))
    none = SpikingClassifier(**SMALL).fit(X, y)
    assert _same_weights(_weights(ones), _weights(none))
    # zero-weighted copies with wrong labels do not hurt the fit; unweighted they do. Two
    # copies with the same wrong label, so that unweighted they outvote the true one. Measured
    # training accuracies over seeds 0-3: weighted 0.97-0.98, unweighted 0.03-0.13.
    X, y = make_classification(
        n_samples=120, n_features=6, n_informative=4, n_classes=3, class_sep=2.0, random_state=0
    )
    wrong = (y + 1) % 3
    X2 = np.vstack([X, X, X])
    y2 = np.concatenate([y, wrong, wrong])
    sw = np.r_[np.ones(len(y)), np.zeros(2 * len(y))]
    params = {**SMALL, "max_iter": 30, "batch_size": 20}
    weighted = SpikingClassifier(**params).fit(X2, y2, sample_weight=sw)
    unweighted = SpikingClassifier(**params).fit(X2, y2)
    assert weighted.score(X, y) > 0.85
    assert unweighted.score(X, y) < 0.5
    for bad, msg in [
        (-np.ones(len(y)), "non-negative"),
        (np.zeros(len(y)), "non-zero|sums to zero"),
    ]:
        with pytest.raises(ValueError, match=msg):
            SpikingClassifier(**SMALL).fit(X, y, sample_weight=bad)


def test_regressor_targets_and_return_std(reg_data):
    X, Y = reg_data
    reg2 = SpikingRegressor(**SMALL).fit(X, Y)
    assert reg2.n_outputs_ == 2 and reg2.predict(X).shape == (120, 2)
    reg1 = SpikingRegressor(**SMALL).fit(X, Y[:, 0])
    assert reg1.n_outputs_ == 1 and reg1.predict(X).shape == (120,)
    assert SpikingRegressor(**SMALL).fit(X, Y[:, :1]).predict(X).shape == (120, 1)
    # targets are standardised internally: an affine change of y changes the predictions by
    # the same affine map (float64 rounding aside)
    moved = SpikingRegressor(**SMALL).fit(X, 1000 + 50 * Y[:, 0])
    np.testing.assert_allclose(moved.predict(X), 1000 + 50 * reg1.predict(X), rtol=1e-9)
    mean, std = SpikingRegressor(**SMALL, predict_trials=6).fit(X, Y).predict(X, return_std=True)
    # stochastic trials spread the predictions (a sample can rarely get identical trials)
    assert mean.shape == std.shape == (120, 2) and np.mean(std > 0) > 0.9
    det = SpikingRegressor(**SMALL, noise_temperature=0.0, predict_trials=6).fit(X, Y)
    _, std0 = det.predict(X, return_std=True)
    np.testing.assert_array_equal(std0, 0.0)


@pytest.mark.parametrize(
    "params",
    [
        dict(encoding="rate"),
        dict(encoding="latency"),
        dict(recurrent=True, hidden_layer_sizes=(8, 8)),
        dict(reset="subtract", detach_reset=False),
        dict(reset="none"),
        dict(readout="mean"),
        dict(readout="last"),
        dict(escape_noise="erf"),
        dict(escape_noise="exponential"),
        dict(surrogate="superspike"),
        dict(surrogate=Atan(beta=3.0)),
        dict(activity_reg=1.0),
        dict(noise_temperature=0.0, surrogate="boxcar"),
        dict(hidden_layer_sizes=12),
        dict(batch_size=32, shuffle=False),
    ],
)
def test_parameter_variants_fit_and_predict(clf_data, params):
    X, y = clf_data
    X = (X - X.min(0)) / (X.max(0) - X.min(0)) if "encoding" in params else X
    clf = SpikingClassifier(**{**SMALL, **params}).fit(X, y)
    assert clf.predict(X).shape == (120,)
    assert np.all(np.isfinite(clf.loss_curve_))


def test_three_d_input(clf_data):
    rng = np.random.RandomState(0)
    X = (rng.rand(60, 15, 7) < 0.1).astype(np.float32)
    y = rng.randint(0, 2, 60)
    clf = SpikingClassifier(**SMALL).fit(X, y)
    assert clf.n_features_in_ == 7
    assert clf.simulate(X[:2]).spikes[0].shape == (1, 2, 15, 16)
    # another number of steps is fine, another number of inputs or a 2-D X is not
    assert clf.predict(X[:, :9]).shape == (60,)
    with pytest.raises(ValueError, match="7 features"):
        clf.predict(X[:, :, :5])
    with pytest.raises(ValueError, match="3-D"):
        clf.predict(X[:, 0])


def test_surrogate_beta_defaults():
    lif = SpikingClassifier(noise_temperature=0.25)._lif_parameters()
    assert lif.surrogate == Matched(beta=4.0, escape_noise=get_escape_noise("sigmoid"))
    assert SpikingClassifier(noise_temperature=0.0)._lif_parameters().surrogate.beta == 10.0
    lif = SpikingClassifier(escape_noise="erf", surrogate_beta=2.0)._lif_parameters()
    assert lif.surrogate == Matched(beta=2.0, escape_noise=get_escape_noise("erf"))
    assert SpikingClassifier(surrogate=Atan(beta=3.0))._lif_parameters().surrogate.beta == 3.0
    lif = SpikingClassifier(surrogate=Atan(beta=3.0), surrogate_beta=5.0)._lif_parameters()
    assert lif.surrogate == Atan(beta=5.0)


def test_set_params_between_warm_fits_takes_effect(clf_data):
    X, y = clf_data
    clf = SpikingClassifier(**SMALL, warm_start=True).fit(X, y)
    clf.set_params(noise_temperature=0.0, learning_rate_init=1e-2)
    clf.fit(X, y)
    assert clf.module_.lif.temperature == 0.0
    # each weight matrix steps in proportion to its initial scale (lr_scale)
    for group in clf._optimizer.param_groups:
        assert group["lr"] == pytest.approx(1e-2 * group["lr_scale"])
    assert dataclasses.is_dataclass(clf.module_.lif)


def test_divergence_stops_with_clear_error_and_keeps_last_good_state(clf_data):
    X, y = clf_data
    clf = SpikingClassifier(**SMALL, learning_rate_init=1e30)
    with pytest.raises(FloatingPointError, match="diverged"):
        clf.fit(X * 1e6, y)
    assert all(torch.isfinite(p).all() for p in clf.module_.parameters())
    assert np.isfinite(clf.predict_proba(X)).all()


def test_cuda_without_gpu_is_a_clear_error(clf_data):
    if torch.cuda.is_available():
        pytest.skip("a GPU is available")
    X, y = clf_data
    with pytest.raises(ValueError, match="CUDA is not available"):
        SpikingClassifier(**SMALL, device="cuda").fit(X, y)
    # "auto" falls back to the CPU
    assert SpikingClassifier(**SMALL, device="auto").fit(X, y).predict(X).shape == (120,)
