"""Run one task stored in a cache entry and write its result back into the entry — the
worker side of the queued-job executors (``SlurmClusterExecutor``, ``TestClusterExecutor``).

Usage: ``python -m hpcfutures.worker.file_task ENTRY [--mpi=N]``. The entry holds the pickled
call; arguments that were futures of other jobs arrive as ``UpstreamResult`` markers, read
here from those jobs' entries (the scheduler started this job only after they succeeded).
With ``--mpi=N`` the ranks must form one world of N (``mpi_world``); every rank runs the
function and rank 0 writes the list of rank results, or the error of the lowest failing
rank. A rank that fails while others cannot finish writes its error and aborts the job.
Standard library only (and mpi4py for ``--mpi``), like every worker module.
"""

from __future__ import annotations

import os
import sys
import time

from hpcfutures.cache.entry import EntryReader, write_entry
from hpcfutures.wire.frames import loads
from hpcfutures.wire.replies import combine
from hpcfutures.worker.directory import enter_working_directory
from hpcfutures.worker.execute import adopt_driver_path, call, encode, error_reply, flush_std_streams
from hpcfutures.worker.mpi_world import requested_ranks
from hpcfutures.worker.upstream import resolve


def run_entry(path: str, world=None) -> int:
    started = time.monotonic()
    with EntryReader(path) as reader:
        header = dict(reader.header)
        input_bytes = reader.input_bytes()
    try:
        if header.get("cwd"):  # the call runs there or fails saying why, never elsewhere
            enter_working_directory(header["cwd"])
        message = loads(input_bytes)
        message["args"] = resolve(message.get("args", ()))
        message["kwargs"] = resolve(message.get("kwargs", {}))
        reply = call(message, {})
    except BaseException as exc:  # an unreadable call or upstream: this task fails, with the reason
        reply = error_reply(exc)
    output, failed = encode(reply)
    flush_std_streams()

    def write(output: bytes, failed: bool) -> None:
        header.update(status="error" if failed else "ok", runtime=time.monotonic() - started, host=os.uname().nodename)
        write_entry(path, header, input_bytes, output)

    if world is not None:
        everyone, parts = world.end_of_call(output, failed)
        if not everyone:  # others wait for this rank in a collective: store its error, end the job
            note = f"on MPI rank {world.rank} of {world.size} (it aborted the MPI job, since other ranks did not reach the end of the call):\n"
            world.report_and_abort(output, write=lambda envelope: write(_with_note(output, note), True))
        if world.rank != 0:
            return 0
        combined = combine(parts)  # the entry holds one plain reply, as readers expect
        output, failed = encode(combined)
    write(output, failed)
    return 0


def main(argv: list) -> int:
    adopt_driver_path()
    ranks = requested_ranks(argv[2:])
    if ranks is None:
        return run_entry(argv[1])
    from mpi4py import MPI

    from hpcfutures.worker.mpi_world import World, exit_after_world_error

    world = World(MPI.COMM_WORLD, b"")
    wrong = world.check(ranks)
    if wrong is not None:  # the launcher's rank 0 writes the error into the entry
        return exit_after_world_error(world, wrong, write=lambda envelope: _write_error(argv[1], wrong))
    try:
        return run_entry(argv[1], world)
    except BaseException as exc:  # this rank's own path failed (an unreadable entry, ...): end the job, say why
        problem = RuntimeError(f"the MPI job's worker failed on rank {world.rank}: {type(exc).__name__}: {exc}")
        world.report_and_abort(b"", write=lambda envelope: _write_error(argv[1], problem))


def _with_note(output: bytes, note: str) -> bytes:
    """An error reply with ``note`` before its traceback (``encode`` made sure it loads)."""
    try:
        reply = loads(output)
        reply["traceback"] = note + (reply.get("traceback") or "")
        return encode(reply)[0]
    except Exception:
        return output


def _write_error(path: str, exc: BaseException) -> None:
    with EntryReader(path) as reader:
        header = dict(reader.header)
        input_bytes = reader.input_bytes()
    header.update(status="error", host=os.uname().nodename)
    write_entry(path, header, input_bytes, encode(error_reply(exc))[0])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
