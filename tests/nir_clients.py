"""Run sksnn's NIR graphs in other frameworks' importers and compare their spikes.

Used by tests/test_nir.py and benchmarks/bench_nir.py. The clients import the graph up to a
hidden layer (snnTorch cannot read the CubaLI readout, Norse drops it), and each is stepped
through the input one time step at a time, from a fresh state.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import torch

# NIR's Euler update takes a step's input into the current, the potential and the spike in
# the same step; sksnn's spike at step n reads the potential that step n - 2's input reached.
LAG_PER_LAYER = 2


def hidden_subgraph(graph, layer: int):
    """The graph from its Input to hidden layer ``layer``'s spikes."""
    import nir

    keys = ["input"]
    for i in range(layer + 1):
        keys += [f"affine{i}", f"lif{i}"]
    nodes = {k: graph.nodes[k] for k in keys}
    cell = nodes[f"lif{layer}"]
    n = (cell.nodes["lif"] if isinstance(cell, nir.NIRGraph) else cell).v_threshold.size
    nodes["output"] = nir.Output(output_type=np.array([n]))
    keys.append("output")
    return nir.NIRGraph(nodes=nodes, edges=list(pairwise(keys)))


def _step_through(module, X: np.ndarray) -> np.ndarray:
    x = torch.as_tensor(X, dtype=torch.float32)
    out, state = [], None
    with torch.no_grad():
        for t in range(x.shape[1]):
            spikes, state = module(x[:, t], state)
            out.append(spikes)
    return torch.stack(out, 1).numpy()


def run_snntorch(graph, X: np.ndarray) -> np.ndarray:
    """Spikes (samples, steps, units) of snnTorch's import of ``graph`` on ``X``."""
    from snntorch.import_nir import import_from_nir

    return _step_through(import_from_nir(graph), X)


def run_norse(graph, X: np.ndarray, dt: float) -> np.ndarray:
    """Spikes (samples, steps, units) of Norse's import of ``graph``, integrated at ``dt``."""
    import norse.torch

    return _step_through(norse.torch.from_nir(graph, dt=dt), X)


def first_spikes(S: np.ndarray) -> np.ndarray:
    """Step of each (sample, unit)'s first spike; inf where it never fires."""
    first = S.argmax(axis=1).astype(float)
    first[~S.any(axis=1)] = np.inf
    return first


def first_spike_agreement(reference: np.ndarray, client: np.ndarray, lag: int) -> float:
    """Share of (sample, unit) pairs whose first spike in ``reference`` is ``lag`` steps after
    the client's, counting pairs that fire in neither (within the reference's steps)."""
    n_steps = reference.shape[1]
    a, b = first_spikes(reference), first_spikes(client) + lag
    a[a >= n_steps], b[b >= n_steps] = np.inf, np.inf
    return float(np.mean(a == b))


def count_agreement(reference: np.ndarray, client: np.ndarray, lag: int) -> float:
    """Share of (sample, unit) pairs with the same number of spikes over the trial, the
    client's spike trains shifted by ``lag`` steps."""
    n_steps = reference.shape[1]
    a = reference[:, lag:].sum(axis=1)
    b = client[:, : n_steps - lag].sum(axis=1)
    return float(np.mean(a == b))
