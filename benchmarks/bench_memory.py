"""Memory against sequence length and prediction trials, and the readout's cost per length.

Each memory row runs in a fresh Python process and reports its peak resident set (the
interpreter with torch imported included; the ``baseline`` row is that alone), so rows compare
directly. Usage::

    python benchmarks/bench_memory.py               # all tables
    python benchmarks/bench_memory.py --quick       # shorter sequences, fewer repeats

Tables:

* long sequences: ``SpikingClassifier((4,), max_iter=1).fit`` on 4 samples of ``n_steps`` x 2
  spike inputs (5 % density): peak MB and fit seconds;
* prediction trials: ``predict_proba`` of a classifier (defaults, 2 epochs) on 256 x 10
  features with ``predict_trials`` 1, 10 and 100: peak MB, its ratio to 1 trial, seconds;
* readout: forward + backward of :func:`sksnn.readout.leaky_readout` on (n_steps, 200, 10), best
  of 3, for the windowed product against one Toeplitz product over all steps and a step-by-step
  recurrence (ratios in one run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

_HEADER = """
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np
from sksnn import SpikingClassifier
def report(**values):
    values["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(values))
"""

_BASELINE = "report()"

_LONG = """
X = (np.random.RandomState(0).rand(4, {n_steps}, 2) < 0.05).astype(np.float32)
start = time.perf_counter()
SpikingClassifier((4,), max_iter=1, random_state=0).fit(X, [0, 1, 0, 1])
report(seconds=time.perf_counter() - start)
"""

_TRIALS = """
rng = np.random.RandomState(0)
X, y = rng.randn(256, 10), np.arange(256) % 3
clf = SpikingClassifier(max_iter=2, random_state=0, predict_trials={trials}).fit(X, y)
start = time.perf_counter()
clf.predict_proba(X)
report(seconds=time.perf_counter() - start)
"""


def _child(body: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _HEADER + body], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def long_sequences(lengths: list[int]) -> str:
    rows = [["baseline (imports)", f"{_child(_BASELINE)['peak_mb']:.0f}", ""]]
    for n in lengths:
        r = _child(_LONG.format(n_steps=n))
        rows.append([n, f"{r['peak_mb']:.0f}", f"{r['seconds']:.2f}"])
    return _table(["n_steps", "peak MB", "fit s"], rows)


def trials(counts: list[int]) -> str:
    rows, first = [], None
    for k in counts:
        r = _child(_TRIALS.format(trials=k))
        first = first or r["peak_mb"]
        rows.append(
            [k, f"{r['peak_mb']:.0f}", f"{r['peak_mb'] / first:.2f}", f"{r['seconds']:.2f}"]
        )
    return _table(["predict_trials", "peak MB", "x 1 trial", "predict s"], rows)


def readout(lengths: list[int], repeats: int) -> str:
    import torch

    from sksnn.neuron import decay, psp_kernel
    from sksnn.readout import _toeplitz, leaky_readout

    a_syn, a_mem = decay(2e-3, 10e-3), decay(2e-3, 20e-3)

    def toeplitz(d):
        n = d.shape[0]
        kernel = _toeplitz(psp_kernel(a_syn, a_mem, n)).to(d)
        return (kernel @ d.reshape(n, -1)).reshape(d.shape)

    def recurrence(d):
        u = torch.zeros_like(d[0])
        i = torch.zeros_like(d[0])
        out = []
        for p in d.unbind(0):
            u, i = torch.lerp(i, u, a_mem), torch.add(p, i, alpha=a_syn)
            out.append(u)
        return torch.stack(out)

    def best(fn, n):
        d = torch.randn(n, 200, 10, requires_grad=True)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(d).sum().backward()
            times.append(time.perf_counter() - start)
        return min(times)

    rows = []
    for n in lengths:
        windowed = best(lambda d: leaky_readout(d, a_syn, a_mem), n)
        full = best(toeplitz, n) if n <= 5000 else float("nan")
        loop = best(recurrence, n)
        rows.append(
            [n, f"{windowed * 1e3:.1f}", f"{full / windowed:.2f}", f"{loop / windowed:.2f}"]
        )
    return _table(
        ["n_steps", "windowed ms", "one Toeplitz / windowed", "recurrence / windowed"], rows
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    lengths = [1000, 10000] if args.quick else [1000, 10000, 30000]
    print("## Long sequences (fit of 4 samples x n_steps x 2 inputs, hidden (4,))\n")
    print(long_sequences(lengths))
    print("\n## Prediction trials (predict_proba, 256 x 10 inputs, defaults)\n")
    print(trials([1, 10, 100]))
    print("\n## Readout forward + backward, (n_steps, 200, 10)\n")
    print(readout([50, 128, 1000, 5000], 2 if args.quick else 3))


if __name__ == "__main__":
    main()
