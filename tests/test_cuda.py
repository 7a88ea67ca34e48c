"""CUDA: the same noise, spikes and fits as on the CPU (skipped where no GPU is present)."""

import numpy as np
import pytest
import torch

from sksnn import SpikingClassifier
from sksnn.engines import ENGINES, get_engine
from sksnn.neuron import LIFParameters
from sksnn.noise import CounterNoise, GeneratorNoise, sample_keys
from sksnn.surrogates import get_surrogate

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CPU, GPU = torch.device("cpu"), torch.device("cuda")


def test_noise_is_the_same_on_the_gpu():
    """Counter-based numbers: the GPU's torch expression gives the CPU kernel's bits."""
    shape = (50, 64, 300)
    cpu = GeneratorNoise(3).uniform(1, shape, CPU)
    assert torch.equal(cpu, GeneratorNoise(3).uniform(1, shape, GPU).cpu())
    x = torch.randn(64, 10, generator=torch.Generator().manual_seed(0))
    cpu = CounterNoise(7, sample_keys(x)).uniform(2, shape, CPU)
    gpu = CounterNoise(7, sample_keys(x.cuda())).uniform(2, shape, GPU)
    assert torch.equal(cpu, gpu.cpu())


@pytest.mark.parametrize("engine", ENGINES)
def test_engines_spike_alike_on_the_gpu(engine):
    """Every engine draws the same spikes on the GPU as on the CPU from the same currents and
    noise (the compiled engine runs the fused engine's torch path there)."""
    shape = (40, 32, 100)
    params = LIFParameters(temperature=0.2, surrogate=get_surrogate("matched", 5.0))
    drive = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    cpu, _ = get_engine(engine).run_currents(
        drive, params, GeneratorNoise(3).counters(1, shape, CPU), None, False
    )
    gpu, _ = get_engine(engine).run_currents(
        drive.cuda(), params, GeneratorNoise(3).counters(1, shape, GPU), None, False
    )
    assert torch.equal(cpu, gpu.cpu())
    assert 0.01 < cpu.mean() < 0.9


@pytest.mark.parametrize(("encoding", "recurrent"), [("current", False), ("rate", True)])
def test_fits_alike_on_the_gpu(encoding, recurrent):
    """A short fit on the GPU follows the CPU's: same noise, gradients equal to round-off
    (3 epochs; predicted probabilities within 1e-3)."""
    rng = np.random.RandomState(0)
    X = rng.rand(300, 8).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(int)
    kw = dict(hidden_layer_sizes=(64,), encoding=encoding, recurrent=recurrent, max_iter=3)
    proba = {}
    for device in ("cpu", "cuda"):
        est = SpikingClassifier(**kw, random_state=0, device=device, engine="fused")
        proba[device] = est.fit(X, y).predict_proba(X)
    np.testing.assert_allclose(proba["cuda"], proba["cpu"], atol=1e-3)
