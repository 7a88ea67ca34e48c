"""Sources of the uniform random numbers that drive stochastic spikes and rate encoding.

Training draws from a seeded generator (:class:`GeneratorNoise`): fast, and reproducible for
a given ``random_state``. Inference uses :class:`CounterNoise`, a counter-based
generator: the number for (sample, trial, layer, step, unit) is a hash of those coordinates and
of the sample's *content*. A prediction therefore depends only on the sample itself, not on the
batch it came in, its position, the chunk size, the thread that computed it or the number of
earlier calls, which is what makes ``predict`` deterministic, thread-safe and invariant to the
order and subset of the rows.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ._parallel import map_threads

__all__ = ["CounterNoise", "GeneratorNoise", "NoiseSource", "sample_keys"]

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


def _compiled_uniform(base: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """:class:`CounterNoise`'s numbers from the per-sample hashes ``base``, by the compiled
    kernel: the same bits as the torch expression, without its int64 temporaries."""
    from .engines._kernels import counter_uniform
    from .engines.compiled import _over_samples

    out = np.empty(shape, dtype=np.float32)
    bases = base.numpy().astype(np.uint32)
    _over_samples(counter_uniform, shape[1], out.size, (bases, out))
    return torch.from_numpy(out)


class NoiseSource:
    """Hands out uniform [0, 1) numbers of shape (n_steps, n_samples, n_units) per stream.

    Streams number the consumers: 0 is the input encoding, ``l + 1`` hidden layer ``l``.
    """

    def uniform(self, stream: int, shape: tuple[int, int, int], device: torch.device) -> Tensor:
        raise NotImplementedError


# Below this many numbers a draw runs on one thread (the hand-over costs more than it saves).
_PARALLEL_DRAW = 1 << 18


def _draw_uniform(generator: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """``generator.random(shape, dtype=float32)``, drawn on all of torch's threads.

    PCG64 can jump ahead: each thread fills its part of the array from a copy of the
    generator advanced to where a serial draw would be at that part's first number, and the
    generator ends where the serial draw would leave it. The numbers are the serial draw's, bit
    for bit (tested), in about half the time on two cores.
    """
    out = np.empty(shape, dtype=np.float32)
    flat = out.reshape(-1)
    n_threads = torch.get_num_threads()
    if flat.size < _PARALLEL_DRAW or n_threads < 2:
        generator.random(out=out, dtype=np.float32)
        return out
    # A float32 takes 32 of the 64 bits of one PCG64 output; a half left over from an odd
    # earlier draw is used first, so that every part starts on a whole output.
    first = 0
    if generator.bit_generator.state["has_uint32"]:
        flat[0] = generator.random(dtype=np.float32)
        first = 1
    state = generator.bit_generator.state
    size = (flat.size - first) // n_threads // 2 * 2  # even: whole outputs per part
    bounds = [first + k * size for k in range(n_threads)] + [flat.size]
    parts = []
    for k in range(n_threads):
        bits = np.random.PCG64()
        bits.state = state
        bits.advance(k * size // 2)
        parts.append(np.random.Generator(bits))

    def fill(k: int) -> None:
        parts[k].random(out=flat[bounds[k] : bounds[k + 1]], dtype=np.float32)

    map_threads(fill, n_threads)
    generator.bit_generator.state = parts[-1].bit_generator.state
    return out


class GeneratorNoise(NoiseSource):
    """Uniform numbers from a seeded generator, in call order (training).

    On the CPU the numbers come from NumPy's PCG64 (float32 draws), faster than torch's
    Mersenne Twister and drawn on all of torch's threads (:func:`_draw_uniform`): a training
    step can draw millions of numbers per layer. Other devices use a torch generator on the
    device.
    """

    def __init__(self, seed: int, device: torch.device | str = "cpu") -> None:
        if torch.device(device).type == "cpu":
            self.generator = np.random.Generator(np.random.PCG64(int(seed)))
        else:
            self.generator = torch.Generator(device=torch.device(device))
            self.generator.manual_seed(int(seed))

    def uniform(self, stream: int, shape: tuple[int, int, int], device: torch.device) -> Tensor:
        # float32 whatever torch's default dtype: the same seed draws the same spikes
        if isinstance(self.generator, np.random.Generator):
            return torch.from_numpy(_draw_uniform(self.generator, shape)).to(device)
        return torch.rand(shape, generator=self.generator, device=device, dtype=torch.float32)


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

    def uniform(self, stream: int, shape: tuple[int, int, int], device: torch.device) -> Tensor:
        n_steps, n_samples, n_units = shape
        if n_samples != self.keys.shape[0]:
            raise ValueError(f"CounterNoise has {self.keys.shape[0]} keys, asked for {n_samples}.")
        head = self.seed ^ (self.trial * 0x85EBCA6B) ^ (stream * 0x9E3779B9)
        head &= _MASK32
        head_t = _mix32(torch.tensor(head, dtype=torch.int64, device=device))
        base = _mix32(self.keys.to(device) ^ head_t)  # (n_samples,)
        if torch.device(device).type == "cpu" and _compiled_available():
            return _compiled_uniform(base, shape)
        cell = torch.arange(n_steps * n_units, dtype=torch.int64, device=device)
        cell = _mix32((cell + 0x632BE5AB) & _MASK32).reshape(n_steps, 1, n_units)
        return _to_unit_interval(_mix32((base.reshape(1, -1, 1) + cell) & _MASK32))
