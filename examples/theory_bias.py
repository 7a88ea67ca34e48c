"""
Bias of surrogate gradients in two layers
=========================================

Bias of surrogate gradients in a two-layer stochastic network, against the exact gradient.

A network of two stochastic LIF layers (2 and 1 neurons, sigmoid escape noise, reset to zero)
and a leaky readout receives random input currents for 7 steps; the loss is the squared error
of the time-averaged readout. Its 21 hidden spike bits have 2**21 patterns, few enough to
enumerate: the expected loss and its gradient are exact, and so is the expected surrogate
gradient (the probability-weighted mean of the per-pattern surrogate gradients, i.e. what
training follows on average). The figure shows their cosine similarity and the relative error
over the hidden weights, as a function of the noise temperature T, for the matched surrogate
(beta = 1/T), the matched shape at a fixed beta = 10 (mismatched except at T = 0.1), and
SuperSpike at beta = 10, the usual choice in the literature.

Run from the repository root::

    python examples/theory_bias.py           # print the numbers, show the figure
    python examples/theory_bias.py --save    # ... and write docs/figures/theory_bias.png

Needs matplotlib (``pip install "sksnn[plot]"``). Measured 67 s on an otherwise idle
two-core machine (15 enumerations of 2**21 patterns; 3 to 7 minutes on a busy one).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from sksnn.noise import GeneratorNoise
from sksnn.surrogates import get_surrogate
from sksnn.theory import bias_study, make_small_network, with_lif

# The documentation build sets SKSNN_DOCS_BUDGET=small to run a smaller version of this
# script; the numbers in the docstring are from the full-size run.
SMALL = os.environ.get("SKSNN_DOCS_BUDGET") == "small"

FIGURE = Path("docs") / "figures" / "theory_bias.png"  # relative to the repository root
TEMPERATURES = (0.05, 0.1, 0.2, 0.3, 0.5)


def mean_spike_count(net, X, temperature: float, n_trials: int = 20000) -> float:
    """Monte-Carlo mean number of hidden spikes (cheaper than another enumeration)."""
    run = with_lif(net, temperature=temperature)
    with torch.no_grad():
        out = run(torch.as_tensor(X).repeat(n_trials, 1, 1), GeneratorNoise(0))
    return float(sum(s.sum() for s in out.spikes)) / n_trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1] if __doc__ else None)
    parser.add_argument("--save", action="store_true", help=f"write the figure to {FIGURE}")
    args = parser.parse_args()

    n_steps = 5 if SMALL else 7  # 3 hidden spike bits per step: 2**15 or 2**21 patterns
    # Weights drawn N(0, 8**2 / n_in), a draw (seed 4) in which all three neurons fire: about
    # 2, 2 and 0.8 spikes at T = 0.1.
    net = make_small_network(
        n_inputs=3, hidden_layer_sizes=(2, 1), n_steps=n_steps, weight_scale=8.0, random_state=4
    )
    X = np.random.default_rng(0).normal(0.8, 0.8, size=(1, 7, 3))[:, :n_steps]  # one input
    y = np.array([[1.0]])
    surrogates = {
        "matched, beta = 1/T": "matched",
        "matched shape, beta = 10": get_surrogate("matched", 10.0),
        "superspike, beta = 10": get_surrogate("superspike", 10.0),
    }
    start = time.perf_counter()
    rows = bias_study(
        net, X, y, "mse", temperatures=TEMPERATURES, surrogates=list(surrogates.values())
    )
    seconds = time.perf_counter() - start
    print(f"{len(rows)} exact comparisons over 2**{3 * n_steps} spike patterns in {seconds:.0f} s")
    labels = {repr(v) if not isinstance(v, str) else v: k for k, v in surrogates.items()}
    print(
        f"{'T':>5} {'E[spikes]':>9}  {'surrogate':28s} {'cosine':>7} {'rel.err':>8} "
        f"{'sign':>5}  cosine per layer"
    )
    spikes = {t: mean_spike_count(net, X, t) for t in TEMPERATURES}
    for r in rows:
        print(
            f"{r.temperature:5.2f} {spikes[r.temperature]:9.2f}  {labels[r.surrogate]:28s} "
            f"{r.cosine:7.3f} {r.relative_error:8.3f} {r.sign_agreement:5.2f}  "
            + ", ".join(f"{c:.3f}" for c in r.layer_cosine)
        )

    import matplotlib

    if args.save:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    for key, label in labels.items():
        sel = [r for r in rows if r.surrogate == key]
        t = [r.temperature for r in sel]
        ax1.plot(t, [r.cosine for r in sel], "o-", label=label)
        ax2.plot(t, [r.relative_error for r in sel], "o-", label=label)
    ax1.set_xlabel("noise temperature T")
    ax1.set_ylabel("cosine(expected surrogate, exact gradient)")
    ax1.set_title("two stochastic layers (2 + 1 LIF neurons)")
    ax2.set_xlabel("noise temperature T")
    ax2.set_ylabel("||surrogate - exact|| / ||exact||")
    ax2.set_yscale("log")
    ax2.legend(fontsize=8, frameon=False)
    if args.save:
        FIGURE.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(FIGURE, dpi=90)
        print(f"wrote {FIGURE}")
    else:
        plt.show()


if __name__ == "__main__":
    main()
