"""Event-driven products with binary (spike) matrices.

A spike raster ``X`` (rows: (step, sample) pairs, columns: input units) is mostly zeros. Its
projection ``X @ W.T`` then only needs, for every row, the sum of the weight columns of its
active inputs: an ``embedding_bag`` (sum mode) over the active indices of each row (the CSR
pattern of ``X``). The weight gradient ``G.T @ X`` is the same operation on the transposed
pattern (CSC): for every input unit, the sum of the gradient rows where it was active. Both
cost ``O(nnz * width)`` instead of ``O(rows * inputs * width)``; the input gradient
``G @ W`` of hidden spikes stays dense, since the surrogate gradient reaches every neuron.

Whether that pays depends on the density, measured per call (:func:`prefer_sparse`). On the
CPU the index extraction goes through NumPy, whose comparison, count and ``flatnonzero`` on a
bool mask are several times faster than ``torch.nonzero``; other devices use torch ops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "SPARSE_MAX_DENSITY",
    "SPARSE_MIN_WIDTH",
    "BinaryPattern",
    "binary_linear",
    "binary_matmul_t",
    "binary_pattern",
    "prefer_sparse",
]

# Cut-over between the event-driven and the dense product, measured with
# benchmarks/bench_sparse.py on a 2-core Xeon (AVX-512, MKL, 2 threads): for a 25600 x 700
# binary input and 256 outputs (forward + weight gradient), the index-based path is faster
# below about 15 % density; for 128 outputs about 10 %. Narrow outputs (the readout) gain
# nothing: the scan for indices then costs about as much as the dense product.
SPARSE_MAX_DENSITY = 0.1
SPARSE_MIN_WIDTH = 64
# Rows sampled to estimate the density before scanning everything: a dense input is then
# recognised for the price of a small fraction of a pass.
_DENSITY_SAMPLE_ROWS = 1024


@dataclass
class BinaryPattern:
    """The active entries of a 0/1 matrix of shape ``(n_rows, n_cols)``, in CSR form.

    Attributes
    ----------
    n_rows, n_cols : int
    cols : Tensor of int64, shape (nnz,)
        Column of each active entry, row by row.
    rows : Tensor of int64, shape (nnz,)
        Row of each active entry (same order).
    row_offsets : Tensor of int64, shape (n_rows + 1,)
        Entries of row ``r`` are ``cols[row_offsets[r]:row_offsets[r + 1]]``.
    """

    n_rows: int
    n_cols: int
    cols: Tensor
    rows: Tensor
    row_offsets: Tensor
    _csc: tuple[Tensor, Tensor] | None = None

    @property
    def nnz(self) -> int:
        return int(self.cols.shape[0])

    def csc(self) -> tuple[Tensor, Tensor]:
        """Rows of the active entries sorted by column, and the column offsets (cached)."""
        if self._csc is None:
            if self.cols.device.type == "cpu":
                cols = self.cols.numpy()
                # A stable sort of 16-bit keys is a radix sort in NumPy: linear time.
                keys = cols.astype(np.uint16) if self.n_cols <= 1 << 16 else cols
                order = torch.from_numpy(np.argsort(keys, kind="stable"))
            else:
                order = torch.sort(self.cols, stable=True).indices
            counts = torch.bincount(self.cols, minlength=self.n_cols)
            self._csc = (self.rows[order], _offsets(counts))
        return self._csc

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
        rows, offsets = self.csc()
        return F.embedding_bag(rows, other, offsets, mode="sum", include_last_offset=True)


def _offsets(counts: Tensor) -> Tensor:
    offsets = counts.new_zeros(counts.shape[0] + 1)
    torch.cumsum(counts, 0, out=offsets[1:])
    return offsets


def prefer_sparse(density: float, width: int) -> bool:
    """Whether the event-driven product beats the dense one at this density and output width."""
    return width >= SPARSE_MIN_WIDTH and density <= SPARSE_MAX_DENSITY


def _sampled_density(x: Tensor) -> float:
    step = max(1, x.shape[0] // _DENSITY_SAMPLE_ROWS)
    sample = x[::step]
    return torch.count_nonzero(sample).item() / max(1, sample.numel())


def binary_pattern(x: Tensor, width: int, known_binary: bool = False) -> BinaryPattern | None:
    """The CSR pattern of a 2-D tensor ``x`` if the sparse product should be used, else None.

    Parameters
    ----------
    x : Tensor, shape (n_rows, n_cols)
    width : int
        Output width of the product (decides the cut-over, see :func:`prefer_sparse`).
    known_binary : bool, default=False
        ``x`` holds only 0 and 1 (spikes). Otherwise that is checked on the active entries, and
        a real-valued input gets None (dense product).
    """
    # A sampled density up to twice the cut-over still gets the exact count below rather than
    # being rejected on a noisy estimate.
    if x.numel() == 0 or not prefer_sparse(_sampled_density(x) / 2, width):
        return None
    find = _active_numpy if x.device.type == "cpu" else _active_torch
    found = find(x.detach(), width, known_binary)
    if found is None:
        return None
    rows, cols = found
    counts = torch.bincount(rows, minlength=x.shape[0])
    return BinaryPattern(x.shape[0], x.shape[1], cols, rows, _offsets(counts))


def _active_numpy(x: Tensor, width: int, known_binary: bool) -> tuple[Tensor, Tensor] | None:
    """Rows and columns of the non-zero entries (CPU), or None if dense or not binary."""
    values = x.numpy().reshape(-1)
    mask = values != 0
    if not prefer_sparse(np.count_nonzero(mask) / values.size, width):
        return None
    flat = np.flatnonzero(mask)
    if not known_binary and not bool(np.all(values[flat] == 1)):
        return None
    rows, cols = np.divmod(flat, x.shape[1])
    return torch.from_numpy(rows), torch.from_numpy(cols)


def _active_torch(x: Tensor, width: int, known_binary: bool) -> tuple[Tensor, Tensor] | None:
    """As :func:`_active_numpy`, with torch operations (any device)."""
    flat_x = x.reshape(-1)
    mask = flat_x != 0
    if not prefer_sparse(mask.sum().item() / flat_x.numel(), width):
        return None
    flat = torch.nonzero(mask).squeeze(1)
    if not known_binary and not bool((flat_x[flat] == 1).all().item()):
        return None
    return flat // x.shape[1], flat % x.shape[1]


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
