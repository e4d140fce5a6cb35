"""pympipool's ``SocketInterface``: a ``wire.socket_interface.WorkerLink`` that starts its
worker itself, on this machine, from a command line (``bootup(command)``).

It lives in ``launch/`` because starting a process is a launcher's job; ``wire/`` imports
nothing from here."""

from __future__ import annotations

from hpcfutures.launch.local import CommandLauncher
from hpcfutures.launch.process import worker_environment
from hpcfutures.wire.socket_interface import WorkerLink


class SocketInterface(WorkerLink):
    """Link to one worker: bind, start the worker, exchange dicts, shut it down.

    Usable on its own::

        link = SocketInterface()
        address = link.bind()
        link.bootup(python_command("hpcfutures.worker.interactive", address))
        link.send_and_receive_dict({"fn": sum, "args": ([1, 2],), "kwargs": {}})  # -> 3
        link.shutdown()

    Args:
        key: the HMAC key (32 bytes); None: a fresh one.
        hostname_localhost: None/True: a Unix socket; False: zmq over TCP on this host's
            address (workers on other nodes).
        log_obj_size: log the size of every message (logger ``hpcfutures``, INFO).
        launcher: what starts the command (``launch.handle.Launcher``); None: the command
            as given, on this machine.
    """

    def __init__(self, key: bytes | None = None, hostname_localhost: bool | None = None, log_obj_size: bool = False,
                 launcher=None):
        super().__init__(key, hostname_localhost, log_obj_size, launcher=launcher or CommandLauncher())

    def bootup(self, command, env: dict | None = None, cwd: str | None = None, resources: dict | None = None):
        """Start the worker's command line and watch it from now on.

        Args:
            command: the worker's command line (it connects to ``address``).
            env: its environment; None: ``worker_environment(self.key, 1)`` (the driver's,
                with the key, one thread per core).
            cwd: its working directory (None: the driver's).
            resources: passed to the launcher; None: ``{}``.

        Returns:
            The worker's handle (``launch.process.LocalProcessHandle`` by default).

        Raises:
            FileNotFoundError: the command does not exist.
        """
        env = env if env is not None else worker_environment(self.key, 1)
        return super().bootup(command, env, cwd, resources)
