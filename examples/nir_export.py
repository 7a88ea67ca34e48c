"""
Export to NIR and run the network in snnTorch
=============================================

Fit a deterministic spiking classifier on random-manifold spike data, export it as a NIR graph
(Neuromorphic Intermediate Representation) and import the graph in snnTorch, which integrates
it with forward Euler steps of 0.1 ms. ``to_nir(clf, dt=1e-4)`` chooses the graph's time
constants and gains so that those steps reproduce sksnn's update between resets.

snnTorch cannot read NIR's ``CubaLI`` readout, so the example imports the graph up to the
hidden layer and compares hidden spike trains. NIR's update order puts each spike two steps
earlier than sksnn's: shifted by those two steps, every hidden neuron's first spike agrees.
After a spike the trains part, because sksnn's reset to zero also discards the next step's
input and snnTorch keeps it. The raster shows both on one held-out sample.

Run from the repository root::

    python examples/nir_export.py          # fit, compare, show the figure
    python examples/nir_export.py --save   # ... and write docs/figures/nir_rasters.png

Needs ``pip install "sksnn[nir,plot]" snntorch``. About 5 s on two CPU cores.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from sksnn import SpikingClassifier
from sksnn.datasets import make_randman
from sksnn.io import from_nir, to_nir

# The documentation build sets SKSNN_DOCS_BUDGET=small to run a smaller version of this
# script; the numbers in the docstring are from the full-size run.
SMALL = os.environ.get("SKSNN_DOCS_BUDGET") == "small"

FIGURE = Path("docs") / "figures" / "nir_rasters.png"  # relative to the repository root
LAG = 2  # steps between NIR's spike and sksnn's, per hidden layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1] if __doc__ else None)
    parser.add_argument("--save", action="store_true", help=f"write the figure to {FIGURE}")
    args = parser.parse_args()

    import nir
    from snntorch.import_nir import import_from_nir

    X, y = make_randman(n_samples=800, n_classes=4, n_units=30, n_steps=60, random_state=0)
    X_train, y_train, X_test = X[:600], y[:600], X[600:]
    epochs = 5 if SMALL else 20
    clf = SpikingClassifier((48,), noise_temperature=0.0, max_iter=epochs, random_state=0)
    clf.fit(X_train, y_train)

    graph = to_nir(clf, dt=1e-4)
    print("graph:", " -> ".join(f"{a} ({type(graph.nodes[a]).__name__})" for a, _ in graph.edges))
    same = np.array_equal(from_nir(graph).predict_proba(X_test), clf.predict_proba(X_test))
    print(f"from_nir(to_nir(clf)) predicts as clf does: {same}")

    # snnTorch reads Input -> Affine -> CubaLIF; end the graph at the hidden spikes
    keys = ["input", "affine0", "lif0"]
    nodes = {k: graph.nodes[k] for k in keys}
    nodes["output"] = nir.Output(output_type=np.array([48]))
    hidden = nir.NIRGraph(nodes=nodes, edges=[*zip(keys, [*keys[1:], "output"], strict=True)])
    net = import_from_nir(hidden)
    x = torch.as_tensor(X_test, dtype=torch.float32)
    steps, state = [], None
    with torch.no_grad():
        for t in range(x.shape[1]):
            spikes, state = net(x[:, t], state)
            steps.append(spikes)
    theirs = torch.stack(steps, 1).numpy()
    ours = clf.simulate(X_test).spikes[0][0]

    def first_spike(s):
        return np.where(s.any(axis=1), s.argmax(axis=1), np.inf)

    n_steps = ours.shape[1]
    a = first_spike(ours)
    b = np.where(first_spike(theirs) + LAG < n_steps, first_spike(theirs) + LAG, np.inf)
    print(f"first spikes agreeing at a lag of {LAG} steps: {np.mean(a == b):.3f} of pairs")
    counts = ours[:, LAG:].sum(axis=1) == theirs[:, : n_steps - LAG].sum(axis=1)
    print(f"spike counts agreeing over the trial: {counts.mean():.3f} of pairs")

    import matplotlib

    if args.save:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    t_ours, n_ours = np.nonzero(ours[0])
    t_theirs, n_theirs = np.nonzero(theirs[0])
    ax.scatter(t_ours, n_ours, s=28, marker="o", facecolors="none", edgecolors="C0", label="sksnn")
    ax.scatter(t_theirs + LAG, n_theirs, s=8, color="C3", label=f"snnTorch, {LAG} steps later")
    ax.set(xlabel="time step", ylabel="hidden neuron")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    if args.save:
        FIGURE.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(FIGURE, dpi=90)
        print(f"saved {FIGURE}")
    else:
        plt.show()


if __name__ == "__main__":
    main()
