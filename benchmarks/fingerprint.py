"""Fingerprints of fitted weights and predictions, to show that a change keeps results bitwise.

Fits five configurations with fixed seeds (classifier and regressor, recurrent, two layers,
3-D spikes, stochastic and deterministic) and prints, per configuration, a SHA-256 of the
fitted parameters (independent of their names and order) and of the predictions. Run it before
and after a refactoring and compare the two outputs::

    python benchmarks/fingerprint.py > before.txt   # on the old code
    python benchmarks/fingerprint.py > after.txt    # on the new code
    diff before.txt after.txt
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
from sklearn.datasets import load_digits, make_friedman1

from sksnn import SpikingClassifier, SpikingRegressor
from sksnn.datasets import make_randman


def _digest(arrays) -> str:
    parts = sorted(hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() for a in arrays)
    return hashlib.sha256("".join(parts).encode()).hexdigest()[:16]


def configurations():
    digits_X, digits_y = load_digits(return_X_y=True)
    digits_X = digits_X[:400] / 16.0
    digits_y = digits_y[:400]
    friedman_X, friedman_y = make_friedman1(300, random_state=0)
    spikes_X, spikes_y = make_randman(300, n_classes=3, n_units=20, n_steps=40, random_state=0)
    yield "classifier, T=0.1", SpikingClassifier(max_iter=3), digits_X, digits_y
    yield (
        "classifier, recurrent, T=0",
        SpikingClassifier(recurrent=True, noise_temperature=0.0, max_iter=3),
        digits_X,
        digits_y,
    )
    yield (
        "classifier, two layers, 3-D spikes",
        SpikingClassifier((32, 16), max_iter=3),
        spikes_X,
        spikes_y,
    )
    yield (
        "regressor, T=0.1, 2 predict trials",
        SpikingRegressor(max_iter=3, predict_trials=2),
        friedman_X,
        friedman_y,
    )
    yield (
        "regressor, rate encoding, T=0",
        SpikingRegressor(encoding="rate", noise_temperature=0.0, max_iter=3),
        friedman_X / 2.0,
        friedman_y,
    )


def main() -> None:
    warnings.simplefilter("ignore")
    for name, estimator, X, y in configurations():
        estimator.set_params(random_state=0).fit(X, y)
        weights = [p.detach().cpu().numpy() for p in estimator.module_.parameters()]
        print(f"{name}: weights {_digest(weights)} predictions {_digest([estimator.predict(X)])}")


if __name__ == "__main__":
    main()
