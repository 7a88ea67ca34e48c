"""scikit-learn's estimator checks on both estimators."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sksnn import SpikingClassifier, SpikingRegressor

# Small networks keep the ~60 fits per estimator fast. The learning checks
# (check_classifiers_train, check_regressors_train) fit 100-300 samples, i.e. one or two
# mini-batches per epoch, so they need ~100 epochs at the default learning rate.
ESTIMATORS = [
    SpikingClassifier(hidden_layer_sizes=(32,), n_steps=20, max_iter=100, random_state=0),
    SpikingRegressor(hidden_layer_sizes=(32,), n_steps=20, max_iter=100, random_state=0),
]

_SAMPLE_WEIGHT_REASON = (
    "mini-batch training: repeating a row instead of weighting it changes the batches and "
    "the number of optimiser steps, so the two fits differ (as for MLPClassifier)"
)
EXPECTED_FAILED = {
    "SpikingClassifier": {"check_sample_weight_equivalence_on_dense_data": _SAMPLE_WEIGHT_REASON},
    "SpikingRegressor": {"check_sample_weight_equivalence_on_dense_data": _SAMPLE_WEIGHT_REASON},
}


def _expected_failed(estimator):
    return EXPECTED_FAILED.get(type(estimator).__name__, {})


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed)
def test_sklearn_compatible(estimator, check):
    check(estimator)
