"""
Saving and loading models
=========================

Saving and loading fitted models with joblib (and what to trust).

Run: python examples/persistence.py

pickle and joblib files can execute code when loaded: only load files you trust.
"""

import tempfile
from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sksnn import SpikingClassifier

X, y = load_breast_cancer(return_X_y=True)
model = make_pipeline(StandardScaler(), SpikingClassifier(max_iter=10, random_state=0))
model.fit(X, y)

with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "spiking.joblib"
    joblib.dump(model, path)  # weights are stored as CPU tensors with the sksnn version
    print(f"saved {path.stat().st_size / 1024:.0f} KiB")
    loaded = joblib.load(path)

same = np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
print(f"identical predictions after loading: {same}")
print(f"accuracy of the loaded model on its training data: {loaded.score(X, y):.3f}")
