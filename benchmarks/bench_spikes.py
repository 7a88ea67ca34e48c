"""Memory and epoch time of spike data sets held dense or as SpikeTrains.

Each row runs in a fresh Python process and reports its peak resident set (the interpreter
with torch imported included; the ``baseline`` row is that alone). A data set of ``n_samples``
x 100 steps x 700 units (SHD-sized: 8,000 samples at 1.5 % density; SSC-sized: 60,000 at 1 %)
is generated in chunks of 250 samples, either into one dense float32 array or as event
indices passed to ``SpikeTrains.from_events``; then ``SpikingClassifier((128,), max_iter=1)``
trains one epoch on it. Usage::

    python benchmarks/bench_spikes.py            # SHD-sized dense and events, SSC-sized events
    python benchmarks/bench_spikes.py --quick    # a 2,000-sample set only
"""

from __future__ import annotations

import argparse

from bench_memory import _child, _table

_DATA = """
rng = np.random.default_rng(0)
n, steps, units, density = {n_samples}, 100, 700, {density}
y = np.arange(n) % 20
start = time.perf_counter()
if {dense}:
    X = np.empty((n, steps, units), dtype=np.float32)
    for b in range(0, n, 250):
        X[b : b + 250] = rng.random((min(250, n - b), steps, units), dtype=np.float32) < density
else:
    from sksnn import SpikeTrains
    parts = []
    for b in range(0, n, 250):
        active = rng.random((min(250, n - b), steps, units), dtype=np.float32) < density
        s, t, u = np.nonzero(active)
        parts.append(((s + b).astype(np.int32), t.astype(np.int32), u.astype(np.int32)))
    sample, step, unit = (np.concatenate(p) for p in zip(*parts))
    del parts
    X = SpikeTrains.from_events(sample, step, unit, shape=(n, steps, units))
    del sample, step, unit
build = time.perf_counter() - start
build_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
SpikingClassifier((128,), max_iter=1, random_state=0).fit(X, y)
report(build_seconds=build, build_mb=build_mb, epoch_seconds=time.perf_counter() - start)
"""

_BASELINE = "report(build_seconds=0, build_mb=0, epoch_seconds=0)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sets = [("2,000 x 100 x 700, 1.5 %", 2000, 0.015)]
    if not args.quick:
        sets = [
            ("SHD-sized: 8,000 x 100 x 700, 1.5 %", 8000, 0.015),
            ("SSC-sized: 60,000 x 100 x 700, 1 %", 60000, 0.01),
        ]
    base = _child(_BASELINE)["peak_mb"]
    rows = [["baseline (imports)", "", "", f"{base:.0f}", "", ""]]
    for name, n, density in sets:
        for dense in (True, False):
            kind = "dense array" if dense else "SpikeTrains"
            dense_gb = n * 100 * 700 * 4 / 2**30
            if dense and dense_gb > 8:
                rows.append([name, kind, "", f"not run: X alone is {dense_gb:.1f} GiB", "", ""])
                continue
            r = _child(_DATA.format(n_samples=n, density=density, dense=dense))
            rows.append(
                [
                    name,
                    kind,
                    f"{r['build_mb']:.0f}",
                    f"{r['peak_mb']:.0f}",
                    f"{r['build_seconds']:.1f}",
                    f"{r['epoch_seconds']:.1f}",
                ]
            )
    print("## Spike data held dense or as SpikeTrains (fit of hidden (128,), one epoch)\n")
    print(
        _table(
            ["data set", "held as", "peak MB after building", "peak MB", "build s", "epoch s"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
