"""Time a training step and an epoch of ``fit``: fused, reference loop, dense bound, snnTorch.

Workloads (issue 3):

* W1: 3-D spikes, 700 inputs at 2 % density, 100 steps, hidden (256,), 20 classes, batch 256.
* W2: as W1 with hidden (256, 256) and ``recurrent=True``.
* W3: sklearn's digits (1797 x 64, standardised), current encoding, 50 steps, hidden (128,),
  batch 200.

Variants:

* ``compiled``: ``engine="compiled"`` (the fused engine's node with numba-compiled time loops),
  run as ``fit`` runs it, like ``fused``.
* ``fused``: ``engine="fused"`` (fused LIF kernel, event-driven projections where they pay),
  run as ``fit`` runs it: the active entries of 3-D spike input are indexed once per fit
  (``sksnn._trainer.input_events``, outside the timed step) and gathered per batch (inside).
* ``fused-scan``: the same, but each step scans its dense spike batch for the active entries
  (what a bare ``SpikingNetwork`` call on a dense tensor does). Same as ``fused`` for W3.
* ``reference``: ``engine="reference"`` (plain autograd loop, dense projections).
* ``dense``: the dense matrix products of the same network alone, forward and backward (input
  projection, hidden-to-hidden, recurrent products as one batched product, readout), with
  autograd but no time loop: the bound a time-stepped simulator is measured against.
* ``snntorch``: the same network written the tutorial way with snnTorch (``Synaptic`` /
  ``RSynaptic`` neurons, one ``nn.Linear`` call per layer and step), when it is installed.

A step is forward + backward + Adam on one batch (package defaults: stochastic neurons at
T = 0.1 with the matched sigmoid surrogate; snnTorch is deterministic). An epoch is
``SpikingClassifier(max_iter=1).fit`` on the workload's data (for snnTorch the same batches
through its step; for the dense bound the step time times the number of batches). Every
(workload, variant) runs in its own subprocess so that peak memories do not mix: "step peak"
is the growth of the resident set over the steps (``VmHWM`` after resetting it, minus the RSS
before), "process peak" the whole process's high-water mark.

Threads: torch's default (all cores; 2 on the reference machine) unless ``--threads``.
``--device cuda`` runs everything on a GPU (memory then from ``torch.cuda.max_memory_allocated``);
it is written for that but was not run on one here.

Usage::

    python benchmarks/bench_engine.py                    # all workloads, writes results.md
    python benchmarks/bench_engine.py --workloads W1 --repeats 5 --no-epoch
    python benchmarks/bench_engine.py --profile W1       # per-op breakdown of one step
    python benchmarks/bench_engine.py --predict          # predict memory, 1e5 vs 1e6 rows
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TEMPERATURE = 0.1  # set from --temperature in the child processes
VARIANTS = ("compiled", "fused", "fused-scan", "reference", "dense", "snntorch")
#: sksnn engines timed in ``fit`` and ``predict``
ENGINE_VARIANTS = ("compiled", "fused", "reference")


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str  # "spikes" (3-D input) or "digits" (2-D, current encoding)
    n_inputs: int
    hidden: tuple[int, ...]
    n_classes: int
    n_steps: int
    batch: int
    recurrent: bool = False
    density: float = 0.02
    n_epoch: int = 1024  # samples in the epoch data set ("digits": all 1797)


WORKLOADS = {
    "W1": Workload("W1", "spikes", 700, (256,), 20, 100, 256),
    "W2": Workload("W2", "spikes", 700, (256, 256), 20, 100, 256, recurrent=True),
    "W3": Workload("W3", "digits", 64, (128,), 10, 50, 200),
}


# ------------------------------------------------------------------------------------------
# Memory and timing helpers (child side)
# ------------------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux >= 4.0); False if unavailable."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _Memory:
    """Step memory: RSS growth above the level before the measured code, and process peak."""

    def __init__(self, device: str) -> None:
        self.device = device

    def start(self) -> None:
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base_cuda = torch.cuda.memory_allocated()
        self.base = _status_kb("VmRSS")
        self.exact = _reset_peak()

    def stop(self) -> dict:
        import torch

        out = {
            "step_peak_mb": (_status_kb("VmHWM") - self.base) / 1024 if self.exact else None,
            "process_peak_mb": _status_kb("VmHWM") / 1024,
        }
        if self.device == "cuda":
            peak = torch.cuda.max_memory_allocated() - self.base_cuda
            out["cuda_step_peak_mb"] = peak / 2**20
        return out


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------
# Data and models (child side)
# ------------------------------------------------------------------------------------------
def _data(w: Workload, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if w.kind == "digits":
        from sklearn.datasets import load_digits
        from sklearn.preprocessing import StandardScaler

        X, y = load_digits(return_X_y=True)
        X = StandardScaler().fit_transform(X).astype(np.float32)
        return X[:n], y[:n]
    X = np.empty((n, w.n_steps, w.n_inputs), dtype=np.float32)
    for k in range(0, n, 64):  # in slices, so generating does not set the memory peak
        X[k : k + 64] = rng.random((min(64, n - k), w.n_steps, w.n_inputs)) < w.density
    return X, rng.integers(0, w.n_classes, n)


def _lif_parameters(temperature: float = 0.1):
    from sksnn.neuron import LIFParameters
    from sksnn.surrogates import SigmoidNoise, get_surrogate

    # The estimators' defaults: sigmoid escape noise, matched surrogate with beta = 1 / T
    # (beta = 10 at T = 0).
    beta = 1.0 / temperature if temperature > 0 else 10.0
    return LIFParameters(
        temperature=temperature,
        escape_noise=SigmoidNoise(),
        surrogate=get_surrogate("matched", beta, "sigmoid"),
    )


def _sksnn_step(w: Workload, engine: str, x, y, device: str, events: bool = False):
    import torch
    import torch.nn.functional as F

    from sksnn._trainer import input_events
    from sksnn.losses import reduce_readout
    from sksnn.network import SpikingNetwork
    from sksnn.noise import GeneratorNoise

    net = SpikingNetwork(
        w.n_inputs,
        w.hidden,
        w.n_classes,
        _lif_parameters(TEMPERATURE),
        recurrent=w.recurrent,
        encoding="current",
        n_steps=w.n_steps,
        engine=engine,
    )
    net.initialize(x.cpu(), torch.Generator().manual_seed(1), GeneratorNoise(2))
    net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    noise = GeneratorNoise(3)
    index = input_events(x, net, x.device) if events else None
    samples = np.arange(x.shape[0])

    def step():
        out = net(x if index is None else index.batch(samples), noise)
        loss = F.cross_entropy(reduce_readout(out.output, "max"), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _dense_step(w: Workload, x, device: str):
    """The network's dense matrix products alone (forward and backward), no time loop."""
    import torch

    g = torch.Generator().manual_seed(0)
    n_rows = w.batch * w.n_steps

    def param(*shape):
        return torch.randn(*shape, generator=g).div_(shape[1] ** 0.5).to(device).requires_grad_()

    sizes = [w.n_inputs, *w.hidden]
    weights = [param(b, a) for a, b in itertools.pairwise(sizes)]
    recurrent = [param(h, h) for h in w.hidden] if w.recurrent else []
    readout = param(w.n_classes, sizes[-1])
    # Hidden spikes at 5 % density stand in for the layers' outputs (dense products do not
    # care about the values); they require grad like real spikes do.
    spikes = [
        (torch.rand(n_rows, h, generator=g) < 0.05).float().to(device).requires_grad_()
        for h in w.hidden
    ]
    x2 = x.reshape(-1, w.n_inputs) if w.kind == "spikes" else x  # current: projected once
    params = [*weights, *recurrent, readout]
    opt = torch.optim.Adam(params, lr=2e-3)

    def step():
        outs = [x2 @ weights[0].T]
        for k in range(1, len(weights)):
            outs.append(spikes[k - 1] @ weights[k].T)
        for k, v in enumerate(recurrent):
            outs.append(spikes[k] @ v.T)
        outs.append(spikes[-1] @ readout.T)
        grads = [torch.ones_like(o) for o in outs]
        opt.zero_grad(set_to_none=True)
        torch.autograd.backward(outs, grads)
        opt.step()
        for s in spikes:
            s.grad = None

    return step


def _snntorch_step(w: Workload, x, y, device: str):
    import snntorch as snn
    import torch
    import torch.nn.functional as F
    from snntorch import surrogate
    from torch import nn

    lif = _lif_parameters()
    alpha, beta = lif.alpha_syn, lif.alpha_mem
    grad = surrogate.fast_sigmoid()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            sizes = [w.n_inputs, *w.hidden]
            self.fcs = nn.ModuleList(
                nn.Linear(a, b, bias=False) for a, b in itertools.pairwise(sizes)
            )
            if w.recurrent:
                self.lifs = nn.ModuleList(
                    snn.RSynaptic(
                        alpha, beta, linear_features=h, spike_grad=grad, reset_mechanism="zero"
                    )
                    for h in w.hidden
                )
            else:
                self.lifs = nn.ModuleList(
                    snn.Synaptic(alpha, beta, spike_grad=grad, reset_mechanism="zero")
                    for _ in w.hidden
                )
            self.fc_out = nn.Linear(sizes[-1], w.n_classes)
            self.out = snn.Synaptic(alpha, beta, spike_grad=grad, reset_mechanism="none")

        def forward(self, x):  # x: (n_samples, n_steps, n_inputs) or (n_samples, n_features)
            # reset_mem() gives zero states: (syn, mem), or (spk, syn, mem) for RSynaptic
            states = [lif.reset_mem() for lif in self.lifs]
            syn_o, mem_o = self.out.reset_mem()
            record = []
            for t in range(w.n_steps):
                h = x[:, t] if x.ndim == 3 else x
                for k, (fc, lif) in enumerate(zip(self.fcs, self.lifs, strict=True)):
                    spk, *state = lif(fc(h), *states[k])
                    states[k] = (spk, *state) if w.recurrent else tuple(state)
                    h = spk
                _, syn_o, mem_o = self.out(self.fc_out(h), syn_o, mem_o)
                record.append(mem_o)
            return torch.stack(record)

    net = Net().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)

    def step():
        mem = net(x)
        loss = F.cross_entropy(mem.max(dim=0).values, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


# ------------------------------------------------------------------------------------------
# Child entry points
# ------------------------------------------------------------------------------------------
def _child_step(w: Workload, variant: str, device: str, repeats: int) -> dict:
    import torch

    X, y = _data(w, w.batch)
    x = torch.from_numpy(X).to(device)
    yt = torch.as_tensor(y).to(device)
    if variant in ENGINE_VARIANTS:
        step = _sksnn_step(w, variant, x, yt, device, events=variant != "reference")
    elif variant == "fused-scan":
        step = _sksnn_step(w, "fused", x, yt, device)
    elif variant == "dense":
        step = _dense_step(w, x, device)
    else:
        step = _snntorch_step(w, x, yt, device)
    for _ in range(2):  # warm-up: optimiser state, thread pools, lazy initialisation
        step()
    mem = _Memory(device)
    mem.start()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"step_min": min(times), "step_median": float(np.median(times)), **mem.stop()}


def _child_epoch(w: Workload, variant: str, device: str) -> dict:
    import torch
    from sklearn.base import clone

    from sksnn import SpikingClassifier

    n = 1797 if w.kind == "digits" else w.n_epoch
    X, y = _data(w, n, seed=1)
    mem = _Memory(device)
    if variant in ENGINE_VARIANTS:
        clf = SpikingClassifier(
            hidden_layer_sizes=w.hidden,
            n_steps=w.n_steps,
            recurrent=w.recurrent,
            batch_size=w.batch,
            max_iter=1,
            noise_temperature=TEMPERATURE,
            engine=variant,
            device=device,
            random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Warm-up on one batch: the first Adam imports torch._dynamo (seconds), thread
            # pools start, kernels initialise; none of that is the epoch's cost.
            clone(clf).fit(X[: w.batch], y[: w.batch])
            mem.start()
            t0 = time.perf_counter()
            clf.fit(X, y)
        _sync(device)
        return {"epoch": time.perf_counter() - t0, **mem.stop()}
    # snnTorch: the same batches through its step (data gathered per batch like fit does).
    Xt = torch.from_numpy(X)
    yt = torch.as_tensor(y)
    holder = {}

    def make(xb, yb):
        if "step" not in holder:
            holder["x"], holder["y"] = xb, yb
            holder["step"] = _snntorch_step(w, holder["x"], holder["y"], device)
        holder["x"].copy_(xb)
        holder["y"].copy_(yb)
        return holder["step"]

    order = np.random.default_rng(0).permutation(n)
    make(Xt[: w.batch].to(device), yt[: w.batch].to(device))()  # warm-up, as above
    mem.start()
    t0 = time.perf_counter()
    for b in range(0, n - w.batch + 1, w.batch):  # full batches (snnTorch state is per batch)
        idx = torch.as_tensor(order[b : b + w.batch])
        make(Xt[idx].to(device), yt[idx].to(device))()
    _sync(device)
    return {"epoch": time.perf_counter() - t0, **mem.stop()}


def _child_predict(n_rows: int) -> dict:
    """Fit W3 for one epoch, then predict on ``n_rows`` rows (digits tiled); memory growth."""
    from sksnn import SpikingClassifier

    w = WORKLOADS["W3"]
    X, y = _data(w, 1797)
    clf = SpikingClassifier(hidden_layer_sizes=w.hidden, max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    big = np.resize(X, (n_rows, X.shape[1]))  # the input itself: n_rows * 256 bytes
    mem = _Memory("cpu")
    mem.start()
    t0 = time.perf_counter()
    pred = clf.predict(big)
    seconds = time.perf_counter() - t0
    out = mem.stop()
    return {
        "rows": n_rows,
        "seconds": seconds,
        "input_mb": big.nbytes / 2**20,
        "n_pred": int(pred.shape[0]),
        **out,
    }


THROUGHPUT_ROWS = 20_000
# "fused-torch-noise": the fused engine with the inference noise computed by torch ops, as
# on a GPU or where numba does not load
THROUGHPUT_VARIANTS = ("compiled", "fused", "fused-torch-noise", "mlp")


def _child_throughput(variant: str, device: str) -> dict:
    """W3's model fitted for one epoch (the MLP: MLPClassifier(128) for 20), then ``predict``
    on THROUGHPUT_ROWS rows of digits: samples per second, best of three calls."""
    from sklearn.neural_network import MLPClassifier

    from sksnn import SpikingClassifier

    w = WORKLOADS["W3"]
    X, y = _data(w, 1797)
    if variant == "fused-torch-noise":
        import sksnn.noise

        sksnn.noise._compiled_available = lambda: False
        variant = "fused"
    if variant == "mlp":
        clf = MLPClassifier(hidden_layer_sizes=w.hidden, max_iter=20, random_state=0)
    else:
        clf = SpikingClassifier(
            hidden_layer_sizes=w.hidden,
            n_steps=w.n_steps,
            max_iter=1,
            engine=variant,
            device=device,
            random_state=0,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    big = np.resize(X, (THROUGHPUT_ROWS, X.shape[1]))
    clf.predict(big[:1000])  # warm-up
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        clf.predict(big)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return {"samples_per_s": THROUGHPUT_ROWS / best}


def _child(args) -> None:
    import torch

    global TEMPERATURE
    TEMPERATURE = args.temperature
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child == "predict":
        result = _child_predict(int(args.rows))
    elif args.child == "throughput":
        result = _child_throughput(args.variant, args.device)
    else:
        w = WORKLOADS[args.workload]
        if args.child == "step":
            result = _child_step(w, args.variant, args.device, args.repeats)
        else:
            result = _child_epoch(w, args.variant, args.device)
    result["threads"] = torch.get_num_threads()
    print("RESULT " + json.dumps(result))


# ------------------------------------------------------------------------------------------
# Parent: run children, print and write tables
# ------------------------------------------------------------------------------------------
def _run_child(argv: list[str], env: dict | None = None) -> dict | None:
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    sys.stderr.write(f"child {' '.join(argv)} failed:\n{proc.stderr[-3000:]}\n")
    return None


def _snntorch_available() -> bool:
    try:
        import snntorch  # noqa: F401
    except ImportError:
        return False
    return True


def _fmt(v, spec=".3f"):
    return "n/a" if v is None else format(v, spec)


def _environment(args) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    threads = args.threads or torch.get_num_threads()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"torch {torch.__version__}, device {args.device}, {threads} threads, CPU: {cpu} "
        f"({os.cpu_count()} logical cores), load average at start {load:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=7, help="timed steps per run")
    parser.add_argument("--rounds", type=int, default=3, help="process runs per variant")
    parser.add_argument("--temperature", type=float, default=0.1, help="neuron temperature T")
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--no-epoch", action="store_true")
    parser.add_argument("--output", default=str(HERE / "results.md"))
    parser.add_argument(
        "--append", action="store_true", help="add the table to --output instead of replacing it"
    )
    parser.add_argument("--profile", metavar="WORKLOAD")
    parser.add_argument("--predict", action="store_true")
    # child-process arguments
    parser.add_argument(
        "--child", choices=["step", "epoch", "predict", "throughput"], help=argparse.SUPPRESS
    )
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--rows", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    if args.profile:
        _profile(WORKLOADS[args.profile], args)
        return
    if args.predict:
        _predict_table(args)
        return
    _benchmark(args)


# Malloc setting of the memory runs: every allocation above 16 KiB gets its own mapping and
# goes back to the system when freed, so the resident set's high-water mark follows the live
# tensors. With glibc's defaults freed memory stays in the heap (and in per-thread arenas) in
# ways that depend on allocation order, and step-to-step RSS growth says little.
_LIVE_MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "16384"}


def _benchmark(args) -> None:
    env = _environment(args)
    print(env)
    variants = [v for v in args.variants if v != "snntorch" or _snntorch_available()]
    common = ["--device", args.device, "--threads", str(args.threads)]
    common += ["--temperature", str(args.temperature)]
    rows = []
    for name in args.workloads:
        w = WORKLOADS[name]
        steps: dict[str, dict | None] = {v: None for v in variants}
        for _ in range(args.rounds):  # interleaved, so a busy spell hits all variants alike
            for v in variants:
                argv = ["--child", "step", "--workload", name, "--variant", v]
                r = _run_child([*argv, "--repeats", str(args.repeats), *common])
                if r is not None and (steps[v] is None or r["step_min"] < steps[v]["step_min"]):
                    steps[v] = r
        live, epochs = {}, {}
        for v in variants:
            argv = ["--child", "step", "--workload", name, "--variant", v, "--repeats", "1"]
            live[v] = _run_child([*argv, *common], env=_LIVE_MEMORY_ENV)
            if not args.no_epoch and v not in ("dense", "fused-scan") and steps[v] is not None:
                epochs[v] = _run_child(
                    ["--child", "epoch", "--workload", name, "--variant", v, *common]
                )
        dense, ref = steps.get("dense"), steps.get("reference")
        n_epoch = 1797 if w.kind == "digits" else w.n_epoch
        for v in variants:
            step, epoch = steps[v], epochs.get(v)
            if step is None:
                continue
            ratio = step["step_min"] / dense["step_min"] if dense else None
            speedup = ref["step_min"] / step["step_min"] if ref else None
            if v == "dense":
                epoch_txt = f"({_fmt(step['step_min'] * n_epoch / w.batch, '.2f')})"
            else:
                epoch_txt = _fmt(epoch["epoch"], ".2f") if epoch else "n/a"
            live_mb = None
            if live.get(v):  # on a GPU, the device memory the step allocated
                live_mb = live[v].get("cuda_step_peak_mb", live[v]["step_peak_mb"])
            rows.append(
                [
                    name,
                    v,
                    _fmt(step["step_min"] * 1e3, ".1f"),
                    _fmt(step["step_median"] * 1e3, ".1f"),
                    _fmt(ratio, ".2f"),
                    _fmt(speedup, ".2f"),
                    _fmt(live_mb, ".0f"),
                    _fmt(step["process_peak_mb"], ".0f"),
                    epoch_txt,
                    _fmt(epoch["process_peak_mb"], ".0f") if epoch else "n/a",
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
    header = [
        "workload",
        "variant",
        "step ms (best)",
        "step ms (median)",
        "x dense",
        "speed-up vs reference",
        "step memory MB",
        "process peak MB",
        "epoch s",
        "fit peak MB",
    ]
    table = _markdown(header, rows)
    print()
    print(table)
    throughput = "" if args.no_epoch else _throughput_table(common)
    end_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = (
        "# Engine benchmark\n\n"
        f"Written by `benchmarks/bench_engine.py` ({time.strftime('%Y-%m-%d')}). {env}; "
        f"at the end {end_load:.2f}. Neuron temperature T = {args.temperature}.\n\n"
        "* step ms: one training step (forward + backward + Adam) on one batch; best and median "
        f"of {args.repeats} steps after two warm-up steps, in the best of {args.rounds} "
        "interleaved process runs per variant.\n"
        "* x dense: best step time over that of the network's dense matrix products alone "
        "(forward and backward, plus Adam): the bound a time-stepped simulator is held to.\n"
        "* step memory MB: peak growth of the resident set during one step after the warm-up, "
        "measured in a separate run with `MALLOC_MMAP_THRESHOLD_=16384` so that freed tensors "
        "leave the resident set at once (it then follows the live tensors; with glibc's "
        "defaults freed memory is kept in the heap in allocation-order-dependent ways).\n"
        "* process peak MB: the timing run's whole-process high-water mark with default malloc "
        "(interpreter, torch and the batch included).\n"
        "* epoch s / fit peak MB: `SpikingClassifier(max_iter=1).fit` on the workload's data "
        "(W1/W2: 1024 samples, W3: 1797); snnTorch: the same full batches through its step; "
        "dense: step time x batches, in parentheses.\n\n"
        "W1: 3-D spikes, 700 inputs at 2 % density, 100 steps, hidden (256,), 20 classes, "
        "batch 256. W2: W1 with hidden (256, 256), recurrent. W3: digits, current encoding, "
        "50 steps, hidden (128,), batch 200. sksnn variants use the package defaults otherwise "
        "(sigmoid escape noise, matched surrogate); snnTorch (Synaptic/RSynaptic, fast-sigmoid "
        "surrogate, one nn.Linear call per layer and step, as in its tutorials) is "
        "deterministic.\n\n" + table + "\n" + throughput
    )
    out = Path(args.output)
    if args.append and out.exists():
        text = (
            out.read_text()
            + f"\n## T = {args.temperature}, {', '.join(args.workloads)}\n\n{env}; at the end "
            + f"{end_load:.2f}.\n\n{table}\n"
        )
    out.write_text(text)
    print(f"\nwrote {args.output}")


def _throughput_table(common: list[str]) -> str:
    """Predict throughput of W3's model per engine and of MLPClassifier (best of 3 rounds)."""
    rates: dict[str, float] = {}
    for _ in range(3):
        for v in THROUGHPUT_VARIANTS:
            r = _run_child(["--child", "throughput", "--variant", v, *common])
            if r is not None:
                rates[v] = max(rates.get(v, 0.0), r["samples_per_s"])
    mlp = rates.get("mlp")
    rows = [
        [v, _fmt(rate, ",.0f"), _fmt(rate / mlp if mlp else None, ".3f")]
        for v, rate in rates.items()
    ]
    table = _markdown(["predict", "samples / s", "vs MLPClassifier"], rows)
    print(table)
    return (
        f"\nPredict throughput: W3's model after one epoch of `fit` (MLPClassifier(128): 20 "
        f"epochs), `predict` on {THROUGHPUT_ROWS:,} rows of digits (50 steps for sksnn), "
        "best of 3 calls in the best of 3 process runs.\n\n" + table + "\n"
    )


def _markdown(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _predict_table(args) -> None:
    print(_environment(args))
    rows = []
    for n in (100_000, 1_000_000):
        r = _run_child(["--child", "predict", "--rows", str(n), "--threads", str(args.threads)])
        if r is None:
            continue
        rows.append(
            [
                f"{n:.0e}",
                _fmt(r["seconds"], ".1f"),
                _fmt(r["input_mb"], ".0f"),
                _fmt(r["step_peak_mb"], ".0f"),
                _fmt(r["process_peak_mb"], ".0f"),
            ]
        )
        print(" | ".join(rows[-1]), flush=True)
    print(_markdown(["rows", "predict s", "input MB", "RSS growth MB", "process peak MB"], rows))


def _profile(w: Workload, args) -> None:
    """Per-op breakdown (torch.profiler) of one training step, per sksnn engine."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    global TEMPERATURE
    TEMPERATURE = args.temperature
    if args.threads:
        torch.set_num_threads(args.threads)
    print(_environment(args))
    X, y = _data(w, w.batch)
    x = torch.from_numpy(X).to(args.device)
    yt = torch.as_tensor(y).to(args.device)
    activities = [ProfilerActivity.CPU]
    if args.device == "cuda":
        activities.append(ProfilerActivity.CUDA)
    for engine in ("compiled", "fused", "reference"):
        step = _sksnn_step(w, engine, x, yt, args.device, events=engine != "reference")
        for _ in range(2):
            step()
        with profile(activities=activities) as prof:
            step()
        total = sum(e.self_cpu_time_total for e in prof.key_averages()) / 1e6
        print(f"\n{w.name} {engine}: one step, {total:.3f} s of self CPU time")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))


if __name__ == "__main__":
    main()
