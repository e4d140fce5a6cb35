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
