"""A tour of hpcfutures on one machine: serial, MPI-parallel, dependent, cached and warm-worker calls.

Run with ``bash scripts/demo.sh`` (sets up .venv with Open MPI from PyPI first).
"""

import os
import tempfile
import time

from hpcfutures import SingleNodeExecutor


def square(x):
    return x * x


def add(a, b):
    return a + b


def mpi_info(label):
    """Runs on every MPI rank; the caller gets the list of rank results."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    return label, comm.Get_size(), comm.Get_rank()


def threads_seen():
    return os.environ["OMP_NUM_THREADS"]


def init_model():
    """Runs once per warm worker; its entries feed every later call by parameter name."""
    return {"offset": 1000, "table": list(range(10))}


def lookup(i, offset, table):
    return table[i] + offset


def slow_square(x):
    time.sleep(0.5)
    return x * x


def main():
    print("== one fresh process per call ==")
    with SingleNodeExecutor() as exe:
        t0 = time.perf_counter()
        print("serial       square(7) =", exe.submit(square, 7).result())
        print("map          squares   =", list(exe.map(square, range(6))))
        print("MPI, 2 ranks          =", exe.submit(mpi_info, "hello", resource_dict={"cores": 2}).result())
        print("threads_per_core=2    -> OMP_NUM_THREADS =", exe.submit(threads_seen, resource_dict={"threads_per_core": 2}).result())
        # dependencies: futures as arguments; the last call waits for both, no polling
        a = exe.submit(square, 3)
        b = exe.submit(square, 4)
        print("dependent    add(square(3), square(4)) =", exe.submit(add, a, b).result())
        try:
            exe.submit(divmod, 1, 0).result()
        except ZeroDivisionError as exc:
            print("errors       the original type comes back:", type(exc).__name__, "-", exc)
        print(f"             ({time.perf_counter() - t0:.2f} s)")

    print("== result cache ==")
    from hpcfutures import get_cache_data

    with tempfile.TemporaryDirectory() as cache:
        for run in ("first run ", "second run"):
            with SingleNodeExecutor(cache_directory=cache) as exe:
                t0 = time.perf_counter()
                values = [f.result() for f in [exe.submit(slow_square, i) for i in range(4)]]
                print(f"{run}   slow_square x4 = {values} in {time.perf_counter() - t0:.3f} s")
        entries = get_cache_data(cache)
        print(f"cache holds {len(entries)} entries, e.g. {entries[0]['cache_key']}: status {entries[0]['status']}, "
              f"output {entries[0]['output']}, runtime {entries[0]['runtime']:.2f} s")

    print("== warm workers (block_allocation=True) ==")
    with SingleNodeExecutor(block_allocation=True, max_workers=2, init_function=init_model) as exe:
        t0 = time.perf_counter()
        futures = [exe.submit(lookup, i) for i in range(5)]
        print("init_function state   =", [f.result() for f in futures])
        t1 = time.perf_counter()
        results = list(exe.map(square, range(1000)))
        t2 = time.perf_counter()
        print(f"1000 warm calls       = sum {sum(results)} in {t2 - t1:.2f} s ({(t2 - t1):.3f} ms per call)")

    with SingleNodeExecutor(block_allocation=True, max_workers=1, resource_dict={"cores": 2}) as exe:
        print("warm MPI worker, 2 ranks =", [exe.submit(mpi_info, i).result() for i in range(3)])


if __name__ == "__main__":
    main()
