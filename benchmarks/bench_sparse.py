"""Where the event-driven projection of binary input beats the dense matrix product.

For a spike raster ``X`` of ``rows = n_steps * n_samples`` rows (W1: 100 x 256) times a weight
``W`` (n_out x n_in), times forward + backward of

* dense: ``X @ W.T``, its weight gradient ``G.T @ X`` and, for hidden spikes (input that
  requires grad), the input gradient ``G @ W``;
* event-driven: finding the active entries (:func:`sksnn._sparse.binary_pattern`, with the
  0/1 check for network input), the ``embedding_bag`` forward, the transposed-pattern weight
  gradient and the same dense input gradient,

over densities and output widths, and prints the times and the density where the event-driven
path stops paying. ``SPARSE_MAX_DENSITY`` / ``SPARSE_MIN_WIDTH`` in ``sksnn/_sparse.py`` come
from this table. Threads: torch's default unless ``--threads``.

Usage::

    python benchmarks/bench_sparse.py [--threads N] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from sksnn._sparse import BinaryPattern, _active_numpy, _offsets, binary_linear

DENSITIES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)
WIDTHS = (20, 64, 128, 256, 512)
ROWS = 100 * 256


def _best(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _pattern(x: torch.Tensor, hidden: bool) -> BinaryPattern:
    # binary_pattern's work without its density decision (measured here at every density).
    rows, cols = _active_numpy(x, None, known_binary=hidden)
    counts = torch.bincount(rows, minlength=x.shape[0])
    return BinaryPattern(x.shape[0], x.shape[1], cols, rows, _offsets(counts))


def _case(n_in: int, n_out: int, density: float, hidden: bool, repeats: int) -> tuple:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(ROWS, n_in, generator=g) < density).float()
    w = torch.randn(n_out, n_in, generator=g).requires_grad_()
    grad = torch.randn(ROWS, n_out, generator=g)
    if hidden:
        x.requires_grad_()

    def dense():
        out = x @ w.T
        torch.autograd.grad(out, [x, w] if hidden else [w], grad)

    def sparse():
        pattern = _pattern(x.detach(), hidden)
        out = binary_linear(x, w, pattern)
        torch.autograd.grad(out, [x, w] if hidden else [w], grad)

    return _best(dense, repeats), _best(sparse, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.2f}; rows = {ROWS} (100 steps x 256 samples); "
        "times in ms (forward + backward), best of "
        f"{args.repeats}"
    )
    for n_in, hidden in ((700, False), (256, True)):
        kind = "hidden spikes (input grad too)" if hidden else "network input (0/1 checked)"
        print(f"\n{n_in} inputs, {kind}")
        header = "n_out | " + " | ".join(f"{d:g}" for d in DENSITIES) + " | cut-over"
        print(header)
        print("-" * len(header))
        for n_out in WIDTHS:
            cells, cut = [], None
            for density in DENSITIES:
                t_dense, t_sparse = _case(n_in, n_out, density, hidden, args.repeats)
                cells.append(f"{1e3 * t_sparse:.0f}/{1e3 * t_dense:.0f}")
                if t_sparse < t_dense:
                    cut = density
            cut_txt = "never" if cut is None else f"<= {cut:g}"
            print(f"{n_out:5d} | " + " | ".join(cells) + f" | {cut_txt}", flush=True)
    print("\ncells: event-driven / dense ms; cut-over: highest density where event-driven wins")


if __name__ == "__main__":
    main()
