"""omp4py functions for the integration test: omp4py rewrites a function from its source,
so they sit at the top level of a module the workers import."""

import os
import random

from omp4py import omp, omp_get_max_threads, omp_get_num_threads


@omp
def calc_pi(num_points):
    count = 0
    with omp("parallel for reduction(+:count)"):
        for i in range(num_points):
            x = random.random()
            y = random.random()
            if x * x + y * y <= 1.0:
                count += 1
    return 4 * (count / num_points)


@omp
def omp_team():
    sizes = []
    with omp("parallel"):
        sizes.append(omp_get_num_threads())
    return os.environ.get("OMP_NUM_THREADS"), omp_get_max_threads(), sizes
