"""SingleNodeExecutor against stdlib ProcessPoolExecutor (and executorlib when installed),
all measured in this one run on this machine. Prints a table of times and ratios.

Run: ``bash scripts/bench.sh`` (sets up .venv, installs executorlib, runs this).
Sized for a 2-core machine: a few seconds per row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from work import increment, mpi_rank, total, trivial  # noqa: E402  (importable by every worker)

try:
    import executorlib  # noqa: F401

    HAVE_EXECUTORLIB = True
except ImportError:
    HAVE_EXECUTORLIB = False

ROWS: list[tuple] = []


def row(name, ours, peer_name, peer, target, executorlib_value=None, unit="ms"):
    ROWS.append((name, ours, peer_name, peer, target, executorlib_value, unit))


def median_call_latency(exe, n, argument=0):
    exe.submit(trivial, argument).result()  # warm
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        exe.submit(trivial, argument).result()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def throughput(exe, n):
    exe.submit(trivial, 0).result()
    t0 = time.perf_counter()
    futures = [exe.submit(trivial, i) for i in range(n)]
    for f in futures:
        f.result()
    return n / (time.perf_counter() - t0)


def timed_command(argv, repeat, env=None):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def bench_warm(args):
    """Rounds alternate between the executors, each keeping its best round, so that noise
    from the machine falls on both alike."""
    from hpcfutures import SingleNodeExecutor

    lat, tp, ppe_lat, ppe_tp = [], [], [], []
    for _ in range(args.rounds):
        with ProcessPoolExecutor(max_workers=2) as ppe:
            ppe_lat.append(median_call_latency(ppe, args.calls))
            ppe_tp.append(throughput(ppe, args.throughput))
        with SingleNodeExecutor(max_workers=2, block_allocation=True) as exe:
            lat.append(median_call_latency(exe, args.calls))
            tp.append(throughput(exe, args.throughput))
    el_lat = el_tp = None
    if HAVE_EXECUTORLIB:
        from executorlib import SingleNodeExecutor as ELExecutor

        with ELExecutor(max_workers=2, block_allocation=True) as exe:
            el_lat = median_call_latency(exe, min(args.calls, 100))
            el_tp = throughput(exe, min(args.throughput, 1000))
    row("warm call latency (median)", min(lat), "ProcessPool", min(ppe_lat), "<= 1.2x", el_lat)
    row(f"throughput, {args.throughput} calls, 2 workers", max(tp), "ProcessPool", max(ppe_tp), ">= 1.0x", el_tp, unit="calls/s")


def bench_fresh(args):
    from hpcfutures import SingleNodeExecutor

    def per_task_ms(executor_class):
        with executor_class(max_workers=1) as exe:
            exe.submit(trivial, 0).result()
            t0 = time.perf_counter()
            for i in range(args.fresh):
                exe.submit(trivial, i).result()
            return (time.perf_counter() - t0) / args.fresh * 1000

    # rounds alternate: a bare start, forks of the fork server (the default), a fresh
    # interpreter per task (HPCFUTURES_FORK_SERVER=0); each keeps its best round
    bare, forked, interpreter = [], [], []
    for _ in range(args.rounds):
        bare.append(timed_command([sys.executable, "-c", "pass"], 10))
        forked.append(per_task_ms(SingleNodeExecutor))
        os.environ["HPCFUTURES_FORK_SERVER"] = "0"
        try:
            interpreter.append(per_task_ms(SingleNodeExecutor))
        finally:
            del os.environ["HPCFUTURES_FORK_SERVER"]
    bare, ours = min(bare), min(forked)
    el = None
    if HAVE_EXECUTORLIB:
        from executorlib import SingleNodeExecutor as ELExecutor

        el = per_task_ms(ELExecutor)
    row("fresh process per task, a fresh interpreter (HPCFUTURES_FORK_SERVER=0)", min(interpreter), "bare python -c pass", bare, "(report)")
    row("fresh process per task, cost per task (fork server)", ours, "bare python -c pass", bare, "<= 1.0x", el)


def bench_mpi(args):
    from hpcfutures import SingleNodeExecutor

    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    if mpiexec is None:
        print("(no mpiexec: MPI row skipped)")
        return
    def median_mpi_call_ms(executor_class):
        times = []
        with executor_class(max_cores=2) as exe:
            for i in range(args.mpi):
                t0 = time.perf_counter()
                exe.submit(mpi_rank, i, resource_dict={"cores": 2}).result()
                times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000

    bare = timed_command([mpiexec, "-n", "2", sys.executable, "-c", "from mpi4py import MPI"], args.mpi)
    ours = median_mpi_call_ms(SingleNodeExecutor)
    el = None
    if HAVE_EXECUTORLIB:
        from executorlib import SingleNodeExecutor as ELExecutor

        el = median_mpi_call_ms(ELExecutor)
    row("one MPI call, cores=2", ours, "bare mpiexec -n 2 + mpi4py", bare, "<= 1.3x", el)


def bench_import(args):
    bare = timed_command([sys.executable, "-c", "pass"], 15)
    ours = timed_command([sys.executable, "-c", "import hpcfutures"], 15) - bare
    ours_cls = timed_command([sys.executable, "-c", "from hpcfutures import SingleNodeExecutor"], 15) - bare
    one_shot = timed_command([sys.executable, "-c", "import hpcfutures.worker.one_shot"], 15) - bare
    interactive = timed_command([sys.executable, "-c", "import hpcfutures.worker.interactive"], 15) - bare
    el = None
    if HAVE_EXECUTORLIB:
        el = timed_command([sys.executable, "-c", "import executorlib"], 15) - bare
    row("import hpcfutures (above bare start)", ours, "target", 50.0, "<= 50 ms", el)
    row("from hpcfutures import SingleNodeExecutor", ours_cls, "target", 50.0, "<= 50 ms", el)
    row("worker import: one_shot (above bare start)", one_shot, "bare python -c pass", bare, "(report)")
    row("worker import: interactive (above bare)", interactive, "bare python -c pass", bare, "(report)")


def chain_per_call_ms(exe, n):
    """A chain of n dependent calls: each takes the previous one's future."""
    exe.submit(trivial, 0).result()
    t0 = time.perf_counter()
    fut = exe.submit(increment, 0)
    for _ in range(n - 1):
        fut = exe.submit(increment, fut)
    assert fut.result() == n
    return (time.perf_counter() - t0) / n * 1000


def sequential_per_call_ms(exe, n):
    """The same n calls, each submitted once the previous one's result is back."""
    exe.submit(trivial, 0).result()
    t0 = time.perf_counter()
    value = 0
    for _ in range(n):
        value = exe.submit(increment, value).result()
    return (time.perf_counter() - t0) / n * 1000


def future_argument_latency(exe, n):
    """Median latency of a call whose argument is an already finished future."""
    from concurrent.futures import Future

    done = Future()
    done.set_result(1)
    return median_call_latency(exe, n, argument=done)


def fan_in_cpu_us(exe, n):
    """Driver CPU time (all its threads: submit, scheduling, pickling, socket I/O) per task
    for n independent calls feeding one final call."""
    exe.submit(trivial, 0).result()
    cpu0 = time.process_time()
    futures = [exe.submit(trivial, i) for i in range(n)]
    assert exe.submit(total, futures).result() == n * (n - 1) // 2
    return (time.process_time() - cpu0) / (n + 1) * 1e6


def bench_dependencies(args):
    from hpcfutures import SingleNodeExecutor

    chain, seq, fut_lat, ppe_lat, fan = [], [], [], [], []
    for _ in range(args.rounds):
        with ProcessPoolExecutor(max_workers=2) as ppe:
            ppe_lat.append(median_call_latency(ppe, args.calls))
        with SingleNodeExecutor(max_workers=2, block_allocation=True) as exe:
            fut_lat.append(future_argument_latency(exe, args.calls))
            seq.append(sequential_per_call_ms(exe, args.chain))
            chain.append(chain_per_call_ms(exe, args.chain))
            fan.append(fan_in_cpu_us(exe, args.fan_in))
    el_lat = el_chain = el_fan = None
    if HAVE_EXECUTORLIB:
        from executorlib import SingleNodeExecutor as ELExecutor

        with ELExecutor(max_workers=2, block_allocation=True) as exe:
            el_lat = future_argument_latency(exe, 50)
            el_chain = chain_per_call_ms(exe, 100)
            el_fan = fan_in_cpu_us(exe, 1000)
    row("warm call, argument is a done future", min(fut_lat), "ProcessPool plain call", min(ppe_lat), "<= 1.2x", el_lat)
    row(f"chain of {args.chain} dependent calls, per call", min(chain), "same, submit-and-wait", min(seq), "<= 1.5x", el_chain)
    row(f"fan-in {args.fan_in} -> 1: driver CPU per task", min(fan), "target", 100.0, "< 100 us", el_fan, unit="us")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def per_call_ms(exe, values):
    """Sequential submit-and-wait, per call: the cost a cache adds shows in full."""
    t0 = time.perf_counter()
    for v in values:
        exe.submit(trivial, v).result()
    return (time.perf_counter() - t0) / len(values) * 1000


def bench_cache(args):
    """A hit is answered in the driver; a miss runs the call and writes the entry."""
    import tempfile

    from hpcfutures import SingleNodeExecutor

    n = args.cache_calls
    plain, miss, hit, fresh_plain, fresh_miss = [], [], [], [], []
    for r in range(args.rounds):
        values = range(r * n, (r + 1) * n)
        fresh_values = range(r * args.fresh, (r + 1) * args.fresh)
        with tempfile.TemporaryDirectory() as cache:
            with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
                exe.submit(trivial, -1).result()
                plain.append(per_call_ms(exe, values))
            with SingleNodeExecutor(max_workers=1, block_allocation=True, cache_directory=cache) as exe:
                exe.submit(trivial, -1).result()
                miss.append(per_call_ms(exe, values))
                hit.append(per_call_ms(exe, values))
            with SingleNodeExecutor(max_workers=1) as exe:
                fresh_plain.append(per_call_ms(exe, fresh_values))
        with tempfile.TemporaryDirectory() as cache:
            with SingleNodeExecutor(max_workers=1, cache_directory=cache) as exe:
                fresh_miss.append(per_call_ms(exe, fresh_values))
    el_hit = None
    if HAVE_EXECUTORLIB and _importable("h5py"):  # executorlib's cache needs h5py
        from executorlib import SingleNodeExecutor as ELExecutor

        with tempfile.TemporaryDirectory() as cache:
            with ELExecutor(max_workers=1, cache_directory=cache) as exe:
                per_call_ms(exe, range(20))
            with ELExecutor(max_workers=1, cache_directory=cache) as exe:
                el_hit = per_call_ms(exe, range(20))
    row("cache hit, small result", min(hit), "target", 1.0, "<= 1 ms", el_hit)
    row("cache miss, fresh process per task", min(fresh_miss), "same calls, no cache", min(fresh_plain), "<= 1.2x")
    row("cache miss, warm worker, trivial call", min(miss), "same calls, no cache", min(plain), "(report)")


def _unit(unit: str) -> str:
    return {"ms": "ms", "us": "us"}.get(unit, "/s")


def print_table():
    head = f"| {'measure':44} | {'hpcfutures':>12} | {'peer':28} | {'peer value':>12} | {'ratio':>6} | {'target':>9} | {'executorlib':>12} |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for name, ours, peer_name, peer, target, el, unit in ROWS:
        ratio = ours / peer if peer else float("nan")
        el_text = f"{el:10.2f}" if el is not None else "-"
        print(
            f"| {name:44} | {ours:9.2f} {_unit(unit):>2} | {peer_name:28} | {peer:9.2f} {_unit(unit):>2} | "
            f"{ratio:6.2f} | {target:>9} | {el_text:>12} |"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500, help="sequential warm calls for the latency median")
    parser.add_argument("--throughput", type=int, default=5000, help="calls for the throughput row")
    parser.add_argument("--fresh", type=int, default=30, help="tasks for the fresh-process row")
    parser.add_argument("--mpi", type=int, default=5, help="repeats for the MPI row")
    parser.add_argument("--chain", type=int, default=1000, help="length of the dependent chain")
    parser.add_argument("--fan-in", type=int, default=10000, help="futures feeding the final call")
    parser.add_argument("--cache-calls", type=int, default=300, help="calls for the cache rows")
    parser.add_argument("--only", choices=["import", "warm", "deps", "cache", "fresh", "mpi"], help="run one group of rows")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the warm rows")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, executorlib: {'yes' if HAVE_EXECUTORLIB else 'not installed'}")
    groups = {"import": bench_import, "warm": bench_warm, "deps": bench_dependencies, "cache": bench_cache, "fresh": bench_fresh, "mpi": bench_mpi}
    for name, bench in groups.items():
        if args.only in (None, name):
            bench(args)
    print_table()


if __name__ == "__main__":
    main()
