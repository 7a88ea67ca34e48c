"""Event-driven products with binary (spike) matrices.

A spike raster ``X`` (rows: (step, sample) pairs, columns: input units) is mostly zeros. Its
projection ``X @ W.T`` then only needs, for every row, the sum of the weight columns of its
active inputs: an ``embedding_bag`` (sum mode) over the active indices of each row (the CSR
pattern of ``X``). The weight gradient ``G.T @ X`` sums, for every input unit, the gradient
rows where it was active: a sparse (CSR) matrix product with ``X.T``. Both cost
``O(nnz * width)`` instead of ``O(rows * inputs * width)``; the input gradient ``G @ W`` of
hidden spikes stays dense, since the surrogate gradient reaches every neuron.

Whether that pays depends on the density, measured per call (:func:`prefer_sparse`). On the
CPU the index extraction goes through NumPy, whose comparison, count and ``flatnonzero`` on a
bool mask are several times faster than ``torch.nonzero``; other devices use torch ops.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ._parallel import map_threads

__all__ = [
    "SPARSE_MAX_DENSITY",
    "SPARSE_MIN_WIDTH",
    "BinaryPattern",
    "SampleEvents",
    "StepPattern",
    "binary_linear",
    "binary_matmul_t",
    "binary_pattern",
    "prefer_sparse",
    "range_positions",
    "sampled_rows",
]

# Cut-over between the event-driven and the dense product (benchmarks/bench_sparse.py; the
# table is in benchmarks/results.md). The event-driven cost grows with the active entries
# times the width, the dense one with rows x inputs x width, and the scan for active entries
# is a fixed cost: the break-even density is about 3.5 % at 256 outputs or more and falls
# roughly in proportion to the width below that; at 20 outputs the dense product always wins.
SPARSE_MAX_DENSITY = 0.035
SPARSE_MIN_WIDTH = 64
# Elements per chunk when scanning for active entries: the 1 MiB bool mask stays in the L2
# cache (larger chunks scan slower; benchmarks/results.md).
_SCAN_ELEMENTS = 1 << 20
# Rows sampled to estimate the density before scanning everything: a dense input is then
# recognised for the price of a small fraction of a pass.
_DENSITY_SAMPLE_ROWS = 1024


@dataclass
class BinaryPattern:
    """The active entries of a 0/1 matrix of shape ``(n_rows, n_cols)``, in CSR form.

    Attributes
    ----------
    n_rows, n_cols : int
    cols : Tensor of int32, shape (nnz,)
        Column of each active entry, row by row.
    rows : Tensor of int32, shape (nnz,)
        Row of each active entry (same order).
    row_offsets : Tensor of int32, shape (n_rows + 1,)
        Entries of row ``r`` are ``cols[row_offsets[r]:row_offsets[r + 1]]``.
    """

    n_rows: int
    n_cols: int
    cols: Tensor
    rows: Tensor
    row_offsets: Tensor

    @property
    def nnz(self) -> int:
        return int(self.cols.shape[0])

    def matmul(self, weight_t: Tensor) -> Tensor:
        """``X @ weight_t`` for ``weight_t`` of shape ``(n_cols, width)``."""
        return F.embedding_bag(
            self.cols,
            weight_t,
            self.row_offsets,
            mode="sum",
            include_last_offset=True,
        )

    def t_matmul(self, other: Tensor) -> Tensor:
        """``X.T @ other`` for ``other`` of shape ``(n_rows, width)``."""
        return _transposed_product(self.rows, self.cols, self.n_rows, self.n_cols, other)


def _transposed_product(
    rows: Tensor, cols: Tensor, n_rows: int, n_cols: int, other: Tensor
) -> Tensor:
    """``X.T @ other`` for the binary ``X`` (``n_rows`` x ``n_cols``) active at ``(rows, cols)``.

    ``X.T`` as a CSR matrix (entries sorted stably by column) times a dense matrix, which torch
    hands to MKL's sparse routines on the CPU: faster to build and multiply than a COO product,
    and it uses more than one thread where the COO product does not (benchmarks/results.md).
    """
    if cols.device.type == "cpu" and n_cols <= 1 << 16:
        order = torch.from_numpy(np.argsort(cols.numpy().astype(np.uint16), kind="stable"))
    else:
        order = torch.sort(cols, stable=True).indices
    crow = _offsets(torch.bincount(cols, minlength=n_cols))
    xt = _csr(crow, rows[order].to(crow.dtype), other.new_ones(rows.shape[0]), (n_cols, n_rows))
    return xt @ other


class SampleEvents:
    """The active entries of a whole 3-D binary data set, gathered per batch instead of scanned.

    Training visits every sample once per epoch; scanning a batch's dense spike array for its
    active entries costs as much as reading it, and regrouping them by step costs more;
    gathering a batch's entries from this index, already grouped by step, is several times
    cheaper (benchmarks/results.md).

    Parameters
    ----------
    pattern : BinaryPattern
        Pattern of the data ``(n_samples, n_steps, n_in)`` seen as a 2-D matrix
        ``(n_samples * n_steps, n_in)`` (rows ``sample * n_steps + step``).
    n_samples, n_steps : int
    """

    def __init__(self, pattern: BinaryPattern, n_samples: int, n_steps: int) -> None:
        if pattern.n_rows != n_samples * n_steps:
            raise ValueError("pattern does not have n_samples * n_steps rows")
        self.n_steps, self.n_cols = n_steps, pattern.n_cols
        self.cols = pattern.cols.numpy()
        self.row_offsets = pattern.row_offsets.numpy().astype(np.int64)

    @classmethod
    def from_arrays(
        cls, cols: np.ndarray, row_offsets: np.ndarray, n_steps: int, n_cols: int
    ) -> SampleEvents:
        """From the columns (int32) of the active entries, sorted by row ``sample * n_steps +
        step`` then column, and the int64 start of every row (and the end)."""
        events = cls.__new__(cls)
        events.n_steps, events.n_cols = n_steps, n_cols
        events.cols, events.row_offsets = cols, row_offsets
        return events

    def batch(self, samples: np.ndarray) -> StepPattern:
        """The regrouped pattern of ``X[samples]`` for the fused layer."""
        samples = np.asarray(samples, dtype=np.int64)
        n_batch = len(samples)
        # the data set's rows of the batch, in the batch's time-major order (step, sample)
        rows = (samples[None, :] * self.n_steps + np.arange(self.n_steps)[:, None]).reshape(-1)
        starts = self.row_offsets[rows]
        counts = self.row_offsets[rows + 1] - starts
        position, ends = range_positions(starts, counts)
        offsets = np.zeros(len(rows) + 1, dtype=np.int32)
        offsets[1:] = ends
        return StepPattern(
            keys=torch.from_numpy(np.repeat(np.arange(len(rows), dtype=np.int32), counts)),
            cols=torch.from_numpy(self.cols[position]),
            offsets=torch.from_numpy(offsets),
            n_samples=n_batch,
            n_cols=self.n_cols,
        )


class StepPattern:
    """A binary layer input ``(n_steps, n_samples, n_in)`` grouped by step, for block products.

    The fused layer (:mod:`sksnn._fused`) asks for the input currents of a block of steps
    (:meth:`matmul`) and returns their gradient for the weight gradient (:meth:`t_matmul`), so
    that neither the currents nor their gradient ever exist for all steps at once. Entries are
    sorted by time-major row ``step * n_samples + sample``: each block is one contiguous range.
    Made by :meth:`from_pattern` or :meth:`SampleEvents.batch`.

    Parameters
    ----------
    keys, cols : Tensor of int32, shape (nnz,)
        Time-major row and column of each active entry, sorted by row.
    offsets : Tensor of int32, shape (n_steps * n_samples + 1,)
        Entries of row ``r`` are ``keys/cols[offsets[r]:offsets[r + 1]]``.
    n_samples, n_cols : int
    """

    def __init__(
        self, keys: Tensor, cols: Tensor, offsets: Tensor, n_samples: int, n_cols: int
    ) -> None:
        self.keys, self.cols, self.offsets = keys, cols, offsets
        self.n_samples, self.n_cols = n_samples, n_cols

    @property
    def n_rows(self) -> int:
        return int(self.offsets.shape[0]) - 1

    @property
    def nnz(self) -> int:
        return int(self.cols.shape[0])

    @classmethod
    def from_pattern(
        cls, pattern: BinaryPattern, n_steps: int, n_samples: int, batch_major: bool
    ) -> StepPattern:
        """Regroup the pattern of a layer input seen as a 2-D matrix in its memory order:
        rows ``step * n_samples + sample`` (time-major) or ``sample * n_steps + step``
        (``batch_major``)."""
        rows, cols = pattern.rows, pattern.cols
        if batch_major:
            key = (rows % n_steps) * n_samples + rows // n_steps
            if key.device.type == "cpu":
                # NumPy sorts 16-bit keys stably by radix sort, in linear time.
                k = key.numpy()
                wide = n_steps * n_samples > 1 << 16
                order = np.argsort(k if wide else k.astype(np.uint16), kind="stable")
                order = torch.from_numpy(order)
            else:
                order = torch.sort(key, stable=True).indices
            key, cols = key[order], cols[order]
        else:
            key = rows  # already time-major, in order
        offsets = _offsets(torch.bincount(key, minlength=n_steps * n_samples))
        return cls(key, cols, offsets, n_samples, pattern.n_cols)

    def _range(self, start: int, stop: int) -> tuple[int, int, int, int]:
        k0, k1 = start * self.n_samples, stop * self.n_samples
        return k0, k1, int(self.offsets[k0]), int(self.offsets[k1])

    def matmul(self, weight_t: Tensor, start: int, stop: int) -> Tensor:
        """Currents of steps ``start:stop``, shape ``((stop - start) * n_samples, width)``."""
        k0, k1, e0, e1 = self._range(start, stop)
        return F.embedding_bag(
            self.cols[e0:e1],
            weight_t,
            self.offsets[k0 : k1 + 1] - e0,
            mode="sum",
            include_last_offset=True,
        )

    def t_matmul(self, grad: Tensor, start: int, stop: int) -> Tensor:
        """``X_block.T @ grad`` for the rows of :meth:`matmul`; shape ``(n_in, width)``."""
        k0, k1, e0, e1 = self._range(start, stop)
        keys = self.keys[e0:e1] - k0
        return _transposed_product(keys, self.cols[e0:e1], k1 - k0, self.n_cols, grad)


_csr_noticed = False
_csr_lock = threading.Lock()


def _csr(crow: Tensor, col: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    """A sparse CSR tensor, valid by construction (invariants not checked).

    torch warns once per process that CSR support is in beta; that notice is about torch, not
    about anything the user did, so the first construction silences it.
    """
    global _csr_noticed
    if _csr_noticed:
        return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Sparse CSR tensor support", category=UserWarning
        )
        xt = torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)
    _csr_noticed = True
    return xt


def range_positions(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The positions ``starts[i] + k`` for ``k < counts[i]``, range after range, and the
    cumulative counts (the end of each range in the result)."""
    ends = np.cumsum(counts)
    total = int(ends[-1]) if len(ends) else 0
    # every gathered entry: its range's start + its rank within the range
    return np.arange(total) + np.repeat(starts - ends + counts, counts), ends


def _offsets(counts: Tensor) -> Tensor:
    """Start of each row (and the end), int32 like the indices: ``embedding_bag`` takes
    either, and half the size matters for long patterns."""
    offsets = counts.new_zeros(counts.shape[0] + 1, dtype=torch.int32)
    torch.cumsum(counts, 0, out=offsets[1:])
    return offsets


def prefer_sparse(density: float, width: int) -> bool:
    """Whether the event-driven product beats the dense one at this density and output width.

    ``SPARSE_MAX_DENSITY`` at 256 outputs or more, proportionally less for narrower outputs,
    never below ``SPARSE_MIN_WIDTH`` outputs (see the measurements above).
    """
    if width < SPARSE_MIN_WIDTH:
        return False
    return density <= SPARSE_MAX_DENSITY * min(1.0, width / 256)


def _sampled_density(x: Tensor) -> float:
    """Density of ``x`` estimated from 16 runs of 64 consecutive rows spread over it.

    Consecutive rows, not a fixed stride: in a batch-major spike raster a stride can line up
    with the number of steps and sample one step of every sample only.
    """
    runs = sampled_rows(x.shape[0])
    sample = x if runs is None else torch.cat([x[start:stop] for start, stop in runs])
    return torch.count_nonzero(sample).item() / max(1, sample.numel())


def sampled_rows(n_rows: int) -> list[tuple[int, int]] | None:
    """The row ranges :func:`binary_pattern` estimates the density from; None: all rows."""
    if n_rows <= _DENSITY_SAMPLE_ROWS:
        return None
    run = _DENSITY_SAMPLE_ROWS // 16
    starts = torch.linspace(0, n_rows - run, 16).long().tolist()
    return [(start, start + run) for start in starts]


def binary_pattern(
    x: Tensor, width: int | None, known_binary: bool = False
) -> BinaryPattern | None:
    """The CSR pattern of a 2-D tensor ``x`` if the sparse product should be used, else None.

    Parameters
    ----------
    x : Tensor, shape (n_rows, n_cols)
    width : int or None
        Output width of the product (decides the cut-over, see :func:`prefer_sparse`); None
        for the pattern whatever the density.
    known_binary : bool, default=False
        ``x`` holds only 0 and 1 (spikes). Otherwise that is checked on the active entries, and
        a real-valued input gets None (dense product).
    """
    if x.numel() == 0:
        return None
    if width is not None and not prefer_sparse(0.0, width):
        return None  # too narrow an output for the sparse product at any density
    # A sampled density up to twice the cut-over still gets the exact count below rather than
    # being rejected on a noisy estimate.
    if width is not None and not prefer_sparse(_sampled_density(x) / 2, width):
        return None
    find = _active_numpy if x.device.type == "cpu" else _active_torch
    found = find(x.detach(), width, known_binary)
    if found is None:
        return None
    rows, cols = found
    counts = torch.bincount(rows, minlength=x.shape[0])
    return BinaryPattern(x.shape[0], x.shape[1], cols, rows, _offsets(counts))


def _active_numpy(
    x: Tensor, width: int | None, known_binary: bool
) -> tuple[Tensor, Tensor] | None:
    """Rows and columns (int32) of the non-zero entries (CPU), or None if not binary, or too
    dense for an output of ``width`` (no density test when ``width`` is None).

    Scanned in chunks of rows, so that the bool mask stays small, on all of torch's threads
    (NumPy releases the GIL while it compares and searches).
    """
    n_rows, n_cols = x.shape
    values = x.numpy()
    chunk = max(1, _SCAN_ELEMENTS // max(1, n_cols))
    starts = range(0, n_rows, chunk)

    def scan(k: int) -> np.ndarray | None:
        start = starts[k]
        block = values[start : start + chunk].reshape(-1)
        flat = np.flatnonzero(block != 0)
        if not known_binary and not bool(np.all(block[flat] == 1)):
            return None
        return flat + start * n_cols

    # In rounds of one chunk per thread, so that a real-valued input, or one whose non-zeros
    # found so far already exceed what the whole may hold, is given up on after a round
    # rather than after a whole pass (and a pile of indices).
    found, nnz = [], 0
    per_round = max(1, torch.get_num_threads())
    for first in range(0, len(starts), per_round):
        tasks = range(first, min(first + per_round, len(starts)))
        results = map_threads(lambda k, first=first: scan(first + k), len(tasks))
        if any(r is None for r in results):
            return None
        nnz += sum(r.size for r in results)
        if width is not None and not prefer_sparse(nnz / values.size, width):
            return None
        found.extend(results)
    flat = np.concatenate(found) if len(found) > 1 else found[0]
    rows, cols = np.divmod(flat, n_cols)
    return torch.from_numpy(rows.astype(np.int32)), torch.from_numpy(cols.astype(np.int32))


def _active_torch(
    x: Tensor, width: int | None, known_binary: bool
) -> tuple[Tensor, Tensor] | None:
    """As :func:`_active_numpy`, with torch operations (any device)."""
    flat_x = x.reshape(-1)
    mask = flat_x != 0
    if width is not None and not prefer_sparse(mask.sum().item() / flat_x.numel(), width):
        return None
    flat = torch.nonzero(mask).squeeze(1)
    if not known_binary and not bool((flat_x[flat] == 1).all().item()):
        return None
    return (flat // x.shape[1]).int(), (flat % x.shape[1]).int()


class _BinaryLinear(torch.autograd.Function):
    """``x @ weight.T`` for binary ``x`` given by its pattern; gradients for both."""

    @staticmethod
    def forward(ctx, x, weight, pattern):  # type: ignore[override]
        ctx.pattern = pattern
        ctx.save_for_backward(weight if ctx.needs_input_grad[0] else None)
        return pattern.matmul(weight.t().contiguous())

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (weight,) = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad @ weight if ctx.needs_input_grad[0] else None
        grad_w = ctx.pattern.t_matmul(grad).t() if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, None


def binary_linear(x: Tensor, weight: Tensor, pattern: BinaryPattern) -> Tensor:
    """``x @ weight.T`` (shape ``(n_rows, n_out)``) through the pattern of the binary ``x``.

    Differentiable with respect to ``x`` (dense gradient ``grad @ weight``) and ``weight``
    (``grad.T @ x`` through the transposed pattern).
    """
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return _BinaryLinear.apply(x, weight, pattern)
    return pattern.matmul(weight.detach().t().contiguous())


def binary_matmul_t(x: Tensor, other: Tensor) -> Tensor:
    """``x.T @ other`` for a binary ``x`` of shape (n_rows, n_cols), sparse when it pays."""
    pattern = binary_pattern(x, other.shape[1], known_binary=True)
    if pattern is None:
        return x.t() @ other
    return pattern.t_matmul(other.contiguous())
