"""Functions the drop-in tests send to workers (importable there through tests/ on PYTHONPATH)."""

import os
import sys
import time


def wait_for_file(path, limit=120.0):
    """Block until ``path`` exists (the test creates it to let the call end)."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)
    return "released"


def double(x):
    return 2 * x


def print_then_die(text):
    """Leave a last word in the job's log, then die without writing a result."""
    print("first line of the log")
    print(text, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(3)
