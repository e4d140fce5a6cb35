"""Flux executors against bare Flux commands on the same instance, in one run.

Run: ``bash scripts/bench.sh --flux`` (installs Flux with scripts/flux.sh, runs this inside
``flux start``). Rows (issue 14): one serial call through FluxJobExecutor vs ``flux run -n1
python -c pass``; one MPI call (cores=2) vs ``flux run -n2 python -c "from mpi4py import
MPI"``; 200 short calls in fresh mode (tasks/s) vs ``flux submit --cc=1-200 --wait``; the
warm-worker call latency vs SingleNodeExecutor's; FluxClusterExecutor one call / 50 calls vs
``flux batch`` + wait; and executorlib's Flux executors on the same Flux where they run.
Each figure is the median of ``--rounds`` runs where a row is cheap enough to repeat.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# the batch jobs of the cluster rows unpickle work.* by reference: they need this directory too
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.dirname(os.path.abspath(__file__)), os.environ.get("PYTHONPATH")) if p)

from work import mpi_rank, trivial  # noqa: E402

PY = sys.executable


def _pmi_flags() -> list[str]:
    from hpcfutures.launch.flux import pmi_for

    pmi = pmi_for(2, None)
    return ["-o", f"pmi={pmi}"] if pmi else []


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median_of(rounds: int, fn) -> float:
    return statistics.median(timed(fn) for _ in range(rounds))


# -- bare Flux -------------------------------------------------------------------------
def bare_run_serial():
    subprocess.run(["flux", "run", "-n1", PY, "-c", "pass"], check=True)


def bare_run_mpi():
    subprocess.run(["flux", "run", "-n2", *_pmi_flags(), PY, "-c", "from mpi4py import MPI"], check=True)


def bare_submit_many(n: int, code: str = "pass"):
    subprocess.run(["flux", "submit", "--quiet", "--wait", f"--cc=1-{n}", PY, "-c", code], check=True)


def bare_batch(n: int, workdir: str):
    """``n`` batch jobs (what ``flux batch --wrap python -c pass`` submits) through Flux's
    Python API, then a wait for each: ``flux batch`` has no ``--cc``, and n CLI starts would
    measure Python start-ups, not Flux."""
    import flux
    import flux.job
    from flux.job import JobspecV1

    h = flux.Flux()
    jobs = []
    for i in range(n):
        spec = JobspecV1.from_batch_command(f"#!/bin/sh\n{PY} -c pass\n", "bare")
        spec.environment = dict(os.environ)
        spec.cwd = workdir
        spec.stdout = spec.stderr = f"{workdir}/bare-{i}.out"
        jobs.append(flux.job.submit(h, spec, waitable=True))
    for job in jobs:
        assert flux.job.wait(h, job).success


# -- ours / executorlib's ----------------------------------------------------------------
def one_call(make, fn, arg, resource_dict=None):
    """Seconds from submit to result of one call, in an executor made beforehand."""
    with make() as exe:
        t0 = time.perf_counter()
        exe.submit(fn, arg, resource_dict=resource_dict or {}).result()
        return time.perf_counter() - t0


def many_calls(make, n: int) -> float:
    with make() as exe:
        t0 = time.perf_counter()
        futures = [exe.submit(trivial, i) for i in range(n)]
        assert [f.result() for f in futures] == list(range(n))
        return time.perf_counter() - t0


def warm_latency(make, calls: int = 2000) -> float:
    with make() as exe:
        exe.submit(trivial, 0).result()  # the worker is up
        t0 = time.perf_counter()
        for i in range(calls):
            exe.submit(trivial, i).result()
        return (time.perf_counter() - t0) / calls


def cluster_calls(make, n: int) -> float:
    t0 = time.perf_counter()
    with make() as exe:
        futures = [exe.submit(trivial, i) for i in range(n)]
        assert [f.result() for f in futures] == list(range(n))
    return time.perf_counter() - t0


def try_row(fn):
    try:
        return fn()
    except Exception as exc:  # executorlib's may not run here: the table says why
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:60] if str(exc) else ''}"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--many", type=int, default=200)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--no-executorlib", action="store_true")
    args = parser.parse_args()

    from hpcfutures import FluxClusterExecutor, FluxJobExecutor, SingleNodeExecutor

    el = None
    if not args.no_executorlib:
        try:
            import executorlib as el
        except ImportError:
            el = None
    work = tempfile.mkdtemp(dir=os.getcwd(), prefix="bench-flux-")
    try:
        rows = _measure(args, el, work, FluxJobExecutor, FluxClusterExecutor, SingleNodeExecutor)
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    _print(rows)


def _measure(args, el, work, FluxJobExecutor, FluxClusterExecutor, SingleNodeExecutor) -> list:
    rows = []

    def add(name, ours, peer_name, peer, target, el_value=None, kind="time"):
        rows.append((name, ours, peer_name, peer, target, el_value, kind))

    r = args.rounds
    ours = statistics.median(one_call(FluxJobExecutor, trivial, 1) for _ in range(r))
    bare = median_of(r, bare_run_serial)
    elv = try_row(lambda: statistics.median(one_call(el.FluxJobExecutor, trivial, 1) for _ in range(r))) if el else None
    add("one serial call, submit to result", ours, "flux run -n1 python -c pass", bare, "<= 1.2x", elv)

    ours = statistics.median(one_call(FluxJobExecutor, mpi_rank, 1, {"cores": 2}) for _ in range(r))
    bare = median_of(r, bare_run_mpi)
    el_mpi = {"cores": 2}
    from hpcfutures.launch.flux import pmi_for

    elv = None
    if el:
        elv = try_row(lambda: statistics.median(
            one_call(lambda: el.FluxJobExecutor(pmi_mode=pmi_for(2, None)), mpi_rank, 1, el_mpi) for _ in range(r)))  # fmt: skip
    add("one MPI call, cores=2", ours, "flux run -n2 python -c 'from mpi4py ...'", bare, "<= 1.2x", elv)

    n = args.many
    ours = n / many_calls(FluxJobExecutor, n)
    bare = n / timed(lambda: bare_submit_many(n))
    elv = try_row(lambda: n / many_calls(el.FluxJobExecutor, n)) if el else None
    add(f"{n} short calls, fresh mode", ours, f"flux submit --cc=1-{n} --wait python -c pass", bare, ">= 0.8x", elv, kind="rate")
    # the same command as each of our jobs runs: an interpreter that imports the worker
    same = n / timed(lambda: bare_submit_many(n, "import hpcfutures.worker.interactive"))
    add(f"{n} short calls, fresh mode", ours, "... of python -c 'import <our worker>'", same, ">= 0.8x", None, kind="rate")

    ours = warm_latency(lambda: FluxJobExecutor(block_allocation=True, max_workers=1))
    peer = warm_latency(lambda: SingleNodeExecutor(block_allocation=True, max_workers=1))
    elv = try_row(lambda: warm_latency(lambda: el.FluxJobExecutor(block_allocation=True, max_workers=1))) if el else None
    add("warm-worker call latency", ours, "SingleNodeExecutor warm", peer, "<= 1.2x", elv)

    def ours_cluster(k):
        cache = tempfile.mkdtemp(dir=work)
        return cluster_calls(lambda: FluxClusterExecutor(cache_directory=cache), k)

    def el_cluster(k):
        cache = tempfile.mkdtemp(dir=work)
        return cluster_calls(lambda: el.FluxClusterExecutor(cache_directory=cache), k)

    ours = statistics.median(ours_cluster(1) for _ in range(r))
    bare = median_of(r, lambda: bare_batch(1, work))
    elv = try_row(lambda: statistics.median(el_cluster(1) for _ in range(r))) if el else None
    add("FluxClusterExecutor, one call", ours, "flux batch + wait (API)", bare, "<= 1.0x", elv)
    k = args.batches
    ours = ours_cluster(k)
    bare = timed(lambda: bare_batch(k, work))
    elv = try_row(lambda: el_cluster(k)) if el else None
    add(f"FluxClusterExecutor, {k} calls", ours, f"{k} x flux batch + wait (API)", bare, "<= 1.0x", elv)

    return rows


def _print(rows) -> None:
    print(f"| {'measure':34} | {'hpcfutures':>11} | {'peer':40} | {'peer value':>11} | {'ratio':>5} | {'target':>8} | {'executorlib':>11} |")
    print("|" + "|".join("-" * w for w in (36, 13, 42, 13, 7, 10, 13)) + "|")
    for name, o, peer_name, p, target, elv, kind in rows:
        unit = "/s" if kind == "rate" else " s"
        fmt = (lambda v: f"{v:8.1f}{unit}") if kind == "rate" else (lambda v: f"{v:8.4f}{unit}")
        el_text = fmt(elv) if isinstance(elv, float) else (elv or "-")
        print(f"| {name:34} | {fmt(o):>11} | {peer_name:40} | {fmt(p):>11} | {o / p:5.2f} | {target:>8} | {el_text:>11} |")


if __name__ == "__main__":
    main()
