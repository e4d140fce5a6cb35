"""emcee's documented run (32 walkers, 5 dimensions, 100 steps) with each pool, in one run:
emcee calls ``pool.map`` once per half-step, so this measures the latency of ``map``.

Each pool is timed twice: its first run (the pool just made: its workers start, import
numpy, and hpcfutures' ``map`` learns what one walker costs) and the best of two more on the
same pool (a pool kept for a long chain, or for several). ``multiprocessing.Pool`` forks the
driver, so its workers start with numpy imported already.

Run: ``bash scripts/bench.sh --emcee``.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time

import emcee
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def log_prob(theta):
    return -0.5 * np.sum(theta**2)


def run(pool) -> float:
    np.random.seed(1)
    initial = np.random.randn(32, 5)
    t0 = time.perf_counter()
    emcee.EnsembleSampler(32, 5, log_prob, pool=pool).run_mcmc(initial, 100, progress=False)
    return time.perf_counter() - t0


def timed(pool) -> tuple[float, float]:
    """(first run, best of the next two) on one pool."""
    first = run(pool)
    return first, min(run(pool), run(pool))


def main():
    from hpcfutures import SingleNodeExecutor

    serial = min(run(None) for _ in range(3))
    rows = [("serial (no pool)", serial, serial)]
    with multiprocessing.Pool(2) as pool:
        rows.append(("multiprocessing.Pool(2)", *timed(pool)))
    with SingleNodeExecutor(block_allocation=True, max_workers=2) as exe:
        rows.append(("hpcfutures SingleNodeExecutor(block_allocation=True)", *timed(exe)))
    try:
        from executorlib import SingleNodeExecutor as ELExecutor
    except ImportError:
        ELExecutor = None
    if ELExecutor is not None:
        with ELExecutor(block_allocation=True, max_workers=2) as exe:
            rows.append(("executorlib SingleNodeExecutor(block_allocation=True)", *timed(exe)))
    print(f"| {'pool':55} | {'first run':>9} | {'next runs':>9} |")
    print(f"|{'-' * 57}|{'-' * 11}|{'-' * 11}|")
    for name, first, warm in rows:
        print(f"| {name:55} | {first:7.2f} s | {warm:7.2f} s |")


if __name__ == "__main__":
    main()
