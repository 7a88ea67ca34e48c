"""
Surrogate gradients are not gradients
=====================================

Surrogate gradients are not gradients: integrals around closed loops in weight space.

Integrating a true gradient along a path gives the change of the function, so around a closed
loop it gives zero. Integrating a surrogate gradient does not: there is no function it is the
gradient of (Gygax & Zenke, 2025, section 3).

(a) The authors' five-weight network x -> g -> (h1, h2) -> y with step functions (x = 1),
    around a circle of radius 1.8 in a random plane through zero weights: the output along the
    loop, and the output "reconstructed" by integrating sigmoid' surrogate gradients
    (beta_sg = 1, 5, 20). They do not return to where they started.
(b) The same network with smooth sigmoids (beta = 5): the integral of its true gradient follows
    the output and closes; the integral of a surrogate (sigmoid', beta = 1) does not.
(c) A spiking network (input -> stochastic LIF -> stochastic LIF -> readout, T = 0.25),
    around a circle in the plane of its three hidden weights: the exact expected loss (all 2**12
    spike patterns), the integral of its exact gradient (closes) and of the expected matched
    surrogate gradient (does not). The loop integral of the surrogate gradient of the same
    network run deterministically (T = 0) is printed too.

The script also prints a sign flip: a point where a surrogate derivative and the true
derivative of the smooth network have opposite signs.

Run from the repository root::

    python examples/theory_loop.py           # print the numbers, show the figure
    python examples/theory_loop.py --save    # ... and write docs/figures/theory_loop.png

Needs matplotlib (``pip install "sksnn[plot]"``). About half a minute on two CPU cores.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from sksnn.surrogates import Sigmoid
from sksnn.theory import (
    SIGMOID_NET_WEIGHTS,
    enumerate_gradients,
    expected_loss,
    find_sign_flip,
    loop_integral,
    make_small_network,
    network_gradient_field,
    random_plane,
    sigmoid_net_gradient,
    sigmoid_net_output,
    with_lif,
)

FIGURE = Path("docs") / "figures" / "theory_loop.png"  # relative to the repository root
RADIUS = 1.8


def circle(center, d1, d2, radius, phi):
    return center + radius * (np.cos(phi)[:, None] * d1 + np.sin(phi)[:, None] * d2)


def sigmoid_panels(n_points: int = 4000):
    d1, d2 = random_plane(5, random_state=0)
    center = np.zeros(5)
    phi = 2 * math.pi * np.arange(n_points + 1) / n_points
    points = circle(center, d1, d2, RADIUS, phi)
    step = {"y": sigmoid_net_output(points).numpy(), "loops": {}}
    for beta_sg in (1.0, 5.0, 20.0):
        field = lambda p, b=beta_sg: sigmoid_net_gradient(p, 1.0, math.inf, Sigmoid(b))  # noqa: E731
        step["loops"][f"surrogate, beta_sg = {beta_sg:g}"] = loop_integral(
            field, center, d1, d2, RADIUS, n_points
        )
    smooth = {"y": sigmoid_net_output(points, forward_beta=5.0).numpy(), "loops": {}}
    smooth["loops"]["true gradient"] = loop_integral(
        lambda p: sigmoid_net_gradient(p, 1.0, 5.0), center, d1, d2, RADIUS, n_points
    )
    smooth["loops"]["surrogate, beta_sg = 1"] = loop_integral(
        lambda p: sigmoid_net_gradient(p, 1.0, 5.0, Sigmoid(1.0)), center, d1, d2, RADIUS, n_points
    )
    return phi, step, smooth


def spiking_panel(n_points: int = 48):
    net = make_small_network(
        n_inputs=2, hidden_layer_sizes=(1, 1), n_steps=6, temperature=0.25, random_state=0
    )
    with torch.no_grad():
        net.layers[0].weight.copy_(torch.tensor([[1.2, 0.8]]))
        net.layers[1].weight.copy_(torch.tensor([[3.0]]))
        net.readout.weight.fill_(2.0)
    X, y = np.array([[1.0, 0.5]]), np.array([[1.0]])
    params = ("layers.0.weight", "layers.1.weight")
    center = np.array([1.2, 0.8, 3.0])
    d1, d2 = random_plane(3, random_state=0)
    loops = loop_integral(
        network_gradient_field(net, X, y, params=params), center, d1, d2, 1.0, n_points
    )
    deterministic = loop_integral(
        network_gradient_field(net, X, y, params=params, temperature=0.0), center, d1, d2, 1.0, 512
    )
    phi = 2 * math.pi * np.arange(n_points + 1) / n_points
    values = []
    probe = with_lif(net)
    for point in circle(center, d1, d2, 1.0, phi):
        with torch.no_grad():
            probe.layers[0].weight.copy_(torch.as_tensor(point[:2]).reshape(1, 2))
            probe.layers[1].weight.copy_(torch.as_tensor(point[2:]).reshape(1, 1))
        values.append(expected_loss(probe, X, y))
        if not values[1:]:
            # The deterministic network's own loss at angle 0, where its integral starts.
            det_start = enumerate_gradients(probe, X, y, temperature=0.0).expected_loss
    return phi, np.array(values), loops, deterministic, det_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1] if __doc__ else None)
    parser.add_argument("--save", action="store_true", help=f"write the figure to {FIGURE}")
    args = parser.parse_args()

    phi, step, smooth = sigmoid_panels()
    print("five-weight network, circle of radius 1.8: loop integral (integral / total variation)")
    for title, panel in (("step forward", step), ("smooth forward, beta = 5", smooth)):
        for name, loop in panel["loops"].items():
            print(f"  {title:25s} {name:28s} {loop.integral:+.3e}  ({loop.relative:+.3f})")
    phi_s, values, loops, det, det_start = spiking_panel()
    print("spiking network (2 inputs -> 1 -> 1 stochastic LIF, T = 0.25), circle of radius 1:")
    for name, loop in (*loops.items(), ("surrogate, deterministic T = 0", det["surrogate"])):
        print(f"  {name:32s} {loop.integral:+.3e}  ({loop.relative:+.3f})")
    print(f"  (deterministic network's loss at angle 0: {det_start:.3f}; not drawn)")
    flip = find_sign_flip(Sigmoid(beta=1.0), forward_beta=10.0)
    i = flip.index
    print(
        "sign flip (smooth forward beta = 10, surrogate sigmoid' beta = 1) at weights "
        f"{np.round(flip.weights, 3).tolist()}: d y / d {SIGMOID_NET_WEIGHTS[i]} = "
        f"{flip.true_gradient[i]:+.4f} (true), {flip.surrogate_gradient[i]:+.4f} (surrogate)"
    )

    import matplotlib

    if args.save:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    ax = axes[0]
    ax.plot(phi, step["y"], color="black", lw=3, alpha=0.3, label="output y")
    for name, loop in step["loops"].items():
        ax.plot(phi, step["y"][0] + loop.cumulative, label=name)
    ax.set_title("(a) step network: integrated surrogate")
    ax2 = axes[1]
    ax2.plot(phi, smooth["y"], color="black", lw=5, alpha=0.3, label="output y")
    for name, loop in smooth["loops"].items():
        ax2.plot(phi, smooth["y"][0] + loop.cumulative, label=name)
    ax2.set_title("(b) smooth network (beta = 5)")
    ax3 = axes[2]
    ax3.plot(phi_s, values, color="black", lw=5, alpha=0.3, label="exact E[loss]")
    ax3.plot(phi_s, values[0] + loops["exact"].cumulative, label="exact gradient")
    ax3.plot(phi_s, values[0] + loops["surrogate"].cumulative, label="expected matched surrogate")
    ax3.set_title("(c) spiking network, T = 0.25")
    for a in axes:
        a.set_xlabel("angle along the loop (rad)")
        a.legend(fontsize=7, frameon=False)
    axes[0].set_ylabel("value, and integral of the field from angle 0")
    if args.save:
        FIGURE.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(FIGURE, dpi=80)
        print(f"wrote {FIGURE}")
    else:
        plt.show()


if __name__ == "__main__":
    main()
