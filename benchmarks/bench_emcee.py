"""emcee's documented run (32 walkers, 5 dimensions, 100 steps) with each pool, in one run:
emcee calls ``pool.map`` once per half-step, so this measures the latency of ``map``.

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


def main():
    from hpcfutures import SingleNodeExecutor

    rows = [("serial (no pool)", run(None))]
    with multiprocessing.Pool(2) as pool:
        rows.append(("multiprocessing.Pool(2)", run(pool)))
    with SingleNodeExecutor(block_allocation=True, max_workers=2) as exe:
        rows.append(("hpcfutures SingleNodeExecutor(block_allocation=True)", run(exe)))
    try:
        from executorlib import SingleNodeExecutor as ELExecutor
    except ImportError:
        ELExecutor = None
    if ELExecutor is not None:
        with ELExecutor(block_allocation=True, max_workers=2) as exe:
            rows.append(("executorlib SingleNodeExecutor(block_allocation=True)", run(exe)))
    print(f"| {'pool':55} | {'100 steps':>9} |")
    print(f"|{'-' * 57}|{'-' * 11}|")
    for name, seconds in rows:
        print(f"| {name:55} | {seconds:7.2f} s |")


if __name__ == "__main__":
    main()
