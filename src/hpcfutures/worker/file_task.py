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

from hpcfutures.cache.entry import EntryReader, finish_header, write_entry
from hpcfutures.wire.frames import loads
from hpcfutures.wire.replies import combine, open_reply
from hpcfutures.worker.directory import enter_working_directory
from hpcfutures.worker.execute import adopt_driver_path, call, encode, error_reply, flush_std_streams
from hpcfutures.worker.mpi_world import requested_ranks
from hpcfutures.worker.upstream import resolve


def run_entry(path: str, world=None) -> int:
    """Run the call stored in a cache entry and write its reply into the entry.

    Args:
        path: the entry's file (written by the driver with status ``queued``).
        world: the MPI world of a call with ``cores > 1``; ``None``: serial.

    Returns:
        The exit status (0: the reply, success or failure, is written).
    """
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
        done = finish_header(header, failed, runtime=time.monotonic() - started, host=os.uname().nodename)
        write_entry(path, done, input_bytes, output)

    if world is not None:
        everyone, parts = world.end_of_call(output, failed)
        if not everyone:  # others wait for this rank in a collective: store its error, end the job
            # opened as the driver opens a warm worker's envelope: one wording of the failure
            world.report_and_abort(output, write=lambda envelope: write(_opened(envelope), True))
        if world.rank != 0:
            return 0
        combined = combine(parts)  # the entry holds one plain reply, as readers expect
        output, failed = encode(combined)
    write(output, failed)
    return 0


def main(argv: list) -> int:
    """``python -m hpcfutures.worker.file_task ENTRY [...]``: a batch job's worker.

    Args:
        argv: ``sys.argv``; ``argv[1]`` the entry, then the ranks asked for, if any.

    Returns:
        The process's exit status.
    """
    adopt_driver_path()
    ranks = requested_ranks(argv[2:])
    if ranks is None:
        return run_entry(argv[1])
    from mpi4py import MPI

    from hpcfutures.worker.mpi_world import World, exit_after_world_error

    world = World(MPI.COMM_WORLD, b"")
    wrong = world.check(ranks)
    if wrong is not None:  # the launcher's rank 0 writes the error into the entry
        return exit_after_world_error(world, wrong, write=lambda envelope: _write_error(argv[1], _opened(envelope)))
    try:
        return run_entry(argv[1], world)
    except BaseException as exc:  # this rank's own path failed (an unreadable entry, ...): end the job, say why
        problem = RuntimeError(f"the MPI job's worker failed on rank {world.rank}: {type(exc).__name__}: {exc}")
        world.report_and_abort(encode(error_reply(problem))[0], write=lambda envelope: _write_error(argv[1], _opened(envelope)))


def _opened(envelope: bytes) -> bytes:
    """The plain reply stored for an aborted rank's envelope (``wire.replies.aborted``),
    with the note naming the rank that ``open_reply`` gives it for a warm worker."""
    reply = open_reply(envelope).reply
    if isinstance(reply, BaseException):  # cannot happen for an envelope built here; stay a reply
        reply = error_reply(reply)
    return encode(reply)[0]


def _write_error(path: str, output: bytes) -> None:
    with EntryReader(path) as reader:
        header = dict(reader.header)
        input_bytes = reader.input_bytes()
    write_entry(path, finish_header(header, True, host=os.uname().nodename), input_bytes, output)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
