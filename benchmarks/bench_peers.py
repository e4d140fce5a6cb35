"""Issue 15's rows: hpcfutures beside what a user would pick instead, all in this one run.

Peers (each skipped with a note when not installed; ``pip install "hpcfutures[bench]"``):
``concurrent.futures.ProcessPoolExecutor``, ``multiprocessing.Pool``, loky
(``get_reusable_executor``), dask.distributed (``LocalCluster(processes=True)`` + ``Client``)
and executorlib. Every pool has 2 workers. Rounds alternate between the systems and each
keeps its best round, so that the machine's noise falls on all alike; ratios (hpcfutures /
best peer), not absolute times, are the result. Timings are printed, never asserted.

Run: ``bash scripts/bench.sh`` (this table, then the older single-node rows);
``python benchmarks/bench_peers.py --quick`` for a smaller run.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from work import identity, trivial, wait_for_path  # noqa: E402  (importable by every worker)

PEERS = ["ProcessPool", "mp.Pool", "loky", "dask", "executorlib"]
ROWS: list[dict] = []


# -- the systems, as context managers yielding a small adapter ---------------------------------
class System:
    """A 2-worker pool behind one small interface: ``submit(fn, *a) -> waitable``,
    ``result(w)``, ``map(fn, items) -> list`` and the object emcee gets as ``pool=``."""

    def __init__(self, name, pool, submit, result, map_, close):
        self.name, self.pool, self._submit, self._result, self._map, self._close = name, pool, submit, result, map_, close

    def submit(self, fn, *args):
        return self._submit(fn, *args)

    def result(self, w):
        return self._result(w)

    def map(self, fn, items):
        return self._map(fn, items)

    def close(self):
        self._close()


def _executor(name, exe, close=None):
    return System(name, exe, exe.submit, lambda f: f.result(), lambda fn, items: list(exe.map(fn, items)), close or (lambda: exe.shutdown(wait=True)))


def start(name: str) -> System | None:
    try:
        if name == "hpcfutures":
            from hpcfutures import SingleNodeExecutor

            return _executor(name, SingleNodeExecutor(max_workers=2, block_allocation=True))
        if name == "ProcessPool":
            from concurrent.futures import ProcessPoolExecutor

            return _executor(name, ProcessPoolExecutor(max_workers=2))
        if name == "mp.Pool":
            import multiprocessing

            pool = multiprocessing.Pool(2)
            return System(
                name, pool, lambda fn, *a: pool.apply_async(fn, a), lambda r: r.get(), pool.map,
                lambda: (pool.close(), pool.join()),
            )  # fmt: skip
        if name == "loky":
            import loky

            exe = loky.get_reusable_executor(max_workers=2, reuse=False)
            return _executor(name, exe)
        if name == "dask":
            from distributed import Client, LocalCluster

            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
            exe = client.get_executor(pure=False)

            def close():
                client.close()
                cluster.close()

            return _executor(name, exe, close)
        if name == "executorlib":
            from executorlib import SingleNodeExecutor as ELExecutor

            return _executor(name, ELExecutor(max_workers=2, block_allocation=True))
    except ImportError:
        return None
    raise ValueError(name)


def available(names):
    found = []
    for name in names:
        system = start(name)
        if system is None:
            print(f"({name}: not installed, column left empty)")
            continue
        system.close()
        found.append(name)
    return found


# -- measurements (each takes a started system, returns one number) --------------------------
def emcee_pool_seconds(system, steps):
    import emcee
    import numpy as np

    from work import log_prob

    np.random.seed(1)
    initial = np.random.randn(32, 5)
    emcee.EnsembleSampler(32, 5, log_prob, pool=system.pool).run_mcmc(initial, 2, progress=False)  # warm
    t0 = time.perf_counter()
    emcee.EnsembleSampler(32, 5, log_prob, pool=system.pool).run_mcmc(initial, steps, progress=False)
    return time.perf_counter() - t0


def map32_ms(system, n):
    """emcee's call without emcee: map over 32 walkers (5 floats each), per map."""
    import numpy as np

    from work import log_prob

    walkers = list(np.random.randn(32, 5))
    system.map(log_prob, walkers)
    t0 = time.perf_counter()
    for _ in range(n):
        system.map(log_prob, walkers)
    return (time.perf_counter() - t0) / n * 1000


def map_items_per_s(system, n):
    system.map(trivial, range(10))
    t0 = time.perf_counter()
    out = system.map(trivial, range(n))
    elapsed = time.perf_counter() - t0
    assert out[-1] == n - 1
    return n / elapsed


def big_roundtrip_ms(system, mbytes):
    import numpy as np

    data = np.ones(mbytes * (1 << 20) // 8)
    system.result(system.submit(identity, data[:10]))
    t0 = time.perf_counter()
    back = system.result(system.submit(identity, data))
    elapsed = time.perf_counter() - t0
    assert back.shape == data.shape
    return elapsed * 1000


def per_task_us(system, n):
    """n calls submitted at once, then every result: wall time per task."""
    system.result(system.submit(trivial, 0))
    gc.collect()
    t0 = time.perf_counter()
    waitables = [system.submit(trivial, i) for i in range(n)]
    for w in waitables:
        system.result(w)
    return (time.perf_counter() - t0) / n * 1e6


def pending_bytes_per_task(system, n):
    """Driver memory per pending task: both workers held by a gate, n tasks submitted; the
    Python memory they hold (tracemalloc: every thread of the driver), per task."""
    import tracemalloc

    with tempfile.TemporaryDirectory() as folder:
        gate = os.path.join(folder, "gate")
        blockers = [system.submit(wait_for_path, gate, 600.0) for _ in range(2)]
        time.sleep(0.5)  # let both blockers reach their workers
        gc.collect()
        tracemalloc.start()
        try:
            waitables = [system.submit(trivial, i) for i in range(n)]
            held = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        open(gate, "w").close()
        for w in blockers + waitables:
            system.result(w)
    return held / n


# -- rows ------------------------------------------------------------------------------------
def measure(name, unit, target, fn, systems, rounds, better="lower", reference=None):
    """Alternate rounds over the systems; keep each one's best. Every other round runs the
    systems in reverse order: a system always measured right after the same slow peer
    (dask's 20,000-item map takes ~20 s, and its processes stay busy for a while after)
    would otherwise always pay for that peer's aftermath."""
    best: dict = {}
    names = list(systems)
    for round_number in range(rounds):
        for sys_name in names if round_number % 2 == 0 else names[::-1]:
            system = systems[sys_name]
            try:
                value = fn(system)
            except Exception as exc:  # a peer that cannot do this row: say so, keep going
                print(f"({name}: {sys_name} failed: {type(exc).__name__}: {exc})")
                continue
            keep = min if better == "lower" else max
            best[sys_name] = value if sys_name not in best else keep(best[sys_name], value)
    ROWS.append({"name": name, "unit": unit, "target": target, "values": best, "better": better, "reference": reference})


def timed_command_ms(argv, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


def fresh_rows(args):
    from hpcfutures import SingleNodeExecutor

    def per_task_ms(executor_class):
        with executor_class(max_workers=1) as exe:
            exe.submit(trivial, 0).result()
            t0 = time.perf_counter()
            for i in range(args.fresh):
                exe.submit(trivial, i).result()
            return (time.perf_counter() - t0) / args.fresh * 1000

    values, bare, forked = {}, [], []
    for _ in range(args.rounds):
        bare.append(timed_command_ms([sys.executable, "-c", "pass"], 5))
        values["hpcfutures"] = min(values.get("hpcfutures", 1e9), per_task_ms(SingleNodeExecutor))
        forked.append(fork_server_per_task_ms(args.fresh))
    try:
        from executorlib import SingleNodeExecutor as ELExecutor

        values["executorlib"] = per_task_ms(ELExecutor)
    except ImportError:
        pass
    ROWS.append({
        "name": "fresh process per task: fork server launcher", "unit": "ms", "target": "<= 1.0x bare",
        "values": {"hpcfutures": min(forked)}, "better": "lower", "reference": ("bare python -c pass", min(bare)),
    })  # fmt: skip
    ROWS.append({
        "name": "fresh process per task (default mode), per task", "unit": "ms", "target": "<= 1.0x bare",
        "values": values, "better": "lower", "reference": ("bare python -c pass", min(bare)),
    })  # fmt: skip


def fork_server_per_task_ms(n):
    """One serial task after another, each a fork of the fork server: the launcher alone
    (the engines take it once the launcher interface of issue 13 is merged)."""
    from hpcfutures.launch.forkserver import ForkServerLauncher
    from hpcfutures.launch.process import worker_environment
    from hpcfutures.wire.frames import dumps_by_value, loads, new_key, read_frame, write_frame

    key = new_key()
    launcher = ForkServerLauncher()

    def one(i):
        task_r, task_w = os.pipe()
        reply_r, reply_w = os.pipe()
        handle = launcher.start_one_shot(task_r, reply_w, {"cores": 1}, worker_environment(key, 1), None)
        os.close(task_r)
        os.close(reply_w)
        write_frame(task_w, key, dumps_by_value({"fn": trivial, "args": (i,), "kwargs": {}}))
        os.close(task_w)
        assert loads(read_frame(reply_r, key))["result"] == i
        os.close(reply_r)
        handle.wait_ended(10)
        handle.close()

    try:
        one(0)
        t0 = time.perf_counter()
        for i in range(n):
            one(i)
        return (time.perf_counter() - t0) / n * 1000
    finally:
        launcher.close()


def srun_row(args):
    if not shutil.which("salloc") or subprocess.run(["sinfo"], capture_output=True).returncode != 0:
        print("(no SLURM here: the srun row is left out)")
        return
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_slurm.py")
    try:
        out = subprocess.run(
            ["salloc", "-n", "2", sys.executable, script, "--inside", "--rounds", str(args.rounds)],
            capture_output=True, text=True, check=True, timeout=300,
        )  # fmt: skip
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"(srun row failed: {exc})")
        return
    line = next(l for l in out.stdout.splitlines() if l.startswith("SRUN"))
    ours, bare = map(float, line.split()[1:])
    ROWS.append({
        "name": "one srun task, SlurmJobExecutor", "unit": "ms", "target": "<= 1.3x bare",
        "values": {"hpcfutures": ours * 1000}, "better": "lower", "reference": ("srun -n 1 python -c pass", bare * 1000),
    })  # fmt: skip


# -- the table -------------------------------------------------------------------------------
def _fmt(value, unit):
    if value is None:
        return "-"
    if unit in ("items/s",):
        return f"{value / 1000:,.0f}k"
    if unit == "B":
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def print_table(names):
    cols = ["hpcfutures", *names]
    head = ["measure", "unit", *cols, "best peer", "ratio", "target"]
    lines = []
    for row in ROWS:
        values = row["values"]
        ours = values.get("hpcfutures")
        peers = {k: v for k, v in values.items() if k != "hpcfutures"}
        if row["reference"] is not None:
            peers = {row["reference"][0]: row["reference"][1]}
        if peers and ours:
            pick = min if row["better"] == "lower" else max
            best_name = pick(peers, key=peers.get)
            best = peers[best_name]
            if best > 0:
                ratio = ours / best if row["better"] == "lower" else best / ours  # > 1: hpcfutures slower
                ratio_text = f"{ratio:.2f}x"
            else:
                ratio_text = "inf"
        else:
            best_name, ratio_text = "-", "-"
        cells = [row["name"], row["unit"]] + [_fmt(values.get(c), row["unit"]) for c in cols]
        if row["reference"] is not None:
            best_name = f"{row['reference'][0]} = {_fmt(row['reference'][1], row['unit'])}"
        lines.append(cells + [best_name, ratio_text, row["target"]])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for cells in lines:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |")
    print("ratio: hpcfutures' time over the best peer's (for items/s: the best peer's rate over ours); < 1 is better")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; each system keeps its best")
    parser.add_argument("--steps", type=int, default=100, help="emcee steps")
    parser.add_argument("--items", type=int, default=20000, help="items of the map-throughput row")
    parser.add_argument("--mbytes", type=int, default=100, help="size of the big argument/result")
    parser.add_argument("--scale", default="1000,10000,100000", help="tasks submitted at once, per scale row")
    parser.add_argument("--fresh", type=int, default=30, help="tasks of the fresh-process row")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and smaller sizes")
    parser.add_argument("--no-slurm", action="store_true", help="leave the srun row out")
    args = parser.parse_args()
    import logging
    import warnings

    warnings.filterwarnings("ignore", message="Sending large graph")  # dask, for the big-data row
    logging.getLogger("distributed").setLevel(logging.ERROR)
    if args.quick:
        args.rounds, args.steps, args.items, args.mbytes, args.scale, args.fresh = 1, 30, 5000, 20, "1000,10000", 10
    scales = [int(x) for x in args.scale.split(",") if x]
    names = available(PEERS)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; peers: {', '.join(names)}")
    all_names = ["hpcfutures", *names]
    systems = {}
    try:
        # hpcfutures starts last and every pool is warmed before the next one starts: a pool
        # that forks (multiprocessing's default on Linux) while another thread is inside
        # subprocess.Popen leaves that Popen waiting on a pipe the forked child holds open
        for name in [*names, "hpcfutures"]:
            systems[name] = start(name)
            systems[name].map(trivial, range(4))
        systems = {name: systems[name] for name in all_names}
        measure(f"emcee 32 walkers x {args.steps} steps, pool=", "s", "<= 1.0x Pool", lambda s: emcee_pool_seconds(s, args.steps), systems, args.rounds)
        measure("map of 32 walkers (emcee's call), per map", "ms", "(report)", lambda s: map32_ms(s, 2 * args.steps), systems, args.rounds)
        # executorlib answers one message per item (~3k/s here): a 20,000-item map takes ~10 s a round
        big_map = {k: v for k, v in systems.items() if k != "executorlib"}
        measure(f"map of {args.items} trivial items", "items/s", ">= 1.0x Pool", lambda s: map_items_per_s(s, args.items), big_map, args.rounds, better="higher")
        measure(f"{args.mbytes} MB numpy argument + result, round trip", "ms", "<= 1.0x ProcessPool", lambda s: big_roundtrip_ms(s, args.mbytes), systems, args.rounds)
        scale_systems = {k: v for k, v in systems.items() if k in ("hpcfutures", "ProcessPool", "mp.Pool", "loky")}
        for n in scales:
            measure(f"{n:,} tasks submitted at once, per task", "us", "flat", lambda s, n=n: per_task_us(s, n), scale_systems, 1 if n >= 100000 else args.rounds)
        measure(f"driver memory per pending task ({scales[-1]:,} pending)", "B", "<= ProcessPool", lambda s: pending_bytes_per_task(s, scales[-1]), scale_systems, 1)
    finally:
        for system in systems.values():
            if system is not None:
                system.close()
    fresh_rows(args)
    if not args.no_slurm:
        srun_row(args)
    print_table(names)


if __name__ == "__main__":
    main()
