"""SLURM executors against bare SLURM commands on the local one-node SLURM, in one run.

Run: ``bash scripts/bench.sh --slurm`` (starts SLURM with scripts/slurm.sh if needed).
Rows: one trivial call through SlurmClusterExecutor vs ``sbatch --wait`` of the same Python
call; 50 independent calls vs 50 concurrent ``sbatch --wait``, with the number of queue
queries the executor made; one call through SlurmJobExecutor vs a bare ``srun -n 1 python
-c pass`` inside an allocation.
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

from work import trivial  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BARE_CALL = f"{sys.executable} -c 'import sys; sys.path.insert(0, \"{HERE}\"); from work import trivial; trivial(1)'"


def bare_sbatch_wait(n: int, workdir: str) -> float:
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(["sbatch", "--wait", "--quiet", f"--output={workdir}/bare-%j.out", "--wrap", BARE_CALL])
        for _ in range(n)
    ]
    for p in procs:
        assert p.wait() == 0
    return time.perf_counter() - t0


def ours_cluster(n: int, workdir: str) -> tuple[float, int]:
    from hpcfutures import SlurmClusterExecutor

    with tempfile.TemporaryDirectory(dir=workdir) as cache:
        t0 = time.perf_counter()
        with SlurmClusterExecutor(cache_directory=cache) as exe:
            futures = [exe.submit(trivial, i) for i in range(n)]
            assert [f.result() for f in futures] == list(range(n))
            queries = exe.queue_queries
        return time.perf_counter() - t0, queries


def compile_package() -> None:
    """Write the package's bytecode, as ``pip install`` does: an srun task imports the worker
    modules from ``__pycache__``. A source tree run with ``PYTHONDONTWRITEBYTECODE=1`` (or one
    whose sources changed since) would compile them again in every task (~5 ms here), a cost
    no installed package has. The bare reference imports nothing, so this touches only ours."""
    import compileall

    import hpcfutures

    compileall.compile_dir(os.path.dirname(hpcfutures.__file__), quiet=1)


def inside_allocation(rounds: int) -> None:
    """Runs under salloc: one srun task, ours vs bare, alternating (noise falls on both).
    Prints ``SRUN <ours median> <bare median>`` (seconds; what bench_peers.py reads), then a
    line with the best of each and the rounds."""
    from hpcfutures import SlurmJobExecutor

    compile_package()
    bare, ours = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        subprocess.run(["srun", "-n", "1", sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - t0)
        with SlurmJobExecutor() as exe:
            t0 = time.perf_counter()
            exe.submit(trivial, 1).result()
            ours.append(time.perf_counter() - t0)
    print(f"SRUN {statistics.median(ours)} {statistics.median(bare)}")
    print(f"srun best of {rounds}: ours {min(ours)} bare {min(bare)} ratio {min(ours) / min(bare):.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--many", type=int, default=50)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        inside_allocation(args.rounds)
        return
    rows = []
    with tempfile.TemporaryDirectory(dir=os.getcwd()) as workdir:
        one_bare, one_ours = [], []
        for _ in range(args.rounds):  # alternate, so noise falls on both
            one_bare.append(bare_sbatch_wait(1, workdir))
            one_ours.append(ours_cluster(1, workdir)[0])
        rows.append(("one call, submit to result", statistics.median(one_ours), "sbatch --wait", statistics.median(one_bare), "<= 1.3x", ""))
        many_bare = bare_sbatch_wait(args.many, workdir)
        many_ours, queries = ours_cluster(args.many, workdir)
        rows.append((f"{args.many} independent calls, total", many_ours, f"{args.many} x sbatch --wait", many_bare, "<= 1.3x", f"{queries} queue queries"))
    out = subprocess.run(
        ["salloc", "-n", "2", sys.executable, os.path.abspath(__file__), "--inside", "--rounds", str(args.rounds)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(l for l in out.stdout.splitlines() if l.startswith("SRUN"))
    ours, bare = map(float, line.split()[1:])
    rows.append(("one srun task (SlurmJobExecutor)", ours, "srun -n 1 python -c pass", bare, "<= 1.3x", ""))
    print(f"| {'measure':36} | {'hpcfutures':>10} | {'peer':26} | {'peer value':>10} | {'ratio':>5} | {'target':>7} | note |")
    print("|" + "|".join("-" * n for n in (38, 12, 28, 12, 7, 9, 6)) + "|")
    for name, o, peer_name, peer, target, note in rows:
        print(f"| {name:36} | {o:8.3f} s | {peer_name:26} | {peer:8.3f} s | {o / peer:5.2f} | {target:>7} | {note} |")


if __name__ == "__main__":
    main()
