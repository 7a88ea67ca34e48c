"""
Quickstart: digits
==================

Quickstart: classify handwritten digits with a stochastic spiking network.

Run: python examples/quickstart.py
"""

import time
import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sksnn import SpikingClassifier

# max_iter is a fixed training budget here, not a convergence criterion: the warning that the
# loss was still improving when the budget ran out says nothing new.
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)

# 64 pixel features drive 128 stochastic LIF neurons as constant currents for 50 steps of
# 2 ms; neurons fire with probability sigmoid((U - 1) / 0.1) and learn through the matched
# surrogate gradient.
model = make_pipeline(
    StandardScaler(),
    SpikingClassifier(max_iter=20, noise_temperature=0.1, random_state=0),
)
start = time.perf_counter()
model.fit(X_train, y_train)
seconds = time.perf_counter() - start

clf = model[-1]
print(f"test accuracy      {model.score(X_test, y_test):.3f}")
print(f"epochs             {clf.n_iter_} in {seconds:.1f} s")
print(f"final train loss   {clf.loss_curve_[-1]:.4f}")
print(f"firing rate        {clf.firing_rates_[0]:.3f} spikes per neuron per step")

# The network is stochastic: repeated trials give different spike trains for one input.
sim = clf.simulate(model[0].transform(X_test[:1]), n_trials=3)
counts = sim.spikes[0].sum(axis=(2, 3))[:, 0]
print(f"hidden spike counts over 3 trials of one digit: {counts.tolist()}")
