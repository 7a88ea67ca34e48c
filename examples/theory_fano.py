"""
Variability and the other mode
==============================

Trial-to-trial variability of a trained stochastic network, and "other mode" evaluation.

Two classifiers learn random-manifold spike data (5 classes, 20 input units, 50 steps of
2 ms): one with escape noise at T = 0.1 and the matched surrogate, one deterministic (T = 0,
sigmoid' surrogate at beta = 10). Test inputs are then each presented 400 times. The stochastic
network's hidden neurons answer with different spike trains on every repetition: Fano factors
(variance over mean of the spike count in 20 ms windows, across repetitions) near 1, as the
authors measured, where the deterministic network's are exactly 0. Each model is also scored in
the other mode: the stochastic one run deterministically and the deterministic one run with
noise.

Run from the repository root::

    python examples/theory_fano.py           # print the numbers, show the figure
    python examples/theory_fano.py --save    # ... and write docs/figures/theory_fano.png

Needs matplotlib (``pip install "sksnn[plot]"``). Half a minute to a minute on two CPU cores.
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
from sksnn.theory import cross_mode_scores, estimator_fano_factors

# The documentation build sets SKSNN_DOCS_BUDGET=small to run a smaller version of this
# script; the numbers in the docstring are from the full-size run.
SMALL = os.environ.get("SKSNN_DOCS_BUDGET") == "small"
FIGURE = Path("docs") / "figures" / "theory_fano.png"  # relative to the repository root
N_TRIALS = 400
WINDOW = 10  # steps of 2 ms: 20 ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1] if __doc__ else None)
    parser.add_argument("--save", action="store_true", help=f"write the figure to {FIGURE}")
    parser.add_argument(
        "--epochs", type=int, default=8 if SMALL else 20, help="training epochs (default 20)"
    )
    parser.add_argument(
        "--inputs", type=int, default=3 if SMALL else 5, help="test inputs repeated (default 5)"
    )
    args = parser.parse_args()

    X, y = make_randman(n_samples=1000, n_classes=5, n_units=20, n_steps=50, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    models = {}
    for label, temperature in (("stochastic (T = 0.1)", 0.1), ("deterministic (T = 0)", 0.0)):
        clf = SpikingClassifier(
            hidden_layer_sizes=(64,),
            noise_temperature=temperature,
            learning_rate_init=1e-2,
            batch_size=64,
            max_iter=args.epochs,
            random_state=0,
        )
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X_train, y_train)
        print(
            f"{label}: {clf.n_iter_} epochs in {time.perf_counter() - start:.1f} s, "
            f"test accuracy {clf.score(X_test, y_test):.3f}, "
            f"{clf.firing_rates_[0]:.3f} spikes per neuron per step"
        )
        models[label] = clf

    stochastic = models["stochastic (T = 0.1)"]
    probe = X_test[: args.inputs]
    fano = estimator_fano_factors(stochastic, probe, n_trials=N_TRIALS, window=WINDOW)
    det_fano = estimator_fano_factors(
        models["deterministic (T = 0)"], probe, n_trials=N_TRIALS, window=WINDOW
    )
    valid = fano[np.isfinite(fano)]
    print(
        f"Fano factors, {args.inputs} test inputs x {N_TRIALS} repetitions, 20 ms windows: "
        f"stochastic model mean {valid.mean():.3f}, median {np.median(valid):.3f} "
        f"({valid.size} neuron-windows with spikes, {np.isnan(fano).mean():.0%} silent); "
        f"deterministic model max {np.nanmax(det_fano):.3f}"
    )
    per_window = np.nanmean(fano, axis=(0, 2))
    print("  mean Fano factor per window: " + ", ".join(f"{f:.3f}" for f in per_window))

    scores = {}
    for label, clf in models.items():
        scores[label] = cross_mode_scores(clf, X_test, y_test, temperatures=(0.0, 0.1))
        print(
            f"{label} scored at T = 0: {scores[label][0.0]:.3f}, "
            f"at T = 0.1: {scores[label][0.1]:.3f}"
        )

    import matplotlib

    if args.save:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    sim = stochastic.simulate(probe[:1], n_trials=40).spikes[0][:, 0]  # (trials, steps, units)
    neuron = int(np.argmax(sim.sum(axis=(0, 1))))
    trials, steps = np.nonzero(sim[:, :, neuron])
    axes[0].scatter(steps * 2, trials, s=6, color="black")
    axes[0].set_xlabel("time (ms)")
    axes[0].set_ylabel("repetition of the same input")
    axes[0].set_title("one hidden neuron, stochastic model")
    axes[1].hist(valid, bins=30, color="tab:blue")
    axes[1].axvline(valid.mean(), color="black", ls="--", label=f"mean {valid.mean():.2f}")
    axes[1].set_xlabel("Fano factor (20 ms windows, 400 repetitions)")
    axes[1].set_title("stochastic model (deterministic: all 0)")
    axes[1].legend(frameon=False)
    width = 0.38
    for k, (label, s) in enumerate(scores.items()):
        axes[2].bar(np.arange(2) + (k - 0.5) * width, [s[0.0], s[0.1]], width, label=label)
    axes[2].set_xticks([0, 1], ["run at T = 0", "run at T = 0.1"])
    axes[2].set_ylabel("test accuracy")
    axes[2].set_ylim(0, 1.15)
    axes[2].set_title("trained in one mode, run in either")
    axes[2].legend(fontsize=8, frameon=False, loc="upper center", ncol=2)
    if args.save:
        FIGURE.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(FIGURE, dpi=80)
        print(f"wrote {FIGURE}")
    else:
        plt.show()


if __name__ == "__main__":
    main()
