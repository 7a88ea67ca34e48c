"""
Spike rasters on random-manifold data
=====================================

Train a stochastic spiking classifier on random-manifold spike data and plot its activity.

Random-manifold ("randman") data: each class is a smooth random curve embedded in the spike
times of 20 input units, each of which fires exactly once per sample, so only spike timing
carries the class. A network of 64 stochastic LIF neurons (sigmoid escape noise at temperature
0.1, matched surrogate gradient) learns to tell 5 such classes apart.

Run from the repository root::

    python examples/randman_raster.py          # train, print accuracy, show the figure
    python examples/randman_raster.py --save   # ... and write docs/figures/raster.png

Needs matplotlib (``pip install "sksnn[plot]"``). About a minute on two CPU cores.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from sklearn.model_selection import train_test_split

from sksnn import SpikingClassifier
from sksnn.datasets import make_randman

# The documentation build sets SKSNN_DOCS_BUDGET=small to run a smaller version of this
# script; the numbers in the docstring are from the full-size run.
SMALL = os.environ.get("SKSNN_DOCS_BUDGET") == "small"

FIGURE = Path("docs") / "figures" / "raster.png"  # relative to the repository root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1] if __doc__ else None)
    parser.add_argument("--save", action="store_true", help=f"write the figure to {FIGURE}")
    parser.add_argument(
        "--epochs", type=int, default=10 if SMALL else 30, help="training epochs (default 30)"
    )
    args = parser.parse_args()

    X, y = make_randman(n_samples=1500, n_classes=5, n_units=20, n_steps=50, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=0
    )
    clf = SpikingClassifier(
        hidden_layer_sizes=(64,),
        noise_temperature=0.1,
        learning_rate_init=1e-2,
        batch_size=64,
        max_iter=args.epochs,
        random_state=0,
    )
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    print(f"data: {X.shape[0]} samples, {X.shape[1]} steps, {X.shape[2]} inputs, 5 classes")
    print(f"fit: {clf.n_iter_} epochs in {seconds:.1f} s, final loss {clf.loss_curve_[-1]:.3f}")
    print(f"train accuracy {clf.score(X_train, y_train):.3f}")
    print(f"test accuracy  {clf.score(X_test, y_test):.3f}")
    print(f"hidden firing rate {clf.firing_rates_[0]:.3f} spikes per neuron per step")

    import matplotlib

    if args.save:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sksnn.plotting import plot_simulation

    result = clf.simulate(X_test[:1], n_trials=1)
    fig = plot_simulation(
        result, inputs=X_test[:1], dt=clf.dt, class_names=clf.classes_, figsize=(7.0, 6.0)
    )
    predicted = clf.predict(X_test[:1])[0]
    fig.suptitle(f"Test sample of class {y_test[0]}, predicted {predicted}")
    if args.save:
        FIGURE.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(FIGURE, dpi=90)
        print(f"saved {FIGURE}")
    else:
        plt.show()


if __name__ == "__main__":
    main()
