"""Worker entry points: the code that runs in the processes that run the user's functions.

These modules import the standard library, ``hpcfutures.wire.frames`` (itself stdlib only),
``zmq`` only for workers on other nodes and ``mpi4py`` for MPI workers: nothing of the driver side,
so a fresh worker costs little more than a bare interpreter start.
"""
