"""Sources of the uniform random numbers that drive stochastic spikes and rate encoding.

Both are counter-based (:class:`CounterUniform`): the number of (sample, step, unit) in a
layer's stream is a hash of those coordinates and of a per-sample key, so an engine that
compiles its time loop computes each number where it uses it. Training
(:class:`GeneratorNoise`) keys each call by a number drawn from a seeded generator and the
sample's position in the batch: fresh numbers every batch, reproducible for a given
``random_state``. Inference (:class:`CounterNoise`) keys them by the sample's *content*: a
prediction depends only on the sample itself, not on the batch it came in, its position, the
chunk size, the thread that computed it or the number of earlier calls, which is what makes
``predict`` deterministic, thread-safe and invariant to the order and subset of the rows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "CounterNoise",
    "CounterUniform",
    "GeneratorNoise",
    "NoiseSource",
    "as_tensor",
    "cell_hashes",
    "layer_uniform",
    "sample_keys",
]

_MASK32 = 0xFFFFFFFF


def _mix32(x: Tensor) -> Tensor:
    """A 32-bit integer finaliser (Wellons' "lowbias32") on int64 tensors holding [0, 2**32).

    Multiplication may wrap int64; the low 32 bits that the mask keeps are still exact.
    """
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def _to_unit_interval(h: Tensor) -> Tensor:
    # 24 bits: every float32 in [0, 1) on this grid is exact, and 1.0 is never produced.
    return (h >> 8).to(torch.float32) * (1.0 / (1 << 24))


def sample_keys(x: Tensor) -> Tensor:
    """A 32-bit key per sample (first axis) that depends only on the sample's float32 values.

    A random linear hash of the raw bits modulo 2**32 (fixed coefficients, so keys agree across
    processes and devices), finalised by :func:`_mix32`.
    """
    bits = x.detach().to(torch.float32).contiguous().reshape(x.shape[0], -1)
    bits = bits.view(torch.int32).to(torch.int64) & _MASK32
    n = bits.shape[1]
    coef = np.random.RandomState(0x5EED).randint(1, 2**31 - 1, size=n, dtype=np.int64) * 2 + 1
    coef_t = torch.from_numpy(coef).to(bits.device)
    # int64 sums wrap modulo 2**64, which leaves the low 32 bits exact.
    return _mix32((bits * coef_t).sum(dim=1) & _MASK32)


def _compiled_available() -> bool:
    from .engines.compiled import compiled_available

    return compiled_available()


@dataclass(frozen=True, eq=False)
class CounterUniform:
    """Counter-based uniform numbers of shape ``(n_steps, n_samples, n_units)``, not yet drawn.

    Number ``(t, b, n)`` is a hash of the sample's base ``bases[b]`` and of the cell index
    ``t * n_units + n``, on the 2**-24 grid of [0, 1) (float32, 1.0 never produced). Engines
    that compile their time loop compute the numbers where the loop needs them; the others ask
    for the array (:meth:`tensor`). Both give the same numbers bit for bit.

    Attributes
    ----------
    bases : Tensor of int64, shape (n_samples,)
        Hashed per-sample keys in [0, 2**32).
    shape : tuple of int
        ``(n_steps, n_samples, n_units)``.
    """

    bases: Tensor
    shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or self.bases.shape != (self.shape[1],):
            raise ValueError(
                f"CounterUniform needs one base per sample: bases of shape "
                f"{tuple(self.bases.shape)} for numbers of shape {tuple(self.shape)}."
            )

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise a ValueError unless these are the numbers of a layer of ``shape``."""
        if tuple(shape) != tuple(self.shape):
            raise ValueError(
                f"The layer's uniform numbers have shape {tuple(self.shape)}, "
                f"its spikes {tuple(shape)}."
            )

    def tensor(self) -> Tensor:
        """The numbers as a float32 tensor on the device of :attr:`bases`."""
        n_steps, n_samples, n_units = self.shape
        if self.bases.device.type == "cpu" and _compiled_available():
            from .engines._kernels import counter_uniform
            from .engines.compiled import _over_samples

            out = np.empty(self.shape, dtype=np.float32)
            bases = self.bases.numpy().astype(np.uint32)
            _over_samples(
                counter_uniform, n_samples, out.size, (bases, cell_hashes(*self.shape[::2]), out)
            )
            return torch.from_numpy(out)
        cell = _hashed_cells(n_steps, n_units, self.bases.device).unsqueeze(1)
        return _to_unit_interval(_mix32((self.bases.reshape(1, -1, 1) + cell) & _MASK32))


_CELL_OFFSET = 0x632BE5AB


@functools.lru_cache(maxsize=16)
def cell_hashes(n_steps: int, n_units: int) -> np.ndarray:
    """The hashed cell indices ``mix32(t * n_units + n + offset)`` as a read-only uint32
    array ``(n_steps, n_units)``: the half of :class:`CounterUniform`'s hash that is the same
    for every sample."""
    out = _hashed_cells(n_steps, n_units, torch.device("cpu")).numpy().astype(np.uint32)
    out.flags.writeable = False
    return out


def _hashed_cells(n_steps: int, n_units: int, device: torch.device) -> Tensor:
    """``mix32(t * n_units + n + offset)`` as int64, shape ``(n_steps, n_units)``."""
    cell = torch.arange(n_steps * n_units, dtype=torch.int64, device=device)
    return _mix32((cell + _CELL_OFFSET) & _MASK32).reshape(n_steps, n_units)


def as_tensor(uniform: Tensor | CounterUniform | None, shape: tuple[int, ...]) -> Tensor | None:
    """The uniform numbers handed to a layer of ``shape``, as a tensor (for engines that loop
    in torch)."""
    if isinstance(uniform, CounterUniform):
        uniform.check_shape(shape)
        return uniform.tensor()
    return uniform


class NoiseSource:
    """Hands out uniform [0, 1) numbers of shape (n_steps, n_samples, n_units) per stream.

    Streams number the consumers: 0 is the input encoding, ``l + 1`` hidden layer ``l``. Each
    call hands out new numbers (training) or the numbers of its coordinates (inference).
    A source implements :meth:`counters` when its numbers are counter-based (:meth:`uniform`
    then follows from it), else :meth:`uniform`; layers ask through :func:`layer_uniform`.
    """

    def counters(
        self, stream: int, shape: tuple[int, int, int], device: torch.device
    ) -> CounterUniform | None:
        """The numbers of ``stream`` as a :class:`CounterUniform`, not yet drawn; None for a
        source whose numbers are not counter-based."""
        return None

    def uniform(self, stream: int, shape: tuple[int, int, int], device: torch.device) -> Tensor:
        """The numbers of ``stream`` as a float32 tensor."""
        numbers = self.counters(stream, shape, device)
        if numbers is None:
            raise NotImplementedError(f"{type(self).__name__} implements neither method.")
        return numbers.tensor()


def layer_uniform(
    noise: NoiseSource, stream: int, shape: tuple[int, int, int], device: torch.device
) -> Tensor | CounterUniform:
    """The numbers of ``noise``'s ``stream`` as a layer hands them to its engine: not yet
    drawn where they are counter-based (the engine computes them where it uses them), else
    the source's tensor."""
    numbers = noise.counters(stream, shape, device)
    return noise.uniform(stream, shape, device) if numbers is None else numbers


class GeneratorNoise(NoiseSource):
    """Fresh uniform numbers on every call, from a seeded generator (training).

    Each call draws one 32-bit number from NumPy's PCG64 and hands out the counter-based
    numbers (:class:`CounterUniform`) keyed by that number, the stream and each sample's
    position in the batch. The numbers therefore depend on the seed and the sequence of calls
    only, not on the device, the thread count or the engine, and a compiled time loop can
    compute them where it uses them instead of reading them from memory.
    """

    def __init__(self, seed: int) -> None:
        self.generator = np.random.Generator(np.random.PCG64(int(seed)))

    def counters(
        self, stream: int, shape: tuple[int, int, int], device: torch.device
    ) -> CounterUniform:
        key = int(self.generator.integers(0, 1 << 32, dtype=np.uint64))
        positions = torch.arange(shape[1], dtype=torch.int64, device=device)
        return CounterNoise(key, positions).counters(stream, shape, device)


class CounterNoise(NoiseSource):
    """Counter-based uniform numbers keyed by (seed, trial, stream, sample content, step, unit).

    Parameters
    ----------
    seed : int
        Fitted-model seed; different models draw different noise.
    keys : Tensor of int64, shape (n_samples,)
        Per-sample content keys from :func:`sample_keys`.
    trial : int, default=0
        Index of the repeated stochastic trial.
    """

    def __init__(self, seed: int, keys: Tensor, trial: int = 0) -> None:
        self.seed = int(seed) & _MASK32
        self.keys = keys
        self.trial = int(trial)

    def counters(
        self, stream: int, shape: tuple[int, int, int], device: torch.device
    ) -> CounterUniform:
        n_samples = shape[1]
        if n_samples != self.keys.shape[0]:
            raise ValueError(f"CounterNoise has {self.keys.shape[0]} keys, asked for {n_samples}.")
        head = self.seed ^ (self.trial * 0x85EBCA6B) ^ (stream * 0x9E3779B9)
        head &= _MASK32
        head_t = _mix32(torch.tensor(head, dtype=torch.int64, device=device))
        return CounterUniform(_mix32(self.keys.to(device) ^ head_t), tuple(shape))
