"""
Accuracy against temperature
============================

Accuracy against escape-noise temperature: matched vs SuperSpike surrogate, on randman data.

Random-manifold spike data (5 classes, 20 input units, 50 steps, 1000 samples, a quarter held
out). For each noise temperature T from 0 (deterministic) to 0.5, a SpikingClassifier with 64
hidden neurons is trained with (i) the matched surrogate, the derivative of the sigmoid escape
noise at beta = 1/T (beta = 10 at T = 0), and (ii) the SuperSpike surrogate at the usual fixed
beta = 10. Test accuracy is measured in the training mode (at the training temperature) and
with the same weights run deterministically (T = 0).

Run from the repository root::

    python examples/theory_temperature_sweep.py           # print, show the figure
    python examples/theory_temperature_sweep.py --save    # ... and write docs/figures/...png

Needs matplotlib (``pip install "sksnn[plot]"``). Measured 33 s on an otherwise idle
two-core machine (24 fits of 20 epochs); ``--seeds 1`` halves that.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from sksnn import SpikingClassifier
from sksnn.datasets import make_randman
from sksnn.theory import with_noise_temperature

# The documentation build sets SKSNN_DOCS_BUDGET=small to run a smaller version of this
# script; the numbers in the docstring are from the full-size run.
SMALL = os.environ.get("SKSNN_DOCS_BUDGET") == "small"

FIGURE = Path("docs") / "figures" / "theory_temperature.png"  # relative to the repository root
TEMPERATURES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
SURROGATES = {
    "matched (beta = 1/T)": ("matched", None),
    "superspike (beta = 10)": ("superspike", 10.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1] if __doc__ else None)
    parser.add_argument("--save", action="store_true", help=f"write the figure to {FIGURE}")
    parser.add_argument(
        "--epochs", type=int, default=8 if SMALL else 20, help="training epochs (default 20)"
    )
    parser.add_argument(
        "--seeds", type=int, default=1 if SMALL else 2, help="seeds per setting (default 2)"
    )
    args = parser.parse_args()

    X, y = make_randman(n_samples=1000, n_classes=5, n_units=20, n_steps=50, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    # acc[label][i, seed] in the training mode, det[label][i, seed] run at T = 0
    acc = {label: np.zeros((len(TEMPERATURES), args.seeds)) for label in SURROGATES}
    det = {label: np.zeros((len(TEMPERATURES), args.seeds)) for label in SURROGATES}
    start = time.perf_counter()
    for i, temperature in enumerate(TEMPERATURES):
        for label, (surrogate, beta) in SURROGATES.items():
            for seed in range(args.seeds):
                clf = SpikingClassifier(
                    hidden_layer_sizes=(64,),
                    noise_temperature=temperature,
                    surrogate=surrogate,
                    surrogate_beta=beta,
                    learning_rate_init=1e-2,
                    batch_size=64,
                    max_iter=args.epochs,
                    random_state=seed,
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    clf.fit(X_train, y_train)
                acc[label][i, seed] = clf.score(X_test, y_test)
                det[label][i, seed] = with_noise_temperature(clf, 0.0).score(X_test, y_test)
            print(
                f"T = {temperature:4.2f}  {label:24s} test accuracy "
                + ", ".join(f"{a:.3f}" for a in acc[label][i])
                + "  (run at T = 0: "
                + ", ".join(f"{a:.3f}" for a in det[label][i])
                + ")"
            )
    n_fits = len(TEMPERATURES) * len(SURROGATES) * args.seeds
    print(f"{n_fits} fits in {time.perf_counter() - start:.0f} s")

    import matplotlib

    if args.save:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8), constrained_layout=True)
    for k, label in enumerate(SURROGATES):
        color = f"C{k}"
        mean = acc[label].mean(axis=1)
        ax.plot(TEMPERATURES, mean, "o-", color=color, label=f"{label}, run at T")
        ax.fill_between(TEMPERATURES, acc[label].min(1), acc[label].max(1), color=color, alpha=0.2)
        ax.plot(
            TEMPERATURES,
            det[label].mean(axis=1),
            "x--",
            color=color,
            alpha=0.7,
            label=f"{label}, run at T = 0",
        )
    ax.set_xlabel("escape-noise temperature T during training")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"randman, 5 classes ({args.seeds} seeds: mean and range)")
    ax.legend(fontsize=7, frameon=False)
    if args.save:
        FIGURE.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(FIGURE, dpi=90)
        print(f"wrote {FIGURE}")
    else:
        plt.show()


if __name__ == "__main__":
    main()
