"""
Regression with uncertainty
===========================

Regression with SpikingRegressor: Friedman #1, with the spread over stochastic trials.

Run: python examples/regression.py
"""

import os
import time

import numpy as np
from sklearn.datasets import make_friedman1
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sksnn import SpikingRegressor

# The documentation build sets SKSNN_DOCS_BUDGET=small to train for fewer epochs.
MAX_ITER = 20 if os.environ.get("SKSNN_DOCS_BUDGET") == "small" else 60

X, y = make_friedman1(n_samples=1000, noise=1.0, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)

model = make_pipeline(
    StandardScaler(),
    # predictions are the readout potential averaged over time, averaged over 10 noisy trials
    SpikingRegressor(max_iter=MAX_ITER, predict_trials=10, random_state=0),
)
start = time.perf_counter()
model.fit(X_train, y_train)
print(f"fit: {model[-1].n_iter_} epochs in {time.perf_counter() - start:.1f} s")
print(f"test R^2: {model.score(X_test, y_test):.3f}")

# Pipeline.predict passes return_std on to the final estimator.
mean, std = model.predict(X_test[:5], return_std=True)
for truth, m, s in zip(y_test[:5], mean, std, strict=True):
    print(f"  y = {truth:6.2f}   predicted {m:6.2f} +- {s:.2f} (std over trials)")
_, std_all = model.predict(X_test, return_std=True)
print(f"mean std over trials on the test set: {np.mean(std_all):.3f}")
