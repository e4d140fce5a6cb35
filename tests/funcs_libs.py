"""Functions for the library-integration tests (importable by workers; they need the
libraries, so they live apart from funcs.py)."""

import os
import random

import numpy as np


def log_prob(theta):
    return -0.5 * np.sum(theta**2)


def lammps_world(lmp):
    """Runs on every rank of a pylammpsmpi warm worker (``lmp`` from its init_function)."""
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_size(), int(lmp._job.extract_setting("world_size"))
