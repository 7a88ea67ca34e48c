"""Learning-quality suite: sksnn defaults against plain baselines, on many small tasks.

Prints one markdown table. Per task: sksnn with default hyperparameters at
``noise_temperature=0`` and ``0.1`` (mean ± std over seeds), the baselines, mean fit times, and
the score sksnn's defaults (T = 0.1) reach within a fixed time budget (``--budget`` seconds of
training, epoch by epoch).

- tabular classification (digits, breast_cancer, wine, iris): StandardScaler pipeline,
  baseline ``MLPClassifier`` (defaults); score = test accuracy.
- tabular regression (diabetes, friedman1, friedman2, friedman3): StandardScaler pipeline
  baseline ``MLPRegressor(max_iter=1000)`` with standardised targets (SpikingRegressor
  standardises them itself); score = test R².
- spike timing (``make_randman`` at five settings of classes, units, steps, manifold
  dimension and smoothness, and ``order``: which of two channel groups fired first, in
  background noise), baselines a plain surrogate-gradient loop written below (LIF, fixed
  Gaussian init, SuperSpike surrogate, max-over-time readout, batch 128, Adam 2e-3) and
  snnTorch's tutorial recipe (``snntorch_recipe`` below; skipped when snnTorch is not
  installed), each run for the same number of epochs as sksnn; score = test accuracy.

Every seed draws its own train/test split (75/25) and seeds sksnn and the baseline, so the
std covers both. Run single-threaded for comparable times::

    OMP_NUM_THREADS=1 python benchmarks/bench_accuracy.py            # the whole suite
    python benchmarks/bench_accuracy.py --quick                       # 1 seed, fewer tasks
    python benchmarks/bench_accuracy.py --tasks digits,randman10 --seeds 0,1
    python benchmarks/bench_accuracy.py --set batch_size=64 --no-baseline   # try a lever
"""

from __future__ import annotations

import argparse
import ast
import math
import sys
import time
import warnings

import numpy as np
import torch
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_iris,
    load_wine,
    make_friedman1,
    make_friedman2,
    make_friedman3,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sksnn import SpikingClassifier, SpikingRegressor
from sksnn.datasets import make_randman

# ----------------------------------------------------------------------------------------
# Tasks: name -> (kind, loader); loader(seed) -> X, y (the split is drawn per seed)
# ----------------------------------------------------------------------------------------
SPIKE_EPOCHS = 30


def _order_task(n_samples=1600, n_steps=60, n_groups=4, group_size=5, rate=0.01, seed=0):
    """Temporal order: two of ``n_groups`` channel groups each fire one volley (jitter ±1
    step) at different times; the label is the group that fired first. Every group fires
    at most once, so spike counts tell which groups took part but not the order.
    Background Poisson spikes at ``rate`` per unit and step."""
    rng = np.random.RandomState(1000 + seed)
    n_units = n_groups * group_size
    X = (rng.random_sample((n_samples, n_steps, n_units)) < rate).astype(np.float32)
    y = np.empty(n_samples, dtype=np.int64)
    horizon = int(0.7 * n_steps)
    for i in range(n_samples):
        a, b = rng.choice(n_groups, 2, replace=False)
        while True:
            ta, tb = rng.randint(1, horizon, size=2)
            if abs(int(ta) - int(tb)) >= 3:
                break
        for g, t in ((a, ta), (b, tb)):
            for u in range(g * group_size, (g + 1) * group_size):
                X[i, int(np.clip(t + rng.randint(-1, 2), 0, n_steps - 1)), u] = 1.0
        y[i] = a if ta < tb else b
    return X, y


TASKS = {
    "digits": ("clf", lambda s: load_digits(return_X_y=True)),
    "breast_cancer": ("clf", lambda s: load_breast_cancer(return_X_y=True)),
    "wine": ("clf", lambda s: load_wine(return_X_y=True)),
    "iris": ("clf", lambda s: load_iris(return_X_y=True)),
    "diabetes": ("reg", lambda s: load_diabetes(return_X_y=True)),
    "friedman1": ("reg", lambda s: make_friedman1(800, noise=0.5, random_state=100 + s)),
    "friedman2": ("reg", lambda s: make_friedman2(800, noise=10.0, random_state=100 + s)),
    "friedman3": ("reg", lambda s: make_friedman3(800, noise=0.1, random_state=100 + s)),
    # 2000 samples -> 1500 train; 10 classes, 1-D manifolds, 80 steps
    "randman10": (
        "spike",
        lambda s: make_randman(2000, n_classes=10, n_units=20, n_steps=80, random_state=200 + s),
    ),
    # 1600 samples -> 1200 train; 5 classes, 2-D smoother manifolds, 30 units, 60 steps
    "randman5d2": (
        "spike",
        lambda s: make_randman(
            1600,
            n_classes=5,
            n_units=30,
            n_steps=60,
            dim_manifold=2,
            alpha=2.0,
            random_state=300 + s,
        ),
    ),
    # 900 samples -> 675 train; 3 classes, 40 units, 100 steps, rougher manifolds
    "randman3a05": (
        "spike",
        lambda s: make_randman(
            900, n_classes=3, n_units=40, n_steps=100, alpha=0.5, random_state=400 + s
        ),
    ),
    # 1200 samples -> 900 train; 4 classes, 3-D manifolds, 50 units, 40 steps
    "randman4d3": (
        "spike",
        lambda s: make_randman(
            1200, n_classes=4, n_units=50, n_steps=40, dim_manifold=3, random_state=500 + s
        ),
    ),
    # 2000 samples -> 1500 train; 20 classes, 30 units, 60 steps
    "randman20": (
        "spike",
        lambda s: make_randman(2000, n_classes=20, n_units=30, n_steps=60, random_state=600 + s),
    ),
    "order": ("spike", lambda s: _order_task(1600, seed=s)),
}
QUICK_TASKS = ["digits", "wine", "diabetes", "friedman1", "randman10", "order"]


# ----------------------------------------------------------------------------------------
# Reference surrogate-gradient loop (plain PyTorch, nothing from sksnn)
# ----------------------------------------------------------------------------------------
class _SuperSpike(torch.autograd.Function):
    scale = 100.0

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (_SuperSpike.scale * x.abs() + 1.0) ** 2


def _train(loss, opt, X_tr, y_tr, *, seed, epochs, batch):
    """Minibatch training of a baseline: shuffled batches of ``batch`` samples per epoch."""
    Xt, yt = torch.from_numpy(X_tr), torch.from_numpy(y_tr)
    rng = np.random.RandomState(seed)
    for _ in range(epochs):
        order = rng.permutation(len(Xt))
        for b in range(0, len(order), batch):
            idx = order[b : b + batch]
            value = loss(Xt[idx], yt[idx])
            opt.zero_grad()
            value.backward()
            opt.step()


def reference_snn(X_tr, y_tr, X_te, y_te, *, seed, epochs, n_hidden=128, batch=128, lr=2e-3):
    """Zenke & Ganguli style loop (SpyTorch tutorial): current-based LIF, dt 1 ms,
    tau_mem 10 ms, tau_syn 5 ms, threshold 1, reset to zero (detached), weights
    N(0, (7 (1 - beta))^2 / n_in), max-over-time readout, cross-entropy, Adam."""
    g = torch.Generator().manual_seed(seed)
    n_in, n_out = X_tr.shape[2], int(y_tr.max()) + 1
    alpha, beta = math.exp(-1e-3 / 5e-3), math.exp(-1e-3 / 10e-3)
    ws = 7.0 * (1.0 - beta)
    w1 = (torch.randn(n_in, n_hidden, generator=g) * ws / math.sqrt(n_in)).requires_grad_()
    w2 = (torch.randn(n_hidden, n_out, generator=g) * ws / math.sqrt(n_hidden)).requires_grad_()
    opt = torch.optim.Adam([w1, w2], lr=lr, betas=(0.9, 0.999))

    def run(x):
        h1 = torch.einsum("btc,cd->btd", x, w1)
        n_b, n_t = x.shape[0], x.shape[1]
        syn = torch.zeros(n_b, n_hidden)
        mem = torch.zeros(n_b, n_hidden)
        spk = []
        for t in range(n_t):
            out = _SuperSpike.apply(mem - 1.0)
            rst = out.detach()
            syn, mem = alpha * syn + h1[:, t], (beta * mem + syn) * (1.0 - rst)
            spk.append(out)
        h2 = torch.einsum("btd,dk->btk", torch.stack(spk, 1), w2)
        flt = torch.zeros(n_b, n_out)
        out = torch.zeros(n_b, n_out)
        outs = []
        for t in range(n_t):
            flt, out = alpha * flt + h2[:, t], beta * out + flt
            outs.append(out)
        return torch.stack(outs, 1).max(dim=1).values

    def loss(x, y):
        return torch.nn.functional.cross_entropy(run(x), y)

    _train(loss, opt, X_tr, y_tr, seed=seed, epochs=epochs, batch=batch)
    with torch.no_grad():
        pred = run(torch.from_numpy(X_te)).argmax(1).numpy()
    return float(np.mean(pred == y_te))


def snntorch_recipe(X_tr, y_tr, X_te, y_te, *, seed, epochs, n_hidden=128, batch=128):
    """snnTorch's tutorial recipe (tutorial 5, "Training SNNs with snnTorch"): Linear -> Leaky
    -> Linear -> Leaky, beta 0.95, the default arctan surrogate, reset by subtraction,
    cross-entropy of the output membrane summed over all steps, Adam 5e-4 (0.9, 0.999),
    prediction by output spike count. The tutorial's 1,000 hidden neurons are 128 here, as in
    sksnn. None when snnTorch is not installed."""
    try:
        import snntorch as snn
    except ImportError:
        return None
    torch.manual_seed(seed)
    n_in, n_out = X_tr.shape[2], int(y_tr.max()) + 1
    fc1, fc2 = torch.nn.Linear(n_in, n_hidden), torch.nn.Linear(n_hidden, n_out)
    lif1, lif2 = snn.Leaky(beta=0.95), snn.Leaky(beta=0.95)
    params = [*fc1.parameters(), *fc2.parameters()]
    opt = torch.optim.Adam(params, lr=5e-4, betas=(0.9, 0.999))

    def run(x):
        mem1, mem2 = lif1.init_leaky(), lif2.init_leaky()
        spikes, mems = [], []
        for t in range(x.shape[1]):
            spk1, mem1 = lif1(fc1(x[:, t]), mem1)
            spk2, mem2 = lif2(fc2(spk1), mem2)
            spikes.append(spk2)
            mems.append(mem2)
        return torch.stack(spikes), torch.stack(mems)

    def loss(x, y):
        _, mem = run(x)
        return sum(torch.nn.functional.cross_entropy(m, y) for m in mem)

    _train(loss, opt, X_tr, y_tr, seed=seed, epochs=epochs, batch=batch)
    with torch.no_grad():
        spikes, _ = run(torch.from_numpy(X_te))
    return float(np.mean(spikes.sum(0).argmax(1).numpy() == y_te))


# ----------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------
def _sksnn(kind, temperature, seed, params):
    p = dict(noise_temperature=temperature, random_state=seed)
    if kind == "spike":
        p["max_iter"] = SPIKE_EPOCHS
    p.update(params)
    if kind == "reg":
        return make_pipeline(StandardScaler(), SpikingRegressor(**p))
    est = SpikingClassifier(**p)
    return est if kind == "spike" else make_pipeline(StandardScaler(), est)


def _baseline(kind, seed):
    if kind == "clf":
        return make_pipeline(StandardScaler(), MLPClassifier(random_state=seed, max_iter=500))
    # targets standardised too (SpikingRegressor does that itself): friedman2's y spans ~1700
    return TransformedTargetRegressor(
        make_pipeline(StandardScaler(), MLPRegressor(random_state=seed, max_iter=1000)),
        transformer=StandardScaler(),
    )


def _within_budget(kind, seed, params, budget, X_tr, y_tr, X_te, y_te):
    """Test score of the defaults (T = 0.1) after training epoch by epoch (warm starts) until
    ``budget`` seconds have passed or the default number of epochs is reached."""
    est = _sksnn(kind, 0.1, seed, {**params, "max_iter": 1, "warm_start": True})
    limit = _sksnn(kind, 0.1, seed, params)
    limit = (limit if kind == "spike" else limit[-1]).max_iter
    start = time.perf_counter()
    for _ in range(limit):
        est.fit(X_tr, y_tr)
        if time.perf_counter() - start >= budget:
            break
    return est.score(X_te, y_te)


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def run_task(name, seeds, params, temperatures, baseline=True, train_score=False, budget=None):
    kind, loader = TASKS[name]
    scores = {t: [] for t in temperatures}
    train = {t: [] for t in temperatures}
    times = {t: [] for t in temperatures}
    base, base_times, recipe, budgeted = [], [], [], []
    for seed in seeds:
        X, y = loader(seed)
        strat = y if kind != "reg" else None
        X_tr, X_te, y_tr, y_te = train_test_split(
            X, y, test_size=0.25, random_state=seed, stratify=strat
        )
        for t in temperatures:
            est = _sksnn(kind, t, seed, params)
            _, sec = _timed(est.fit, X_tr, y_tr)
            scores[t].append(est.score(X_te, y_te))
            if train_score:
                train[t].append(est.score(X_tr, y_tr))
            times[t].append(sec)
        if budget:
            budgeted.append(_within_budget(kind, seed, params, budget, X_tr, y_tr, X_te, y_te))
        if baseline:
            if kind == "spike":
                acc, sec = _timed(
                    reference_snn, X_tr, y_tr, X_te, y_te, seed=seed, epochs=SPIKE_EPOCHS
                )
                snntorch_acc = snntorch_recipe(
                    X_tr, y_tr, X_te, y_te, seed=seed, epochs=SPIKE_EPOCHS
                )
                if snntorch_acc is not None:
                    recipe.append(snntorch_acc)
            else:
                est = _baseline(kind, seed)
                _, sec = _timed(est.fit, X_tr, y_tr)
                acc = est.score(X_te, y_te)
            base.append(acc)
            base_times.append(sec)
    return kind, scores, train, times, base, base_times, recipe, budgeted


def _ms(values):
    if not values:
        return "—"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one seed, a subset of the tasks")
    ap.add_argument("--tasks", help="comma-separated task names (default: all)")
    ap.add_argument("--seeds", help="comma-separated seeds (default: 0,1,2)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override an estimator parameter (Python literal), e.g. batch_size=64",
    )
    ap.add_argument("--temperatures", default="0,0.1")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--train-score", action="store_true", help="also report training scores")
    ap.add_argument(
        "--budget", type=float, default=2.0, help="training seconds for the budget column"
    )
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    tasks = args.tasks.split(",") if args.tasks else (QUICK_TASKS if args.quick else list(TASKS))
    if args.seeds:
        seeds = [int(s) for s in args.seeds.split(",")]
    else:
        seeds = [0] if args.quick else [0, 1, 2]
    temps = [float(t) for t in args.temperatures.split(",")]
    params = {}
    for item in args.set:
        key, value = item.split("=", 1)
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    unknown = set(tasks) - set(TASKS)
    if unknown:
        ap.error(f"unknown tasks {sorted(unknown)}; choose from {list(TASKS)}")

    print(f"seeds {seeds}; overrides {params or 'none'}; torch threads {torch.get_num_threads()}")
    print()
    cols = [f"sksnn T={t:g}" for t in temps]
    head = ["task", "metric", *cols, "baseline", "Δ(T=0 - base)", "snnTorch recipe"]
    head += [f"fit s T={t:g}" for t in temps] + ["fit s base", f"T=0.1 in {args.budget:g} s"]
    if args.train_score:
        head += [f"train T={t:g}" for t in temps]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    t_all = time.perf_counter()
    for name in tasks:
        kind, scores, train, times, base, base_times, recipe, budgeted = run_task(
            name, seeds, params, temps, not args.no_baseline, args.train_score, args.budget
        )
        metric = "R²" if kind == "reg" else "acc"
        delta = f"{np.mean(scores[temps[0]]) - np.mean(base):+.3f}" if base else "—"
        row = [name, metric, *(_ms(scores[t]) for t in temps), _ms(base), delta, _ms(recipe)]
        row += [f"{np.mean(times[t]):.1f}" for t in temps]
        row += [f"{np.mean(base_times):.1f}" if base_times else "—", _ms(budgeted)]
        if args.train_score:
            row += [_ms(train[t]) for t in temps]
        print("| " + " | ".join(row) + " |", flush=True)
    print()
    print(f"total {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
