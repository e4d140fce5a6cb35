"""Functions the benchmarks submit; a module of its own so every executor's workers import it
by name (PYTHONPATH includes this folder), as a user's workers import the user's modules."""


def trivial(x):
    return x


def mpi_rank(x):
    from mpi4py import MPI

    return x, MPI.COMM_WORLD.Get_rank()


def increment(x):
    return x + 1


def total(values):
    return sum(values)


def identity(x):
    return x


def log_prob(theta):
    """emcee's documented example: an isotropic Gaussian in 5 dimensions."""
    import numpy as np

    return -0.5 * np.sum(theta**2)


def wait_for_path(path, timeout):
    """Hold a worker until ``path`` exists (a gate the driver opens)."""
    import os
    import time

    end = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.01)
    return path
