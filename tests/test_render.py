"""One resource model, rendered per backend: the same ``Resources`` value through every
renderer (mpiexec, srun, the job step, ``#SBATCH``, template variables / pysqa, Flux), the
one time-rounding rule, the validation of ``resource_dict``, and the one table of which keys
each executor honours."""

import json
import math
import os

import pytest

import funcs
from hpcfutures.scheduling import honoured
from hpcfutures.scheduling.render import (
    flux_jobspec_args,
    job_step_args,
    mpiexec_args,
    sbatch_lines,
    srun_args,
    template_variables,
)
from hpcfutures.scheduling.resources import KEYS, Resources, whole_minutes

TESTS = os.path.dirname(os.path.abspath(__file__))


def _flag(flags, prefix):
    """The value of ``--prefix=value`` among flags (or ``#SBATCH`` lines); True for a bare
    flag; None when absent."""
    for flag in flags:
        flag = flag.removeprefix("#SBATCH ")
        if flag == prefix:
            return True
        if flag.startswith(prefix + "="):
            return flag.split("=", 1)[1]
    return None


def _int(value):
    return None if value is None else int(value)


def _sbatch(res):
    return sbatch_lines(res)[0]


# aspect -> backend -> what that backend says about it, normalised to one value
# (None: the backend says nothing, which must then mean the default)
ASPECTS = {
    "ranks": {
        "mpiexec": lambda r: int(mpiexec_args(r, "openmpi")[1]),
        "srun": lambda r: _int(_flag(srun_args(r), "--ntasks")),
        "job step": lambda r: _int(_flag(job_step_args(r), "--ntasks")),
        "sbatch": lambda r: _int(_flag(_sbatch(r), "--ntasks")),
        "template": lambda r: template_variables(r)["cores"],
        "flux": lambda r: flux_jobspec_args(r)["num_tasks"],
    },
    "cpus per rank": {
        "srun": lambda r: _int(_flag(srun_args(r), "--cpus-per-task")),
        "job step": lambda r: _int(_flag(job_step_args(r), "--cpus-per-task")),
        "sbatch": lambda r: _int(_flag(_sbatch(r), "--cpus-per-task")),
        "template": lambda r: template_variables(r)["threads_per_core"],
        "flux": lambda r: flux_jobspec_args(r)["cores_per_task"],
    },
    "gpus per rank": {
        "srun": lambda r: _int(_flag(srun_args(r), "--gpus-per-task")) or 0,
        "job step": lambda r: _int(_flag(job_step_args(r), "--gpus-per-task")) or 0,
        "sbatch": lambda r: _int(_flag(_sbatch(r), "--gpus-per-task")) or 0,
        "template": lambda r: template_variables(r)["gpus_per_core"],
        "flux": lambda r: flux_jobspec_args(r)["gpus_per_task"],
    },
    "nodes": {
        "srun": lambda r: _int(_flag(srun_args(r), "--nodes")),
        "sbatch": lambda r: _int(_flag(_sbatch(r), "--nodes")),
        "template": lambda r: template_variables(r)["num_nodes"],
        "flux": lambda r: flux_jobspec_args(r)["num_nodes"],
    },
    "exclusive": {
        "srun": lambda r: bool(_flag(srun_args(r), "--exact")),
        "sbatch": lambda r: bool(_flag(_sbatch(r), "--exclusive")),
        "template": lambda r: template_variables(r)["exclusive"],
        "flux": lambda r: flux_jobspec_args(r)["exclusive"],
    },
    "time limit in minutes": {
        "srun": lambda r: _int(_flag(srun_args(r), "--time")),
        "sbatch": lambda r: _int(_flag(_sbatch(r), "--time")),
        "template": lambda r: template_variables(r)["run_time_minutes"],
        # what executorlib's and pysqa's SLURM templates compute from run_time_max (seconds)
        "template // 60": lambda r: None if r.time_limit is None else max(1, template_variables(r)["run_time_max"] // 60),
        # Flux counts seconds, so it gets them unrounded; in minutes they round as SLURM's do
        "flux": lambda r: whole_minutes(flux_jobspec_args(r)["duration"]) if r.time_limit is not None else None,
    },
    "cwd": {
        "srun": lambda r: _flag(srun_args(r), "--chdir"),
        "flux": lambda r: flux_jobspec_args(r)["cwd"],
    },
    "pmi": {
        "srun": lambda r: _flag(srun_args(r), "--mpi"),
        "job step": lambda r: _flag(job_step_args(r), "--mpi"),
        "flux": lambda r: flux_jobspec_args(r)["shell_options"].get("pmi"),
    },
    "nice": {
        "sbatch": lambda r: _int(_flag(_sbatch(r), "--nice")),
        "template": lambda r: template_variables(r)["nice"],
    },
    # F09: one rule, higher runs sooner: the priority comes back out of every renderer
    "priority": {
        "asked": lambda r: r.priority,
        "sbatch": lambda r: None if r.priority is None else -_int(_flag(_sbatch(r), "--nice")),
        "template": lambda r: template_variables(r)["priority"],
        "template nice": lambda r: None if r.priority is None else -template_variables(r)["nice"],
        # Flux: the priority IS the urgency, as executorlib passes it (F06)
        "flux": lambda r: None if r.priority is None else flux_jobspec_args(r)["urgency"],
    },
}

CASES = [
    {},
    {"cores": 4, "threads_per_core": 2, "gpus_per_core": 1, "num_nodes": 2, "exclusive": True, "run_time_max": 60.5,
     "cwd": "work dir", "priority": 3},
    {"cores": 2, "gpus_per_core": 2.0, "run_time_max": 3600, "priority": 5},
    {"cores": 1, "threads_per_core": 8, "run_time_max": 0.001},
]  # fmt: skip


@pytest.mark.parametrize("aspect", sorted(ASPECTS))
@pytest.mark.parametrize("case", range(len(CASES)))
def test_every_backend_renders_the_same_value_alike(aspect, case):
    res = Resources.of({**CASES[case], "cwd": CASES[case].get("cwd")}, pmi="pmi2")
    said = {backend: render(res) for backend, render in ASPECTS[aspect].items()}
    # as text: "2" and "2.0" are not the same in a job script
    assert len(set(map(str, said.values()))) == 1, f"{aspect}: backends disagree for {CASES[case]}: {said}"


def test_the_rendered_values_are_the_asked_ones():
    res = Resources.of(CASES[1], pmi="pmix")
    assert srun_args(res) == [
        "--ntasks=4", "--cpus-per-task=2", "--gpus-per-task=1", "--nodes=2", "--exact", "--time=2",
        f"--chdir={os.path.abspath('work dir')}", "--mpi=pmix", "--kill-on-bad-exit=1",
    ]  # fmt: skip
    assert job_step_args(res) == ["--ntasks=4", "--cpus-per-task=2", "--gpus-per-task=1", "--mpi=pmix", "--kill-on-bad-exit=1"]
    assert _sbatch(res) == [
        "#SBATCH --ntasks=4", "#SBATCH --cpus-per-task=2", "#SBATCH --gpus-per-task=1", "#SBATCH --nodes=2",
        "#SBATCH --exclusive", "#SBATCH --time=2", "#SBATCH --nice=-3",
    ]  # fmt: skip
    assert mpiexec_args(Resources.of({"cores": 3, "openmpi_oversubscribe": True}), "openmpi") == ["-n", "3", "--oversubscribe"]
    assert mpiexec_args(Resources.of({"cores": 3, "openmpi_oversubscribe": True}), "mpich") == ["-n", "3"]  # MPICH rejects it
    serial = Resources.of({})
    assert srun_args(serial) == ["--ntasks=1", "--cpus-per-task=1"]  # no --kill-on-bad-exit, no --mpi
    assert srun_args(Resources.of({"slurm_cmd_args": ["--mem=1G"]}))[-1] == "--mem=1G"  # the user's last


@pytest.mark.parametrize("seconds", [0.001, 1, 59.9, 60, 60.5, 61, 119.99, 3600, 3600.01])
def test_one_rounding_rule_for_time_limits(seconds):
    """``run_time_max=60.5`` gave ``srun --time=2`` but ``#SBATCH --time=1`` through the
    (executorlib/pysqa) templates: every renderer now rounds up to whole minutes, never less
    than asked."""
    res = Resources.of({"run_time_max": seconds})
    minutes = math.ceil(seconds / 60)
    assert res.time_minutes == minutes and minutes * 60 >= seconds
    assert _flag(srun_args(res), "--time") == _flag(_sbatch(res), "--time") == str(minutes)
    variables = template_variables(res)
    assert variables["run_time_max"] == 60 * minutes >= seconds and variables["run_time_minutes"] == minutes


def _pysqa_template_text():
    with open(os.path.join(TESTS, "pysqa_slurm", "slurm.sh")) as f:
        return f.read()


def _capture_sbatch(tmp_path, monkeypatch):
    """A fake sbatch that keeps the script it was given (on stdin, or as its last argument)."""
    fake = tmp_path / "bin" / "sbatch"
    fake.parent.mkdir()
    kept = tmp_path / "kept.sh"
    fake.write_text(f'#!/bin/sh\nfor a; do last="$a"; done\nif [ -f "$last" ]; then cp "$last" {kept}; else cat > {kept}; fi\necho 4242\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    return kept


def test_run_time_max_60_5_is_two_minutes_in_a_submission_template(tmp_path, monkeypatch):
    pytest.importorskip("jinja2")
    from hpcfutures.batch.queues import JobSpec, SlurmQueue

    kept = _capture_sbatch(tmp_path, monkeypatch)
    SlurmQueue().submit(JobSpec(["true"], "hpcf-t", "/w", {"run_time_max": 60.5, "submission_template": _pysqa_template_text()}, [], {}, "/w/t.log"))
    assert "#SBATCH --time=2\n" in kept.read_text()  # was 1: the job got less time than srun's steps
    SlurmQueue().submit(JobSpec(["true"], "hpcf-t", "/w", {"run_time_max": 60.5}, [], {}, "/w/t.log"))
    assert "#SBATCH --time=2\n" in kept.read_text()


def test_run_time_max_60_5_is_two_minutes_through_pysqa(tmp_path, monkeypatch):
    pytest.importorskip("pysqa")
    from hpcfutures.batch.queues import JobSpec, PysqaQueue

    kept = _capture_sbatch(tmp_path, monkeypatch)
    queue = PysqaQueue(os.path.join(TESTS, "pysqa_slurm"))
    work = tmp_path / "w"
    work.mkdir()
    assert queue.submit(JobSpec(["true"], "hpcf-p", str(work), {"run_time_max": 60.5}, [], {}, str(work / "p.log"))) == "4242"
    assert "#SBATCH --time=2\n" in kept.read_text()
    # several ranks become one srun step of the job, as with the built-in script
    queue.submit(JobSpec(["python", "x.py"], "hpcf-p", str(work), {"cores": 2, "threads_per_core": 2}, [], {}, str(work / "p.log")))
    text = kept.read_text()
    assert "srun --ntasks=2 --cpus-per-task=2 " in text and text.rstrip().endswith("python x.py")
    assert "env OMP_NUM_THREADS=2 " in text


def test_flux_jobspec_args_is_plain_data():
    data = flux_jobspec_args(Resources.of({**CASES[1], "cwd": "/tmp/x"}, pmi="pmi2"))
    assert json.loads(json.dumps(data)) == data
    assert data == {
        "num_tasks": 4, "cores_per_task": 2, "gpus_per_task": 1, "num_nodes": 2, "exclusive": True,
        "duration": 60.5, "urgency": 3, "cwd": "/tmp/x", "shell_options": {"pmi": "pmi2"},
    }  # fmt: skip
    assert flux_jobspec_args(Resources.of({}))["duration"] == 0  # Flux: no limit


@pytest.mark.parametrize("priority, nice", [(None, None), (0, 0), (1, -1), (5, -5), (15, -15), (100, -100), (-3, 3),
                                             (-15, 15), (-100, 100)])  # fmt: skip
def test_priority_is_honoured_in_both_directions(priority, nice):
    """F09: priority >= 0 was nice 0 (accepted, not honoured). Now --nice=-priority."""
    res = Resources.of({"priority": priority})
    assert _int(_flag(_sbatch(res), "--nice")) == nice and template_variables(res)["nice"] == nice


@pytest.mark.parametrize("priority, urgency", [(None, 16), (1, 1), (5, 5), (16, 16), (31, 31)])
def test_flux_urgency_is_the_priority_as_in_executorlib(priority, urgency):
    """F06: executorlib passes priority straight through as Flux's urgency (0..31); urgency
    16 + priority made every priority >= 0 of executorlib's range run alike."""
    assert flux_jobspec_args(Resources.of({"priority": priority}))["urgency"] == urgency


@pytest.mark.parametrize("priority, reason", [(0, "holds the job for ever"), (32, "1 \\(lowest\\) to 31"),
                                              (-3, "1 \\(lowest\\) to 31"), (100, "use 1..31")])  # fmt: skip
def test_flux_urgency_refuses_what_flux_cannot_run(priority, reason):
    """F06: urgency 0 is held for ever (every future must end); Flux has none outside 0..31."""
    from hpcfutures.scheduling.render import flux_urgency

    with pytest.raises(ValueError, match=reason):
        flux_urgency(Resources.of({"priority": priority}))


def test_a_fraction_of_a_gpu_per_rank_is_never_truncated():
    res = Resources.of({"cores": 2, "gpus_per_core": 0.5})
    for render in (srun_args, job_step_args, sbatch_lines, flux_jobspec_args):
        with pytest.raises(ValueError, match="whole GPUs per rank"):
            render(res)


# -- the value object and its validation ---------------------------------------------


def test_resources_round_trip_and_are_immutable():
    res = Resources.from_dict({"cores": 2, "threads_per_core": 3, "run_time_max": 90, "cache_key": "k"})
    assert (res.ranks, res.threads_per_rank, res.cpus, res.time_limit, res.time_minutes) == (2, 3, 6, 90, 2)
    assert res.rest == {"cache_key": "k"}
    assert Resources.of(res.as_dict()) == res
    with pytest.raises(AttributeError, match="immutable"):
        res.ranks = 3


@pytest.mark.parametrize(
    "given, error, words",
    [
        ({"cpus": 2}, ValueError, r"unknown resource_dict key\(s\) \['cpus'\]; accepted keys"),
        ({"cores": "2"}, TypeError, r"resource_dict\['cores'\] must be an int"),
        ({"cores": 2.0}, TypeError, r"resource_dict\['cores'\] must be an int"),
        ({"cores": -1}, ValueError, r"resource_dict\['cores'\] must be an int >= 1"),
        ({"threads_per_core": 0}, ValueError, r"resource_dict\['threads_per_core'\] must be an int >= 1"),
        ({"gpus_per_core": -1}, ValueError, r"resource_dict\['gpus_per_core'\] must be a finite number >= 0"),
        ({"run_time_max": -5}, ValueError, r"resource_dict\['run_time_max'\] must be a finite number of seconds > 0"),
        ({"run_time_max": float("nan")}, ValueError, r"resource_dict\['run_time_max'\] must be a finite number"),
        ({"cores": True}, TypeError, r"resource_dict\['cores'\] must be an int .*got True"),  # a bool is no count
        ({"run_time_max": True}, TypeError, r"resource_dict\['run_time_max'\] must be a finite number"),
        ({"exclusive": 1}, TypeError, r"resource_dict\['exclusive'\] must be a bool"),
        ({"cores": 2, "num_nodes": 3}, ValueError, r"num_nodes=3 with cores=2"),
        ([("cores", 2)], TypeError, r"resource_dict must be a dict"),
    ],
)
def test_validation_errors_name_the_key_and_the_remedy(given, error, words):
    with pytest.raises(error, match=words):
        Resources.from_dict(given, "submit()")


# -- which keys each backend honours: one table ----------------------------------------


def test_the_table_has_a_cell_for_every_key_and_backend():
    assert set(honoured.HONOURED) == set(KEYS)
    for key, row in honoured.HONOURED.items():
        assert set(row) == set(honoured.BACKENDS), key
        for backend, rule in row.items():
            assert rule.accept is None or rule.reason, f"{key} on {backend}: a refusal needs its reason"


def _executor(backend, resource_dict, tmp_path):
    from hpcfutures import FluxClusterExecutor, FluxJobExecutor, SingleNodeExecutor, SlurmClusterExecutor, SlurmJobExecutor
    from hpcfutures.api import TestClusterExecutor

    make = {
        honoured.LOCAL: lambda: SingleNodeExecutor(resource_dict=resource_dict),
        honoured.SRUN: lambda: SlurmJobExecutor(resource_dict=resource_dict),
        honoured.SBATCH: lambda: SlurmClusterExecutor(cache_directory=str(tmp_path), resource_dict=resource_dict),
        honoured.LOCAL_JOBS: lambda: TestClusterExecutor(cache_directory=str(tmp_path), resource_dict=resource_dict),
        # refused before any Flux is needed: these run outside an instance too
        honoured.FLUX: lambda: FluxJobExecutor(resource_dict=resource_dict),
        honoured.FLUX_BATCH: lambda: FluxClusterExecutor(cache_directory=str(tmp_path), resource_dict=resource_dict),
    }
    return make[backend]()


# a value that no cell's "accept" takes as neutral
NOT_NEUTRAL = {
    "num_nodes": 2, "exclusive": True, "slurm_cmd_args": ["-v"], "submission_template": "#!/bin/sh\n{{command}}",
    "priority": 1, "gpus_per_core": 0.5, "retries": 1, "retry_on": ValueError, "openmpi_oversubscribe": True,
}  # fmt: skip

REFUSED = [(backend, key) for backend in honoured.BACKENDS for key in sorted(honoured.refusals(backend))]


@pytest.mark.parametrize("backend, key", REFUSED)
def test_every_executor_refuses_what_its_column_refuses(backend, key, tmp_path):
    accept, reason = honoured.refusals(backend)[key]
    value = NOT_NEUTRAL[key]
    assert not accept(value)
    resource_dict = {"cores": 2, key: value}
    with pytest.raises(ValueError, match=rf"resource_dict\[{key!r}\]=.* is not supported: {reason[:30]}"):
        _executor(backend, resource_dict, tmp_path)


def test_a_warm_workers_keys_come_from_the_table():
    assert honoured.worker_keys(honoured.LOCAL) == ("cores", "threads_per_core", "gpus_per_core", "cwd", "openmpi_oversubscribe")
    assert set(honoured.worker_keys(honoured.SRUN)) == {*honoured.worker_keys(honoured.LOCAL), "num_nodes", "exclusive", "slurm_cmd_args"}
    assert honoured.worker_keys(honoured.SBATCH) == ()
    # a warm Flux worker is one job: its shape, nodes, exclusivity and urgency are fixed
    assert set(honoured.worker_keys(honoured.FLUX)) == {
        "cores", "threads_per_core", "gpus_per_core", "cwd", "num_nodes", "exclusive", "priority"
    }  # fmt: skip
    assert honoured.worker_keys(honoured.FLUX_BATCH) == ()
    with pytest.raises(KeyError, match="unknown backend"):
        honoured.worker_keys("pbs")


def test_pympipool_front_on_srun_refuses_what_srun_cannot_render():
    """``HPCExecutor(cores_per_worker=2, gpus_per_worker=1, enable_slurm_backend=True)``
    asked for 0.5 GPUs per rank, which srun was handed as ``--gpus-per-task=0``: no GPU."""
    from hpcfutures.compat.executors import HPCExecutor

    with pytest.raises(ValueError, match="srun --gpus-per-task counts whole GPUs per rank"):
        HPCExecutor(cores_per_worker=2, gpus_per_worker=1, enable_slurm_backend=True)


# -- TestClusterExecutor honours what its column says it honours -----------------------


@pytest.mark.timeout(120)
def test_test_cluster_executor_gives_jobs_their_threads(tmp_path):
    from hpcfutures.api import TestClusterExecutor

    with TestClusterExecutor(cache_directory=str(tmp_path)) as exe:
        assert exe.submit(funcs.env, "OMP_NUM_THREADS", resource_dict={"threads_per_core": 3}).result(timeout=60) == "3"


@pytest.mark.timeout(120)
def test_test_cluster_executor_ends_a_job_at_its_run_time_max(tmp_path):
    from hpcfutures import WorkerCrashedError
    from hpcfutures.api import TestClusterExecutor

    with TestClusterExecutor(cache_directory=str(tmp_path)) as exe:
        slow = exe.submit(funcs.sleep_then, 600, resource_dict={"run_time_max": 0.5})
        with pytest.raises(TimeoutError, match=r"run_time_max=0.5 .*TIMEOUT") as info:  # F11: one type everywhere
            slow.result(timeout=90)
        assert not isinstance(info.value, WorkerCrashedError)
        assert exe.submit(funcs.add, 1, 2, resource_dict={"run_time_max": 60}).result(timeout=60) == 3


@pytest.mark.slurm
@pytest.mark.mpi
@pytest.mark.timeout(240)
def test_a_batch_jobs_ranks_get_their_threads(tmp_path):
    """Every rank of a batch job sees ``threads_per_core`` in the threading runtimes'
    variables, as under ``SingleNodeExecutor`` (SLURM sets none of them)."""
    from hpcfutures import SlurmClusterExecutor

    with SlurmClusterExecutor(cache_directory=str(tmp_path)) as exe:
        future = exe.submit(funcs.env, "OMP_NUM_THREADS", resource_dict={"cores": 2, "threads_per_core": 2})
        assert future.result(timeout=180) == ["2", "2"]


@pytest.mark.parametrize("gigabytes, whole, text", [(4, 4, "4G"), (1.5, 2, "1536M"), (0.001, 1, "2M")])
def test_memory_reaches_a_template_as_a_whole_number_never_less(gigabytes, whole, text):
    """pysqa's templates write ``--mem={{memory_max}}G``: ``1.5G`` is refused by sbatch."""
    variables = template_variables(Resources.of({"memory_max": gigabytes}))
    assert (variables["memory_max"], variables["memory_text"]) == (whole, text)
    assert f"#SBATCH --mem={text}" in _sbatch(Resources.of({"memory_max": gigabytes}))


@pytest.mark.timeout(120)
def test_test_cluster_executor_says_it_ignores_queue_options(tmp_path):
    """``partition`` & co. are passed on to the queue adapter quietly (documented queue keys,
    F10); a local job has no partition, and the adapter says so."""
    import warnings

    from hpcfutures.api import TestClusterExecutor

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exe = TestClusterExecutor(cache_directory=str(tmp_path), resource_dict={"partition": "short"})
    with exe:
        with pytest.warns(UserWarning, match=r"resource_dict\['partition'\] is a queue option; TestClusterExecutor's local jobs ignore it"):
            assert exe.submit(funcs.add, 1, 2).result(timeout=60) == 3


def test_the_keys_checked_with_the_launcher_are_those_srun_renders():
    from hpcfutures.scheduling.render import LAUNCH_KEYS

    assert set(LAUNCH_KEYS) == {
        "cores", "threads_per_core", "gpus_per_core", "num_nodes", "exclusive", "run_time_max", "cwd",
        "openmpi_oversubscribe", "slurm_cmd_args",
    }  # fmt: skip
    # a key outside them must not change srun's flags
    base = Resources.of({"cores": 2})
    for key, value in {"cache_key": "k", "retries": 2, "error_log_file": "e.log", "priority": None}.items():
        assert srun_args(Resources.of({"cores": 2, key: value})) == srun_args(base), key


def test_a_refused_raised_priority_names_the_remedy_for_each_queue():
    """F09: a raised priority is what a non-operator (SLURM) or non-owner (Flux) may be refused;
    the message then names the request and the remedy. Nothing to add for priority <= 0."""
    from hpcfutures.scheduling.render import raised_priority_remedy

    assert raised_priority_remedy(None, "slurm") is None and raised_priority_remedy(16, "flux") is None
    assert raised_priority_remedy(-3, "slurm") is None
    slurm = raised_priority_remedy(5, "slurm")
    assert "--nice=-5" in slurm and "operator" in slurm and "use priority <= 0" in slurm
    flux = raised_priority_remedy(21, "flux")
    assert "urgency 21" in flux and "owner of the Flux instance may ask more than 16" in flux and "use priority <= 16" in flux
