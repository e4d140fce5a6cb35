"""Starting a program from the driver without handing its pipes to a fork of the driver.

``spawn`` (``subprocess.Popen``) and ``run_command`` (``subprocess.run``) are how this
package starts every program on this machine: workers, ``mpiexec``, ``srun``, the fork
server, ``squeue``/``scancel``/``sbatch``. They pass through a gate that a fork of the
driver (``os.fork``, a ``multiprocessing.Pool`` with the fork start method) waits at.
"""

from __future__ import annotations

import os
import subprocess
import threading

TYPE_CHECKING = False  # typing costs milliseconds at import; checkers still see the names
if TYPE_CHECKING:
    from typing import Sequence


class _ForkGate:
    """Keeps ``os.fork()`` (a user's ``multiprocessing.Pool``, anything that forks the
    driver) out of the moments our threads are inside ``subprocess.Popen``.

    While ``Popen`` runs, the driver holds the write end of its exec-error pipe (and the
    child's pipe ends); a fork at that moment copies them into the forked process, and
    ``Popen`` then reads that pipe until the forked process exits too: a warm pool's start
    hangs for as long as the user's pool lives (issue 15). Any number of our ``Popen`` calls
    may run at once; a fork waits until none runs, and holds new ones back until it is done
    (``os.register_at_fork``). ``Popen``'s own fork (``_posixsubprocess``) runs no at-fork
    hooks, so it never waits on this gate.
    """

    def __init__(self):
        self._reinit()
        os.register_at_fork(before=self._before_fork, after_in_parent=self._after_fork, after_in_child=self._reinit)

    def _reinit(self) -> None:
        # in a forked child: no thread of ours runs there, whatever the lock's state was
        self._cond = threading.Condition(threading.Lock())
        self._spawning = 0
        self._inside = threading.local()  # .value: this thread is inside popen()

    def _before_fork(self) -> None:
        self._cond.acquire()  # held until after the fork: no new Popen starts meanwhile
        # a Popen with preexec_fn forks through the at-fork hooks in the spawning thread
        # itself: it must not wait for its own end
        while self._spawning and not getattr(self._inside, "value", False):
            self._cond.wait()

    def _after_fork(self) -> None:
        self._cond.release()

    def popen(self, *args, **kwargs) -> subprocess.Popen:
        """``subprocess.Popen(*args, **kwargs)`` with no fork of the driver meanwhile."""
        with self._cond:
            self._spawning += 1
        self._inside.value = True
        try:
            return subprocess.Popen(*args, **kwargs)
        finally:
            self._inside.value = False
            with self._cond:
                self._spawning -= 1
                if not self._spawning:
                    self._cond.notify_all()


_gate = _ForkGate()


def spawn(argv: Sequence[str], **kwargs) -> subprocess.Popen:
    """``subprocess.Popen(argv, **kwargs)``, safe against a fork of the driver by another
    thread at the same moment (see ``_ForkGate``). Every process this package starts on
    this machine is started through here.

    Args:
        argv: the command line.
        **kwargs: ``subprocess.Popen``'s keyword arguments.

    Returns:
        The ``Popen`` object.

    Raises:
        OSError: as ``subprocess.Popen`` (FileNotFoundError: no such command).
    """
    return _gate.popen(argv, **kwargs)


def run_command(
    argv: Sequence[str], *, input: str | bytes | None = None, timeout: float | None = None, capture_output: bool = False,
    **kwargs,
) -> subprocess.CompletedProcess:
    """``subprocess.run`` through ``spawn``: a fork of the driver during the start cannot
    hold the write ends of its output pipes (which would keep ``communicate`` waiting for
    as long as the forked process lives).

    Args:
        argv: the command line.
        input: written to its stdin (then closed).
        timeout: seconds to wait for it; it is killed after that.
        capture_output: stdout and stderr into the result.
        **kwargs: further ``subprocess.Popen`` keyword arguments (``text``, ``cwd``, ...).

    Returns:
        A ``subprocess.CompletedProcess``.

    Raises:
        OSError: the program cannot be started (FileNotFoundError: no such command).
        subprocess.TimeoutExpired: it ran longer than ``timeout`` (it was killed).
    """
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    with spawn(argv, **kwargs) as process:
        try:
            out, err = process.communicate(input, timeout=timeout)
        except BaseException:
            process.kill()
            process.wait()
            raise
    return subprocess.CompletedProcess(list(argv), process.returncode, out, err)
