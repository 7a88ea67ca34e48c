"""
One neuron: exact and surrogate gradients
=========================================

One stochastic neuron: the matched surrogate gradient is the exact gradient, others are not.

A LIF neuron with sigmoid escape noise at temperature T = 0.1 receives a constant input
current through one weight w for 15 steps (the estimators' default time constants). Left: the
exact derivative of its expected spike count, d E[N] / dw (closed form, no reset), next to the
surrogate gradients backpropagation computes with several surrogates. The matched surrogate
(derivative of the escape noise at beta = 1/T) lies exactly on the exact curve; the same shape at
another temperature, or another shape, does not. Right: with reset to zero, the exact gradient
(enumeration of all 2**15 spike trains) and the expected matched-surrogate gradient part ways.

The script also prints, for a three-input neuron driven by random currents, the relative error
and cosine similarity of each surrogate against the exact gradient at several temperatures.

Run from the repository root::

    python examples/theory_single_neuron.py           # print the numbers, show the figure
    python examples/theory_single_neuron.py --save    # ... and write docs/figures/...png

Needs matplotlib (``pip install "sksnn[plot]"``). About half a minute on two CPU cores.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from sksnn.neuron import LIFParameters
from sksnn.surrogates import get_surrogate
from sksnn.theory import (
    cosine_similarity,
    neuron_expected_spikes,
    neuron_surrogate_gradient,
    relative_error,
    single_neuron_gradients,
)

FIGURE = Path("docs") / "figures" / "theory_single_neuron.png"  # relative to the repository root
T = 0.1
N_STEPS = 15


def surrogates(temperature: float) -> dict[str, object]:
    beta = 1.0 / temperature
    return {
        "matched (beta = 1/T)": get_surrogate("matched", beta),
        "matched shape, beta = 2/T": get_surrogate("matched", 2 * beta),
        "matched shape, beta = 1/(2T)": get_surrogate("matched", 0.5 * beta),
        "superspike, beta = 1/T": get_surrogate("superspike", beta),
        "triangle, beta = 1/T": get_surrogate("triangle", beta),
    }


def table() -> None:
    """Relative error and cosine of each surrogate, for a three-input neuron (no reset)."""
    x = np.random.default_rng(0).normal(0.5, 1.0, size=(20, 3))
    w = np.array([1.5, -0.5, 2.0])
    print("three-input neuron, 20 steps of random currents, no reset: relative error / cosine")
    for temperature in (0.05, 0.1, 0.2, 0.5):
        lif = LIFParameters(temperature=temperature, reset="none")
        exact = neuron_expected_spikes(w, x, lif).gradient
        cells = []
        for name, sur in surrogates(temperature).items():
            g = neuron_surrogate_gradient(w, x, replace(lif, surrogate=sur))
            cells.append(
                f"    {name:30s} {relative_error(g, exact):9.2e} / "
                f"{cosine_similarity(g, exact):.3f}"
            )
        print(f"  T = {temperature}")
        print("\n".join(cells))
    # (a cosine of nan: the surrogate is zero on every step, e.g. the triangle when U never
    # comes within 1/beta of the threshold)
    print("one neuron with reset to zero (enumerated), matched surrogate: relative error / cosine")
    for temperature in (0.05, 0.1, 0.2, 0.5):
        lif = LIFParameters(
            temperature=temperature, surrogate=get_surrogate("matched", 1 / temperature)
        )
        cmp = single_neuron_gradients(w, x[:12], lif)
        print(
            f"  T = {temperature}:  E[N] = {cmp.expected_loss:.3f},  "
            f"{cmp.relative_error():.2e} / {cmp.cosine():.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1] if __doc__ else None)
    parser.add_argument("--save", action="store_true", help=f"write the figure to {FIGURE}")
    args = parser.parse_args()

    table()
    weights = np.linspace(0.02, 0.6, 59)
    inputs = np.ones((N_STEPS, 1))
    lif = LIFParameters(temperature=T, reset="none")
    exact = np.array([neuron_expected_spikes([w], inputs, lif).gradient.sum() for w in weights])
    curves = {
        name: np.array(
            [
                neuron_surrogate_gradient([w], inputs, replace(lif, surrogate=sur)).sum()
                for w in weights
            ]
        )
        for name, sur in surrogates(T).items()
    }
    print(f"sweep of w, T = {T}, {N_STEPS} steps: max |surrogate - exact| / max |exact|")
    for name, c in curves.items():
        print(f"  {name:30s} {np.abs(c - exact).max() / np.abs(exact).max():.2e}")

    with_reset = replace(lif, reset="zero", surrogate=get_surrogate("matched", 1 / T))
    reset_cmp = [single_neuron_gradients([w], inputs, with_reset) for w in weights[::2]]
    reset_exact = np.array([c.exact["layers.0.weight"].item() for c in reset_cmp])
    reset_sur = np.array([c.surrogate["layers.0.weight"].item() for c in reset_cmp])
    print(
        "with reset to zero: relative error of the expected matched surrogate gradient over the "
        f"sweep {relative_error(reset_sur, reset_exact):.2f}"
    )

    import matplotlib

    if args.save:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    ax1.plot(weights, exact, color="black", lw=5, alpha=0.3, label="exact dE[N]/dw")
    styles = ["-", "--", "--", ":", "-."]
    for (name, c), ls in zip(curves.items(), styles, strict=True):
        ax1.plot(weights, c, ls, lw=1.5, label=name)
    ax1.set_xlabel("input weight w")
    ax1.set_ylabel("gradient of the expected spike count")
    ax1.set_title(f"no reset, sigmoid escape noise, T = {T}")
    ax1.legend(fontsize=7, frameon=False)
    ax2.plot(weights[::2], reset_exact, color="black", lw=5, alpha=0.3, label="exact (enumerated)")
    ax2.plot(weights[::2], reset_sur, "-", label="expected matched surrogate")
    ax2.set_xlabel("input weight w")
    ax2.set_title("reset to zero: history couples the steps")
    ax2.legend(fontsize=7, frameon=False)
    if args.save:
        FIGURE.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(FIGURE, dpi=90)
        print(f"wrote {FIGURE}")
    else:
        plt.show()


if __name__ == "__main__":
    main()
