"""NIR export and import (:func:`sksnn.io.to_nir`, :func:`sksnn.io.from_nir`).

The graph and its parameters are derived in ``docs/user_guide/nir.md``. In short, for a step
``dt`` at which an importer integrates the graph with forward Euler, and sksnn's per-step
decays ``lambda = exp(-dt_sksnn / tau)``:

- ``tau_nir = dt / (1 - lambda)``: one Euler step multiplies by ``lambda`` exactly;
- ``w_in = tau_syn_nir / dt`` and ``r = tau_mem_nir / dt``: one Euler step then adds the
  input current to ``I`` and ``I`` to ``v`` with gain 1 (the form of snnTorch's ``Synaptic``);
- the Affine weights and biases carry sksnn's ``(1 - lambda_mem)`` gain instead.

Between resets the Euler steps of the graph then reproduce sksnn's update, delayed by whole
steps (NIR updates ``I`` before ``v`` and ``v`` before the spike).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from itertools import pairwise
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._state import build_estimator, fitted_state, new_fitted_state
from ._version import __version__

__all__ = ["NIRGraphError", "from_nir", "to_nir"]

# Euler step for graphs that do not record one: the step snnTorch, SpikingJelly and Lava-DL use.
DEFAULT_IMPORT_DT = 1e-4
# Relative tolerance of parameters that must agree across neurons or layers (a graph may
# store them in float32).
_RTOL = 1e-5


class NIRGraphError(ValueError):
    """A NIR graph that sksnn cannot express, or a malformed one; the message names the node."""


def _nir():
    try:
        import nir
    except ImportError as exc:  # pragma: no cover - exercised without the extra
        raise ImportError(
            'NIR export and import need the "nir" package: pip install "sksnn[nir]".'
        ) from exc
    return nir


# ------------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------------
def to_nir(estimator, *, dt: float | None = None):
    """Export a fitted estimator's network as a NIR graph (Neuromorphic Intermediate
    Representation), for other frameworks and neuromorphic hardware.

    The graph is ``Input -> Affine -> CubaLIF`` per hidden layer (a subgraph of the CubaLIF
    and its recurrent Affine when ``recurrent=True``) ``-> Affine -> CubaLI -> Output``, every
    neuron parameter a per-neuron array. NIR has no stochastic threshold, so the graph is the
    deterministic network (``T -> 0``); exporting a network fitted at ``noise_temperature > 0``
    warns. The derivation of the parameters, the lag of two steps per layer between NIR's
    update order and sksnn's, and what differs after a reset are in the user guide (NIR
    export).

    Parameters
    ----------
    estimator : SpikingClassifier or SpikingRegressor
        Fitted, with ``reset="zero"`` (NIR's CubaLIF resets to a value).
    dt : float, optional
        The step (s) at which the importer integrates the graph with forward Euler: 1e-4 for
        snnTorch, SpikingJelly and Lava-DL; Norse takes it as an argument. None: the
        estimator's own ``dt``. The time constants, ``r``, ``w_in`` and the weights are
        chosen so that those Euler steps reproduce sksnn's update between resets.

    Returns
    -------
    nir.NIRGraph
        With metadata ``dt``, ``sksnn_version``, ``sksnn_dt``, ``escape_noise``,
        ``noise_temperature``, ``reset``, ``readout`` and ``sksnn`` (a JSON record of what
        :func:`from_nir` needs to rebuild the same estimator: its type, labels or target
        scaling, and input encoding).

    Raises
    ------
    ValueError
        For a reset other than ``"zero"`` or a ``dt`` that is not positive.

    Examples
    --------
    >>> import nir
    >>> from sksnn import SpikingClassifier
    >>> from sksnn.datasets import make_randman
    >>> from sksnn.io import from_nir, to_nir
    >>> X, y = make_randman(200, n_classes=2, n_units=10, n_steps=30, random_state=0)
    >>> clf = SpikingClassifier((16,), noise_temperature=0, max_iter=2, random_state=0)
    >>> clf = clf.fit(X, y)
    >>> graph = to_nir(clf, dt=1e-4)
    >>> sorted(graph.nodes)
    ['affine0', 'input', 'lif0', 'output', 'readout', 'readout_affine']
    >>> bool((from_nir(graph).predict_proba(X) == clf.predict_proba(X)).all())
    True
    """
    nir = _nir()
    check_is_fitted(estimator)
    state = fitted_state(estimator)
    lif = state["network"]["lif"]
    if estimator.reset != "zero":
        raise ValueError(
            f"reset={estimator.reset!r} cannot be expressed in NIR: its CubaLIF neuron resets "
            'the potential to v_reset, which is sksnn\'s reset="zero".'
        )
    dt = float(estimator.dt if dt is None else dt)
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive number of seconds, got {dt!r}.")
    if estimator.noise_temperature > 0:
        warnings.warn(
            f"NIR has no stochastic threshold: the graph is the deterministic (T -> 0) network, "
            f"not the network trained at noise_temperature={estimator.noise_temperature}.",
            UserWarning,
            stacklevel=3,
        )
    weights = state["weights"]
    sizes = tuple(state["network"]["hidden_layer_sizes"])
    gain = 1.0 - lif.alpha_mem

    def neurons(n: int, spiking: bool):
        ones = np.ones(n)
        params = dict(
            tau_syn=ones * dt / (1.0 - lif.alpha_syn),
            tau_mem=ones * dt / (1.0 - lif.alpha_mem),
            r=ones / (1.0 - lif.alpha_mem),
            v_leak=np.zeros(n),
            w_in=ones / (1.0 - lif.alpha_syn),
        )
        if spiking:
            return nir.CubaLIF(**params, v_threshold=ones * lif.threshold, v_reset=np.zeros(n))
        return params

    n_in = state["n_features_in_"]
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array([n_in]))}
    chain = ["input"]
    for i, n in enumerate(sizes):
        w = weights[f"layers.{i}.weight"].astype(np.float64)
        b = weights[f"layers.{i}.bias"].astype(np.float64)
        nodes[f"affine{i}"] = nir.Affine(weight=gain * w, bias=gain * b)
        cell = neurons(n, spiking=True)
        rec = weights.get(f"layers.{i}.recurrent_weight")
        if rec is not None:
            w_rec = gain * rec.astype(np.float64)
            cell = nir.NIRGraph(
                nodes={
                    "input": nir.Input(input_type=np.array([n])),
                    "lif": cell,
                    "w_rec": nir.Affine(weight=w_rec, bias=np.zeros(n)),
                    "output": nir.Output(output_type=np.array([n])),
                },
                edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
            )
        nodes[f"lif{i}"] = cell
        chain += [f"affine{i}", f"lif{i}"]
    n_out = state["n_outputs_"]
    w_out = weights["readout.weight"].astype(np.float64)
    nodes["readout_affine"] = nir.Affine(weight=gain * w_out, bias=np.zeros(n_out))
    readout = neurons(n_out, spiking=False)
    # sksnn adds the readout bias to the potential; v_leak is where an LI settles at rest
    readout["v_leak"] = weights["readout.bias"].astype(np.float64)
    nodes["readout"] = nir.CubaLI(**readout)
    nodes["output"] = nir.Output(output_type=np.array([n_out]))
    chain += ["readout_affine", "readout", "output"]
    metadata = {
        "dt": dt,
        "sksnn_version": __version__,
        "sksnn_dt": float(estimator.dt),
        "escape_noise": str(estimator.escape_noise),
        "noise_temperature": float(estimator.noise_temperature),
        "reset": estimator.reset,
        "readout": estimator._readout_mode(),
        "sksnn": json.dumps(_estimator_record(estimator, state)),
    }
    return nir.NIRGraph(nodes=nodes, edges=list(pairwise(chain)), metadata=metadata)


def _estimator_record(estimator, state: dict[str, Any]) -> dict[str, Any]:
    """What :func:`from_nir` needs beyond the graph to rebuild the same estimator."""
    record: dict[str, Any] = {
        "estimator": type(estimator).__name__,
        "input_ndim": state["_input_ndim"],
        "params": {
            k: v
            for k, v in estimator.get_params().items()
            if k in ("escape_noise", "encoding", "n_steps", "readout", "detach_reset")
        },
    }
    if "classes_" in state:
        classes = np.asarray(state["classes_"])
        if classes.dtype.kind in "biuU" or classes.dtype == object:
            try:
                record["classes"] = json.loads(json.dumps(classes.tolist()))
            except TypeError:
                pass
    else:
        record["targets"] = {
            "y_ndim": int(state["_y_ndim"]),
            "mean": np.asarray(state["_y_mean"], dtype=np.float64).tolist(),
            "scale": np.asarray(state["_y_scale"], dtype=np.float64).tolist(),
        }
    return record


# ------------------------------------------------------------------------------------------
# Import
# ------------------------------------------------------------------------------------------
def from_nir(graph_or_path, *, dt: float | None = None):
    """A fitted estimator from a NIR graph that sksnn can express.

    sksnn reads ``Input -> (Affine or Linear -> CubaLIF)`` per hidden layer ``-> Affine or
    Linear -> CubaLI -> Output``, where each CubaLIF may be a subgraph with one recurrent
    Affine, all layers share one pair of time constants and one threshold, hidden neurons
    have ``v_leak = 0`` and ``v_reset = 0``, and the readout has the hidden layers' time
    constants. Anything else raises :class:`NIRGraphError` naming the node. ``w_in`` and ``r``
    may take any value: they are folded into the weights.

    The estimator is the deterministic network (``noise_temperature=0``). Graphs written by
    :func:`to_nir` carry a record of the estimator (its type, class labels or target scaling,
    encoding), so ``from_nir(to_nir(est))`` predicts exactly as ``est`` does at ``T = 0``;
    other graphs give a :class:`~sksnn.SpikingClassifier` with labels ``0 .. n_outputs - 1``
    for 3-D spike input. The readout's ``v_leak`` becomes the readout bias.

    Parameters
    ----------
    graph_or_path : nir.NIRGraph, str or path-like
        A graph, or a file written by ``nir.write``.
    dt : float, optional
        The Euler step (s) at which to read the graph's time constants. None: the graph's
        ``dt`` metadata, else 1e-4 (the step of snnTorch, SpikingJelly and Lava-DL).

    Returns
    -------
    SpikingClassifier or SpikingRegressor
        Fitted, ready to ``predict``, ``simulate``, save, or train further.

    Raises
    ------
    NIRGraphError
        For a graph sksnn cannot express, or a malformed one.
    """
    nir = _nir()
    if isinstance(graph_or_path, str | os.PathLike):
        graph = nir.read(graph_or_path)
    else:
        graph = graph_or_path
    if not isinstance(graph, nir.NIRGraph):
        raise NIRGraphError(f"Expected a nir.NIRGraph or a path, got {type(graph).__name__}.")
    metadata = dict(graph.metadata or {})
    if dt is None:
        dt = float(metadata.get("dt", DEFAULT_IMPORT_DT))
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive number of seconds, got {dt!r}.")
    record = _record(metadata)
    n_inputs, layers, readout = _read_chain(nir, graph)
    return _build(n_inputs, layers, readout, dt, record)


def _record(metadata: dict[str, Any]) -> dict[str, Any]:
    raw = metadata.get("sksnn")
    if raw is None:
        return {}
    try:
        record = json.loads(str(raw))
    except ValueError as exc:
        raise NIRGraphError("The graph's 'sksnn' metadata is not valid JSON.") from exc
    if not isinstance(record, dict):
        raise NIRGraphError("The graph's 'sksnn' metadata must be a JSON object.")
    return record


def _read_chain(nir, graph) -> tuple[int, list[dict], dict]:
    """Follow the graph from its Input node: (Affine, CubaLIF)+ then Affine, CubaLI, Output."""
    nodes, edges = graph.nodes, [tuple(e) for e in graph.edges]
    for a, b in edges:
        for name in (a, b):
            if name not in nodes:
                raise NIRGraphError(f"Edge ({a!r}, {b!r}) names a node {name!r} not in the graph.")
    successors: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        successors[a].append(b)
    inputs = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise NIRGraphError(f"The graph must have exactly one Input node, found {inputs}.")
    order, current, seen = [], inputs[0], set()
    while True:
        if current in seen:
            raise NIRGraphError(f"Node {current!r} is reached twice: the graph is not a chain.")
        seen.add(current)
        order.append(current)
        nxt = successors[current]
        if isinstance(nodes[current], nir.Output):
            break
        if len(nxt) != 1:
            raise NIRGraphError(
                f"Node {current!r} has {len(nxt)} successors; sksnn reads a chain of layers."
            )
        current = nxt[0]
    unused = sorted(set(nodes) - seen)
    if unused:
        raise NIRGraphError(f"Nodes {unused} are not on the path from Input to Output.")
    body = order[1:-1]
    if len(body) < 4 or len(body) % 2:
        raise NIRGraphError(
            "sksnn reads Input -> (Affine -> CubaLIF) per hidden layer -> Affine -> CubaLI -> "
            f"Output; this graph's path is {order}."
        )
    layers = []
    for k in range(0, len(body) - 2, 2):
        affine, cell = body[k], body[k + 1]
        w, b = _affine(nir, affine, nodes[affine])
        lif, rec = _cell(nir, cell, nodes[cell])
        layers.append({"name": cell, "weight": w, "bias": b, "lif": lif, "recurrent": rec})
    w_out, _ = _affine(nir, body[-2], nodes[body[-2]])
    if not isinstance(nodes[body[-1]], nir.CubaLI):
        kind = type(nodes[body[-1]]).__name__
        raise NIRGraphError(f"Node {body[-1]!r} is a {kind}; sksnn's readout is a CubaLI.")
    readout = {"name": body[-1], "weight": w_out, "node": nodes[body[-1]]}
    sizes = [np.asarray(v).ravel() for v in dict(nodes[inputs[0]].input_type).values()]
    if len(sizes) != 1 or sizes[0].size != 1 or int(sizes[0][0]) < 1:
        raise NIRGraphError(f"Input node {inputs[0]!r} must have one flat input of n units.")
    return int(sizes[0][0]), layers, readout


def _affine(nir, name: str, node) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(node, nir.Affine):
        w, b = np.asarray(node.weight, dtype=np.float64), np.asarray(node.bias, dtype=np.float64)
    elif isinstance(node, nir.Linear):
        w = np.asarray(node.weight, dtype=np.float64)
        b = np.zeros(w.shape[0])
    else:
        raise NIRGraphError(
            f"Node {name!r} is a {type(node).__name__}; sksnn expects an Affine or Linear here."
        )
    if w.ndim != 2 or b.shape != (w.shape[0],) or not np.isfinite(w).all():
        raise NIRGraphError(f"Node {name!r} has a malformed weight or bias.")
    return w, b


def _cell(nir, name: str, node) -> tuple[Any, np.ndarray | None]:
    """The CubaLIF of a hidden layer and its recurrent weight (None without recurrence)."""
    if isinstance(node, nir.CubaLIF):
        return node, None
    if not isinstance(node, nir.NIRGraph):
        raise NIRGraphError(
            f"Node {name!r} is a {type(node).__name__}; sksnn's hidden neurons are CubaLIF "
            "(or a subgraph of a CubaLIF with a recurrent Affine)."
        )
    cells = [k for k, v in node.nodes.items() if isinstance(v, nir.CubaLIF)]
    weights = [k for k, v in node.nodes.items() if isinstance(v, nir.Affine | nir.Linear)]
    others = [
        k
        for k, v in node.nodes.items()
        if not isinstance(v, nir.CubaLIF | nir.Affine | nir.Linear | nir.Input | nir.Output)
    ]
    if len(cells) != 1 or len(weights) != 1 or others or len(node.nodes) != 4:
        raise NIRGraphError(
            f"Subgraph {name!r} must hold Input, one CubaLIF, one recurrent Affine and Output."
        )
    cell, w_rec = cells[0], weights[0]
    edges = {tuple(e) for e in node.edges}
    if (cell, w_rec) not in edges or (w_rec, cell) not in edges:
        raise NIRGraphError(f"Subgraph {name!r}: {w_rec!r} must connect {cell!r} to itself.")
    w, b = _affine(nir, f"{name}.{w_rec}", node.nodes[w_rec])
    n = np.asarray(node.nodes[cell].v_threshold).size
    if w.shape != (n, n) or np.any(b != 0):
        raise NIRGraphError(
            f"Node {name}.{w_rec!r} must be a square weight without bias on {n} neurons."
        )
    return node.nodes[cell], w


def _uniform(name: str, field: str, values) -> float:
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0 or not np.isfinite(values).all():
        raise NIRGraphError(f"Node {name!r}: {field} must be finite numbers.")
    if not np.allclose(values, values[0], rtol=_RTOL, atol=0.0):
        raise NIRGraphError(
            f"Node {name!r}: sksnn has one {field} for all neurons; the graph's vary "
            f"({values.min():g} to {values.max():g})."
        )
    return float(values[0])


def _neuron_constants(name: str, node, dt: float, spiking: bool) -> dict[str, Any]:
    """Per-step decays and the input gain of a CubaLIF or CubaLI node under Euler steps."""
    tau_syn = _uniform(name, "tau_syn", node.tau_syn)
    tau_mem = _uniform(name, "tau_mem", node.tau_mem)
    if not (tau_syn > dt and tau_mem > dt):
        raise NIRGraphError(
            f"Node {name!r}: tau_syn and tau_mem must exceed dt={dt:g} for Euler steps to decay "
            f"(got {tau_syn:g} and {tau_mem:g})."
        )
    r = np.asarray(node.r, dtype=np.float64).ravel()
    w_in = np.asarray(node.w_in, dtype=np.float64).ravel()
    n = np.asarray(node.tau_mem).size
    if r.size not in (1, n) or w_in.size not in (1, n) or not np.isfinite(r * w_in).all():
        raise NIRGraphError(f"Node {name!r}: r and w_in must be finite, one per neuron.")
    # Euler: I += dt/tau_syn (w_in x - I), v += dt/tau_mem (v_leak - v + r I). sksnn's current
    # I_sksnn = r I_nir then follows its own update with input weights w_in dt/tau_syn r W.
    gain = np.broadcast_to(w_in * (dt / tau_syn) * r, (n,))
    constants = {
        "alpha_syn": 1.0 - dt / tau_syn,
        "alpha_mem": 1.0 - dt / tau_mem,
        "gain": gain,
    }
    if spiking:
        if np.any(np.asarray(node.v_leak) != 0):
            raise NIRGraphError(f"Node {name!r}: sksnn's hidden neurons have v_leak = 0.")
        if np.any(np.asarray(node.v_reset) != 0):
            raise NIRGraphError(f"Node {name!r}: sksnn resets to 0 (v_reset must be 0).")
        constants["threshold"] = _uniform(name, "v_threshold", node.v_threshold)
        if constants["threshold"] <= 0:
            raise NIRGraphError(f"Node {name!r}: v_threshold must be positive.")
    return constants


def _build(n_inputs: int, layers: list[dict], readout: dict, dt: float, record: dict[str, Any]):
    from .estimators import SpikingClassifier, SpikingRegressor

    first = None
    weights: dict[str, np.ndarray] = {}
    sizes = []
    n_prev = n_inputs
    for i, layer in enumerate(layers):
        c = _neuron_constants(layer["name"], layer["lif"], dt, spiking=True)
        if first is None:
            first = c
        else:
            for key in ("alpha_syn", "alpha_mem", "threshold"):
                if not np.isclose(c[key], first[key], rtol=_RTOL, atol=0.0):
                    raise NIRGraphError(
                        f"Node {layer['name']!r}: sksnn has one {key} for all layers; this "
                        "layer's differs from the first."
                    )
        w = layer["weight"]
        n = np.asarray(layer["lif"].v_threshold).size
        if w.shape != (n, n_prev):
            raise NIRGraphError(
                f"The weight before {layer['name']!r} has shape {w.shape}, expected {(n, n_prev)}."
            )
        if c["gain"].size != n:
            raise NIRGraphError(f"Node {layer['name']!r}: its parameters disagree in size.")
        scale = c["gain"][:, None]
        weights[f"layers.{i}.weight"] = scale * w
        if layer["recurrent"] is not None:
            weights[f"layers.{i}.recurrent_weight"] = scale * layer["recurrent"]
        weights[f"layers.{i}.bias"] = scale[:, 0] * layer["bias"]
        sizes.append(n)
        n_prev = n
    recurrent = {layer["recurrent"] is not None for layer in layers}
    if len(recurrent) != 1:
        raise NIRGraphError("sksnn's hidden layers are either all recurrent or none.")
    node = readout["node"]
    c = _neuron_constants(readout["name"], node, dt, spiking=False)
    for key in ("alpha_syn", "alpha_mem"):
        if not np.isclose(c[key], first[key], rtol=_RTOL, atol=0.0):
            raise NIRGraphError(
                f"Node {readout['name']!r}: sksnn's readout has the hidden neurons' time "
                "constants."
            )
    n_out = np.asarray(node.tau_mem).size
    if readout["weight"].shape != (n_out, n_prev):
        raise NIRGraphError(
            f"The weight before {readout['name']!r} has shape {readout['weight'].shape}, "
            f"expected {(n_out, n_prev)}."
        )
    weights["readout.weight"] = c["gain"][:, None] * readout["weight"]
    weights["readout.bias"] = np.broadcast_to(
        np.asarray(node.v_leak, dtype=np.float64), (n_out,)
    ).copy()

    kind = record.get("estimator", "SpikingClassifier")
    if kind not in ("SpikingClassifier", "SpikingRegressor"):
        raise NIRGraphError(f"Unknown estimator {kind!r} in the graph's sksnn metadata.")
    cls = SpikingClassifier if kind == "SpikingClassifier" else SpikingRegressor
    params = dict(record.get("params", {}))
    params.update(
        hidden_layer_sizes=tuple(sizes),
        recurrent=recurrent.pop(),
        noise_temperature=0.0,
        dt=dt,
        tau_syn=-dt / math.log(first["alpha_syn"]),
        tau_mem=-dt / math.log(first["alpha_mem"]),
        threshold=first["threshold"],
        reset="zero",
    )
    estimator = cls(**params)
    if cls is SpikingClassifier:
        classes = record.get("classes", list(range(n_out)))
        if len(classes) != n_out:
            raise NIRGraphError(f"The metadata names {len(classes)} classes for {n_out} outputs.")
        targets = {"classes_": np.asarray(classes)}
    else:
        t = record.get("targets", {"y_ndim": 1 if n_out == 1 else 2})
        targets = {
            "_y_ndim": t["y_ndim"],
            "_y_mean": np.asarray(t.get("mean", np.zeros(n_out)), dtype=np.float64),
            "_y_scale": np.asarray(t.get("scale", np.ones(n_out)), dtype=np.float64),
        }
    state = new_fitted_state(
        estimator,
        weights,
        n_inputs=n_inputs,
        hidden_layer_sizes=tuple(sizes),
        n_outputs=n_out,
        input_ndim=int(record.get("input_ndim", 3)),
        targets=targets,
    )
    return build_estimator(cls, estimator.get_params(), state)
