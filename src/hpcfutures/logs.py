"""The package's loggers, all below ``logging.getLogger("hpcfutures")``.

What is logged (logger name, level):

* ``hpcfutures.pool``    INFO warm worker started / restarted; WARNING worker died, could
  not start, or was given up after ``restart_limit`` restarts.
* ``hpcfutures.process`` DEBUG a fresh process started for a task; WARNING it died.
* ``hpcfutures.retry``   WARNING a task failed and is run again (``retries``).
* ``hpcfutures.cluster`` INFO job submitted, job state changed; WARNING a job ended without
  a result.
* ``hpcfutures.cache``   WARNING a cache entry could not be read (the task runs again).

A ``NullHandler`` sits on the ``hpcfutures`` logger, so nothing is printed until the
application configures logging (``logging.basicConfig(level=logging.INFO)``, say). Every
call site passes its arguments unformatted (``%s``), and the per-task ones are guarded by
``isEnabledFor``, so a disabled logger costs one attribute check on the hot path.
"""

from __future__ import annotations

import logging  # already imported by concurrent.futures: costs nothing here

ROOT = "hpcfutures"
logging.getLogger(ROOT).addHandler(logging.NullHandler())


def get_logger(part: str) -> logging.Logger:
    """The logger ``hpcfutures.<part>``.

    Args:
        part: the component's name (``pool``, ``process``, ``retry``, ``cluster``, ``cache``).

    Returns:
        The ``logging.Logger``; configure it (or ``hpcfutures``) with the standard library.
    """
    return logging.getLogger(f"{ROOT}.{part}")
