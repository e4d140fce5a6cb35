"""Run one task stored in a cache entry and write its result back into the entry — the
worker side of the queued-job executors (``SlurmClusterExecutor``, ``TestClusterExecutor``).

Usage: ``python -m hpcfutures.worker.file_task ENTRY [--mpi]``. The entry holds the pickled
call; arguments that were futures of other jobs arrive as ``UpstreamResult`` markers, read
here from those jobs' entries (the scheduler started this job only after they succeeded).
With ``--mpi`` every rank runs the function and rank 0 writes the list of rank results.
Standard library only (and mpi4py for ``--mpi``), like every worker module.
"""

from __future__ import annotations

import os
import sys
import time

from hpcfutures.cache.entry import EntryReader, write_entry
from hpcfutures.wire.frames import loads
from hpcfutures.worker.execute import adopt_driver_path, call, encode_reply, error_reply, flush_std_streams
from hpcfutures.worker.upstream import resolve


def run_entry(path: str, comm=None) -> int:
    started = time.monotonic()
    with EntryReader(path) as reader:
        header = dict(reader.header)
        input_bytes = reader.input_bytes()
    try:
        message = loads(input_bytes)
        message["args"] = resolve(message.get("args", ()))
        message["kwargs"] = resolve(message.get("kwargs", {}))
        reply = call(message, {})
    except BaseException as exc:  # an unreadable call or upstream: this task fails, with the reason
        reply = error_reply(exc)
    if comm is not None:
        replies = comm.gather(reply, root=0)
        if comm.Get_rank() != 0:
            return 0
        failed = [r for r in replies if "error" in r]
        reply = failed[0] if failed else {"result": [r["result"] for r in replies]}
    flush_std_streams()
    header.update(status="ok" if "result" in reply else "error", runtime=time.monotonic() - started, host=os.uname().nodename)
    write_entry(path, header, input_bytes, encode_reply(reply))
    return 0


def main(argv: list) -> int:
    adopt_driver_path()
    comm = None
    if "--mpi" in argv[2:]:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
    return run_entry(argv[1], comm)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
