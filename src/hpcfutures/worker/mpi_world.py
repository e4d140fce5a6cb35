"""The MPI side of every worker: one world of the size asked for, and an end for every
call even when one rank fails.

Two rules, shared by the warm/fresh worker (``interactive --mpi=N``) and the batch-job
worker (``file_task --mpi=N``):

1. At start-up every rank compares ``COMM_WORLD.Get_size()`` with the ranks the task asked
   for. A launcher without a PMI this MPI library understands (``srun --mpi=none`` with
   MPICH, ``--mpi=pmi2`` with Open MPI) starts N singletons instead of one world of N; each
   would run the function alone and the first answer would win. Instead each singleton
   reports an ``MPIWorldError`` that names the likely cause, and exits.
2. After a call, the ranks meet in a non-blocking barrier on a private communicator. A
   rank whose call succeeded waits there. A rank whose call failed waits at most
   ``AGREE_GRACE`` seconds: when every rank arrives, the replies are gathered as usual
   (the worker lives on); when some do not — typically they wait in a collective for the
   failed rank — it sends its error to the driver (rank 0 over its link, others as one
   sealed line on stderr) and aborts the job, as ``python -m mpi4py`` does.

Standard library and mpi4py only, like every worker module.
"""

from __future__ import annotations

import os
import sys
import time

from hpcfutures.errors import MPIWorldError
from hpcfutures.wire.frames import seal
from hpcfutures.wire.replies import REPORT_MARK, aborted

AGREE_GRACE = 1.0
"""Seconds a failed rank waits for the others at the end of a call before it aborts the job.
It decides only whether the worker survives: the call has failed either way."""

_FORWARD_GRACE = 0.2  # seconds a rank reporting on stderr waits before MPI_Abort
_EXIT_CODE = 17  # what a worker that could not form its world exits with


def requested_ranks(argv: list) -> int | None:
    """The world size asked for on the command line.

    Args:
        argv: the worker's arguments after the first.

    Returns:
        N for ``--mpi=N``; 0 for a bare ``--mpi`` (no check, for callers that do not say);
        ``None`` for a serial worker.
    """
    for arg in argv:
        if arg == "--mpi":
            return 0
        if arg.startswith("--mpi="):
            return int(arg.split("=", 1)[1])
    return None


def library_version(mpi) -> str:
    """The first line of the MPI library's version (``"unknown MPI"`` when it cannot
    be read), for errors that name the MPI in use.
    """
    try:
        return mpi.Get_library_version().replace("\x00", "").strip().splitlines()[0].strip()
    except Exception:
        return "unknown MPI"


def world_error(expected: int, size: int, mpi) -> MPIWorldError:
    """The error for a world of the wrong size.

    Args:
        expected: ranks the task asked for.
        size: ranks this process's ``MPI_COMM_WORLD`` has.
        mpi: the ``mpi4py.MPI`` module (for the library's name).

    Returns:
        An ``MPIWorldError`` naming the library, the launcher's PMI and the remedy.
    """
    library = library_version(mpi)
    family = "Open MPI" if "open mpi" in library.lower() else "MPICH" if "mpich" in library.lower() else None
    if "SLURM_STEP_ID" in os.environ:  # srun sets SLURM_MPI_TYPE for every plugin but none
        launcher = f"srun --mpi={os.environ.get('SLURM_MPI_TYPE', 'none')}"
    elif "FLUX_JOB_ID" in os.environ:  # a Flux job: the shell's pmi option is the knob
        launcher = "the Flux job shell"
    else:
        launcher = "the launcher"
    if launcher == "the Flux job shell":
        remedy = {"Open MPI": "pmi_mode='pmix' (flux run -o pmi=pmix)", "MPICH": "pmi_mode=None (Flux's default, simple)"}.get(
            family, "pmi_mode='pmix' for Open MPI or None for MPICH"
        )
    else:
        remedy = {"Open MPI": "pmi_mode='pmix' (srun --mpi=pmix)", "MPICH": "pmi_mode='pmi2' (srun --mpi=pmi2)"}.get(
            family, "pmi_mode='pmix' for Open MPI or 'pmi2' for MPICH"
        )
    shape = "separate single-rank worlds" if size == 1 else f"worlds of {size} ranks"
    return MPIWorldError(
        f"the task asked for {expected} MPI ranks, but this rank's MPI_COMM_WORLD has {size}: {launcher} started "
        f"{shape} instead of one world of {expected}, which means it has no process-management interface (PMI) "
        f"that this MPI library ({library}) understands. Use {remedy}, or mpiexec of the same MPI."
    )


class World:
    """``COMM_WORLD`` of a worker, checked, with a private duplicate for its own messages
    (so that the ends of calls never meet a user's collective on ``COMM_WORLD``).

    Args:
        comm: the world communicator (``MPI.COMM_WORLD``).
        key: the MAC key; a rank's reports on stderr are signed with it.
    """

    def __init__(self, comm, key: bytes):
        self.comm = comm
        self.key = key
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._ctl = None

    def check(self, expected: int) -> MPIWorldError | None:
        """Compare the world with the ranks asked for; collective when it passes.

        Args:
            expected: ranks asked for (0: no check).

        Returns:
            ``None`` when the world is right, otherwise the ``MPIWorldError`` to report.
        """
        if expected and self.size != expected:
            from mpi4py import MPI

            return world_error(expected, self.size, MPI)
        self._ctl = self.comm.Dup()
        return None

    def share_key(self, key: bytes | None) -> None:
        """Give every rank rank 0's ``key`` (collective; after a passing ``check``)."""
        self.key = self._ctl.bcast(key, root=0)

    def end_of_call(self, part: bytes, failed: bool) -> tuple[bool, list | None]:
        """Meet the other ranks after a call. Returns ``(True, parts)`` once every rank
        arrived (``parts``: every rank's reply at rank 0, ``None`` elsewhere), or
        ``(False, None)`` when this rank failed and the others did not all arrive in
        ``AGREE_GRACE`` seconds: the caller then reports and aborts.

        Args:
            part: this rank's pickled reply.
            failed: whether this rank's call raised.
        """
        request = self._ctl.Ibarrier()
        if failed:
            deadline = time.monotonic() + AGREE_GRACE
            pause = 0.0005
            while not request.Test():
                if time.monotonic() > deadline:
                    return False, None
                time.sleep(pause)
                pause = min(pause * 2, 0.02)
        else:
            request.Wait()
        return True, self._ctl.gather(part, root=0)

    def report_and_abort(self, part: bytes, link=None, startup: bool = False, write=None) -> None:
        """Send this rank's reply the only way left and end the whole job.

        Args:
            part: this rank's pickled reply (an error).
            link: rank 0's link to the driver, if this rank has one.
            startup: the worker failed before it could run any call.
            write: instead of the driver link, a function that stores the envelope
                (the batch-job worker writes its cache entry).
        """
        envelope = aborted(part, self.rank, self.size, startup)
        try:
            if write is not None:
                write(envelope)
            elif link is not None:
                link.send(envelope)
                link.close()  # zmq sends from a background thread: let it deliver before the abort
            else:
                _report_on_stderr(self.key, envelope)
                # MPI_Abort makes the launcher stop every rank and exit, and Hydra (MPICH) may
                # exit before it forwarded what this rank wrote last (seen ~1 run in 30): give it
                # a moment. A failed call only; the call has failed either way.
                time.sleep(_FORWARD_GRACE)
        except BaseException:
            try:
                _report_on_stderr(self.key, envelope)
            except BaseException:
                pass
        self.abort()

    def abort(self) -> None:
        """Flush the streams and ``MPI_Abort`` the world: the launcher then ends every
        rank, so none is left waiting in a collective.
        """
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        try:
            self.comm.Abort(1)
        finally:
            os._exit(1)


_PIECE = 768  # hex characters per line: short lines pass launchers' output forwarding whole


def _report_on_stderr(key: bytes, envelope: bytes) -> None:
    """Short lines, one write each (``REPORT_MARK id index count hex``): the driver picks
    them out of the launcher's stderr and joins them. A launcher may put its own messages
    between forwarded pieces of a long line (srun does when a step aborts), never inside a
    short line written at once."""
    text = seal(key, envelope).hex().encode()
    report = os.urandom(4).hex().encode()
    count = max(1, -(-len(text) // _PIECE))
    for index in range(count):
        line = REPORT_MARK + b"%s %d %d %s\n" % (report, index, count, text[index * _PIECE : (index + 1) * _PIECE])
        view = memoryview(line)
        while view:
            view = view[os.write(2, view) :]


def launcher_rank(world: World) -> int:
    """This process's rank as the launcher numbered it: every singleton is rank 0 of its
    own world, but srun, Hydra and PRRTE each tell their processes apart."""
    for name in ("SLURM_PROCID", "PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return world.rank


def exit_after_world_error(world: World, error: MPIWorldError, link_factory=None, write=None) -> int:
    """Report a wrong world from the launcher's rank 0 only (each singleton is rank 0 of its
    own world: one report, not N racing ones), then exit with an error. The others exit
    quietly (0): a failing exit would let ``srun --kill-on-bad-exit`` stop the reporter
    before it has spoken.

    Args:
        world: the world that is not what was asked for.
        error: the error to report.
        link_factory: makes the link to the driver (``None``: the reply goes to ``write``).
        write: writes the pickled report (``None`` and no link: signed, on stderr).

    Returns:
        The exit code for this process.
    """
    from hpcfutures.worker.execute import encode_reply, error_reply

    if world.rank != 0 or launcher_rank(world) != 0:
        return 0
    envelope = aborted(encode_reply(error_reply(error)), world.rank, world.size, startup=True)
    try:
        if write is not None:
            write(envelope)
        elif link_factory is not None:
            link = link_factory()
            link.send(envelope)
            link.close()
        else:
            _report_on_stderr(world.key, envelope)
    except BaseException:
        _report_on_stderr(world.key, envelope)
    return _EXIT_CODE
