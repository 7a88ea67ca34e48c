"""How faithfully other frameworks' NIR importers run a network exported by sksnn.

Fits deterministic SpikingClassifiers on random-manifold spike data, exports them with
``sksnn.io.to_nir``, imports the graph up to each hidden layer in snnTorch, Norse and (when
installed) Rockpool, runs them on held-out samples and compares their hidden spikes with
``simulate``. Prints one markdown table: per client and layer, the share of (sample, neuron)
pairs whose first spike matches at the documented lag (2 steps per layer), and the share
whose spike count over the trial matches (shifted by the same lag)::

    python benchmarks/bench_nir.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from nir_clients import (
    LAG_PER_LAYER,
    count_agreement,
    first_spike_agreement,
    hidden_subgraph,
    run_norse,
    run_snntorch,
)

from sksnn import SpikingClassifier
from sksnn.datasets import make_randman
from sksnn.io import to_nir

CONFIGS = {
    "1 layer (64)": dict(hidden_layer_sizes=(64,)),
    "2 layers (64, 32)": dict(hidden_layer_sizes=(64, 32)),
    "recurrent (64)": dict(hidden_layer_sizes=(64,), recurrent=True),
}


def run_rockpool(graph, X):
    import torch
    from rockpool.nn.modules import from_nir

    out = from_nir(graph)(torch.as_tensor(X, dtype=torch.float32))
    return (out[0] if isinstance(out, tuple) else out).detach().numpy()


CLIENTS = {
    "snnTorch (dt 1e-4)": (1e-4, run_snntorch),
    "Norse (dt 1e-3)": (1e-3, lambda g, X: run_norse(g, X, dt=1e-3)),
    "Rockpool": (1e-4, run_rockpool),
}


def main() -> None:
    warnings.simplefilter("ignore")
    X, y = make_randman(1000, n_classes=5, n_units=40, n_steps=80, random_state=0)
    X_tr, y_tr, X_te = X[:700], y[:700], X[700:]
    print("| network | client | layer | lag (steps) | first spike agrees | count agrees |")
    print("|---|---|---|---|---|---|")
    for name, params in CONFIGS.items():
        est = SpikingClassifier(**params, noise_temperature=0.0, max_iter=20, random_state=0).fit(
            X_tr, y_tr
        )
        reference = est.simulate(X_te).spikes
        for client, (dt, run) in CLIENTS.items():
            graph = to_nir(est, dt=dt)
            for layer in range(len(reference)):
                lag = LAG_PER_LAYER * (layer + 1)
                try:
                    spikes = run(hidden_subgraph(graph, layer), X_te)
                except Exception as exc:  # a client that cannot read the graph
                    reason = f"not read: {type(exc).__name__}: {str(exc).splitlines()[0][:60]}"
                    print(f"| {name} | {client} | {layer} | | {reason} | |", flush=True)
                    continue
                ref = reference[layer][0]
                first = first_spike_agreement(ref, spikes, lag)
                count = count_agreement(ref, spikes, lag)
                print(
                    f"| {name} | {client} | {layer} | {lag} | {first:.3f} | {count:.3f} |",
                    flush=True,
                )
    rates = np.mean([r[0].mean() for r in reference])
    print(f"\nheld-out samples {len(X_te)}; mean hidden rate of the last network {rates:.3f}")


if __name__ == "__main__":
    main()
