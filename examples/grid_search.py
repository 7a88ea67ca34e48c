"""
Grid search over surrogates and temperatures
============================================

Grid search over surrogate shapes and noise temperatures.

Run: python examples/grid_search.py
"""

import time
import warnings

import pandas as pd
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sksnn import SpikingClassifier

# max_iter is a fixed training budget here, not a convergence criterion: the warning that the
# loss was still improving when the budget ran out says nothing new.
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X, y = load_digits(return_X_y=True)
X, y = X[:900], y[:900]

pipe = make_pipeline(
    StandardScaler(),
    SpikingClassifier(hidden_layer_sizes=(64,), n_steps=25, max_iter=8, random_state=0),
)
grid = {
    "spikingclassifier__surrogate": ["matched", "superspike", "atan"],
    "spikingclassifier__noise_temperature": [0.0, 0.05, 0.2],
}
# n_jobs=2: joblib's worker processes each get cores // 2 torch threads, so two workers do
# not oversubscribe a 2-core machine.
search = GridSearchCV(pipe, grid, cv=3, n_jobs=2)
start = time.perf_counter()
search.fit(X, y)
print(
    f"{len(search.cv_results_['params'])} configurations x 3 folds in "
    f"{time.perf_counter() - start:.0f} s\n"
)

table = pd.DataFrame(search.cv_results_)[
    [
        "param_spikingclassifier__surrogate",
        "param_spikingclassifier__noise_temperature",
        "mean_test_score",
        "std_test_score",
        "mean_fit_time",
    ]
]
table.columns = ["surrogate", "T", "mean accuracy", "std", "fit time (s)"]
print(
    table.sort_values("mean accuracy", ascending=False).to_string(index=False, float_format="%.3f")
)
print(f"\nbest: {search.best_params_}")
