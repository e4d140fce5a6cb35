"""Workers as Flux jobs, inside a Flux instance (``flux start``, or a Flux started inside a
SLURM allocation).

Each task (fresh mode) or warm worker is one job submitted through
``flux.job.FluxExecutor``, with a jobspec built from the task's resources: ``cores`` ->
tasks, ``threads_per_core`` -> cores per task, ``gpus_per_core`` -> GPUs per task,
``num_nodes``, ``exclusive``, ``cwd``, ``run_time_max`` -> the job's duration (fresh mode),
``priority`` -> urgency, ``pmi_mode`` -> the shell option ``pmi`` — all rendered by
``scheduling.render.flux_jobspec_args``, beside srun's and sbatch's words for them. The job is a worker
handle (``FluxJob``): its end is an fd the job future's done-callback writes, so the engines
wait on it beside the reply socket exactly as on a local process's pidfd; its stdout and
stderr go to files that are read back as the job ends (the tail for error messages, the
report lines of failing MPI ranks, the rest to the user's streams); ``kill`` is a job cancel.

The worker reaches the driver over the Unix socket (one-node instance) or the authenticated
TCP wire (several nodes); a Flux job inherits no descriptors, so serial fresh tasks use the
socket too. The key travels in the job's environment (readable by the instance owner only,
as with srun; see docs/security.md).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading

from hpcfutures.errors import UnsatisfiableRequestError, WorkerCrashedError
from hpcfutures.launch.handle import MAY_QUEUE, Launcher, WorkerHandle, exit_words, with_stderr_tail
from hpcfutures.launch.mpi import mpi4py_family, require_mpi4py
from hpcfutures.launch.process import STDERR_TAIL
from hpcfutures.launch.rank_reports import RankReportFilter
from hpcfutures.scheduling.render import flux_jobspec_args, flux_urgency, raised_priority_remedy
from hpcfutures.scheduling.resources import Resources

# values of the flux-shell ``pmi`` option (a comma-separated list of these is also taken)
PMI_NAMES = ("simple", "pmi1", "pmi2", "pmix", "cray-pals", "off")
_PMIX_QUIET = {"PMIX_MCA_psec": "native"}  # Open MPI wheel + flux-pmix: no psec help text per rank
_SIGNAL_GRACE = 5.0  # seconds a terminated job gets before it is cancelled


def require_flux(who: str = "FluxJobExecutor"):
    """Import the Flux bindings and check that this process runs inside an instance.

    Args:
        who: the class the user built, named by the messages.

    Returns:
        The ``flux`` module.

    Raises:
        ImportError: the Python bindings are missing (with how to get them).
        RuntimeError: no Flux instance to talk to (``FLUX_URI`` unset and no local broker).
    """
    try:
        import flux
        import flux.job  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{who} needs Flux's Python bindings ('import flux' failed: "
            f"{exc}); put <flux prefix>/lib/flux/python3.X on sys.path (bash scripts/flux.sh install "
            "writes a .pth file into the project's venvs)"
        ) from exc
    if "FLUX_URI" not in os.environ:
        raise RuntimeError(
            f"{who} runs every task as a job of the enclosing Flux instance, but FLUX_URI is "
            "not set: run inside one, e.g. 'flux start python script.py' or 'flux alloc -N2'"
        )
    return flux


_info_lock = threading.Lock()
_instance: dict[str, dict] = {}  # FLUX_URI -> {"cores", "nodes", "gpus", "size"}


def instance_resources() -> dict:
    """The cores, GPUs and nodes of the enclosing instance (asked once per ``FLUX_URI``).

    Returns:
        ``{"cores": int, "gpus": int, "nodes": int, "size": brokers}``.

    Raises:
        RuntimeError, ImportError: see ``require_flux``; OSError: the instance does not answer.
    """
    flux = require_flux()
    uri = os.environ["FLUX_URI"]
    with _info_lock:
        if uri not in _instance:
            from flux.resource import resource_list

            handle = flux.Flux()  # closed when collected (the bindings refuse a manual close)
            up = resource_list(handle).get().up
            _instance[uri] = {
                "cores": int(up.ncores),
                "gpus": int(up.ngpus),
                "nodes": int(up.nnodes),
                "size": int(handle.attr_get("size")),
            }
        return dict(_instance[uri])


def shaped(resources: dict) -> dict:
    """``resources`` as a Flux jobspec takes them: ``exclusive`` without ``num_nodes`` means
    whole nodes, as many as the job's cores need (Flux wants a node count with it). One rule
    for job steps (``FluxLauncher``) and batch jobs (``batch.flux_queue``).

    Args:
        resources: a call's ``resource_dict``.

    Returns:
        ``resources``, with ``num_nodes`` set where ``exclusive`` needs it.

    Raises:
        RuntimeError, ImportError, OSError: see ``instance_resources``.
    """
    if not resources.get("exclusive") or resources.get("num_nodes"):
        return resources
    info = instance_resources()
    per_node = max(1, info["cores"] // max(1, info["nodes"]))
    need = int(resources.get("cores", 1)) * int(resources.get("threads_per_core", 1))
    return {**resources, "num_nodes": max(1, -(-need // per_node))}


def check_request(resources: dict, nesting: bool = False) -> None:
    """Refuse what the enclosing instance can never run: more cores (x threads), GPUs or
    nodes than it has, or a jobspec Flux would refuse. One check for job steps
    (``FluxJobExecutor``) and batch jobs (``FluxClusterExecutor``).

    Args:
        resources: a call's ``resource_dict``.
        nesting: the job runs in a nested instance (``flux_executor_nesting``).

    Raises:
        UnsatisfiableRequestError: the request and the instance's size, with the remedy.
        ValueError: a jobspec Flux refuses (its own message); a ``priority`` (Flux's
            urgency) outside 1..31.
    """
    flux_urgency(Resources.of({"priority": resources.get("priority")}))  # 1..31, never 0 (held for ever)
    info = instance_resources()
    cores = int(resources.get("cores", 1))
    threads = int(resources.get("threads_per_core", 1))
    where = f"this Flux instance ({os.environ.get('FLUX_URI')}) has"
    if cores * threads > info["cores"]:
        raise UnsatisfiableRequestError(
            f"cores={cores} x threads_per_core={threads} = {cores * threads} cores asked for one job, but {where} "
            f"{info['cores']}; ask for fewer, or start Flux on more resources"
        )
    gpus = cores * (resources.get("gpus_per_core") or 0)
    if gpus > info["gpus"]:
        raise UnsatisfiableRequestError(
            f"gpus_per_core={resources.get('gpus_per_core')} x cores={cores} = {gpus:g} GPUs asked for one job, "
            f"but {where} {info['gpus']}; ask for fewer, or start Flux where the GPUs are"
        )
    nodes = resources.get("num_nodes")
    if nodes and nodes > info["nodes"]:
        raise UnsatisfiableRequestError(
            f"num_nodes={nodes} asked for one job, but {where} {info['nodes']} node(s); ask for fewer, or start Flux on more nodes"
        )
    if nodes and cores < nodes:
        raise UnsatisfiableRequestError(f"num_nodes={nodes} with cores={cores}: Flux needs at least one rank per node; ask for cores >= num_nodes")
    # whatever else Flux would refuse in the jobspec is refused now, not later
    try:
        jobspec_for(["true"], shaped(resources), {}, pmi=None, nesting=nesting)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"Flux cannot take this resource_dict: {exc}") from exc


def check_pmi_mode(pmi_mode: str | None) -> None:
    """Refuse a ``pmi_mode`` the flux shell does not know.

    Raises:
        ValueError: naming the accepted values.
    """
    if pmi_mode is None:
        return
    if not isinstance(pmi_mode, str) or not pmi_mode or any(p not in PMI_NAMES for p in pmi_mode.split(",")):
        raise ValueError(
            f"pmi_mode={pmi_mode!r}: the flux shell's 'pmi' option takes one of {PMI_NAMES} "
            "(or several, comma-separated); None picks the one the MPI of mpi4py needs"
        )


def pmi_for(cores: int, pmi_mode: str | None) -> str | None:
    """The shell's ``pmi`` option for a job of ``cores`` ranks.

    Args:
        cores: MPI ranks.
        pmi_mode: the user's choice, taken as it is; ``None``: ``pmix`` when mpi4py loads Open
            MPI (with Flux's default each rank would be a singleton of size 1), Flux's default
            otherwise (MPICH speaks it; MPICH with ``pmix`` hangs).

    Returns:
        The option's value, or ``None`` for Flux's default.
    """
    if pmi_mode is not None or cores <= 1:
        return pmi_mode
    return "pmix" if mpi4py_family() == "openmpi" else None


def jobspec_for(argv: list[str], resources: dict, env: dict, *, pmi: str | None, nesting: bool = False,
                stdout: str | None = None, stderr: str | None = None):
    """The Flux jobspec of one task or worker.

    Args:
        argv: the worker's command line (one copy per rank).
        resources: the merged ``resource_dict``, rendered by ``flux_jobspec_args``
            (``run_time_max`` becomes the duration: the warm pool leaves it out).
        env: the job's whole environment.
        pmi: the shell's ``pmi`` option (None: Flux's default).
        nesting: run the worker inside a nested Flux instance of the job's size: a serial
            worker as its initial program (the instance's resources free for the task's own
            jobs), an MPI task's ranks with ``flux run`` inside it.
        stdout, stderr: files for the job's output (None: Flux keeps it in the job's log).

    Returns:
        A ``flux.job.JobspecV1`` and its urgency (0..31), as a tuple.

    Raises:
        ValueError: GPUs per rank that are not whole.
    """
    from flux.job import JobspecV1

    args = flux_jobspec_args(Resources.of(resources, pmi))
    cores, threads = args["num_tasks"], args["cores_per_task"]
    gpus = args["gpus_per_task"] or None
    nodes = args["num_nodes"] or None
    if nesting and cores == 1:
        # a serial worker is the nested instance's initial program, as in executorlib: it holds
        # none of the instance's cores, GPUs or nodes, which stay free for the task's own jobs
        # (wrapped in `flux run`, it held them all and a job of its own waited for ever)
        spec = JobspecV1.from_nest_command(
            list(argv), num_slots=1, cores_per_slot=threads, gpus_per_slot=gpus, num_nodes=nodes,
            exclusive=args["exclusive"],
        )
    elif nesting:
        # an MPI task: one broker per node runs `flux run` of the ranks, which need the cores
        inner = ["flux", "run", "-n", str(cores), "-c", str(threads)]
        if gpus:
            inner += ["-g", str(gpus)]
        if nodes:
            inner += ["-N", str(nodes)]
        if args["shell_options"].get("pmi"):
            inner += ["-o", f"pmi={args['shell_options']['pmi']}"]
        spec = JobspecV1.from_nest_command(
            inner + list(argv), num_slots=cores, cores_per_slot=threads, gpus_per_slot=gpus, num_nodes=nodes,
            exclusive=args["exclusive"],
        )
    else:
        spec = JobspecV1.from_command(
            list(argv), num_tasks=cores, cores_per_task=threads, gpus_per_task=gpus, num_nodes=nodes,
            exclusive=args["exclusive"],
        )
        for name, value in args["shell_options"].items():
            spec.setattr_shell_option(name, value)
    spec.environment = env
    spec.cwd = args["cwd"] if args["cwd"] is not None else os.getcwd()
    if args["duration"]:
        spec.duration = float(args["duration"])
    if stdout is not None:
        spec.stdout = stdout
    if stderr is not None:
        spec.stderr = stderr
    return spec, args["urgency"]


class FluxJob(WorkerHandle):
    """A worker handle over one Flux job.

    A ``launch.handle.WorkerHandle``: the engines and ``wire.waiting`` wait on it as on a
    local process.

    ``ended_fd`` is a pipe the job future's done-callback writes when Flux reports the job
    finished (or failed: cancelled, timed out, never allocated); ``stderr_fd`` is None: the
    job's output is in files, read by ``pump_stderr`` whenever the engine looks (and always
    once the job ended). ``kill`` cancels the job.

    Args:
        launcher: the ``FluxLauncher`` whose FluxExecutor submits it and whose handle cancels it.
        spec: the jobspec (``jobspec_for``).
        urgency: Flux urgency 0..31 (``flux_jobspec_args``).
        outdir: a private directory holding ``out`` and ``err`` (removed at ``close``), or None
            when the output goes to ``log_files`` the user keeps.
        log_files: (stdout path, stderr path) to read back, with ``{{id}}`` still in them;
            (None, None): Flux keeps the output in the job's log.
        run_time_max: the time limit given to Flux, for the error message (seconds).

    Raises:
        WorkerCrashedError: Flux refused the submission (with its reason).
    """

    capabilities = frozenset({MAY_QUEUE})  # a job may wait in Flux's queue; it inherits no fds
    stderr_fd = None

    def __init__(self, launcher, spec, urgency, outdir, log_files, run_time_max=None):
        from flux.job import JobID

        self._launcher = launcher
        self.argv = list(spec.tasks[0]["command"]) if spec.tasks else []
        self._tail = bytearray()
        self._reports = RankReportFilter()  # failing ranks' sealed reports, out of the stream
        self._outdir = outdir
        self._run_time_max = run_time_max
        self._closed = False
        self._ended_r, self._ended_w = os.pipe()
        self.future = launcher.executor().submit(spec, urgency=urgency)
        self.future.add_done_callback(self._on_done)
        try:
            self.jobid = self.future.jobid(timeout=120)
        except BaseException as exc:
            self._close_fds()
            if outdir:
                shutil.rmtree(outdir, ignore_errors=True)
            remedy = raised_priority_remedy(urgency, "flux")
            hint = f"\n(if it refused the urgency: {remedy})" if remedy else ""
            raise WorkerCrashedError(f"Flux refused the job ({' '.join(self.argv[:3])} ...): {exc}{hint}") from exc
        self.pid = int(self.jobid)  # for the engines' logs: a job id, not a process
        self.name = JobID(self.jobid).f58
        self.label = f"Flux job {self.name}"
        # None: Flux keeps the output in the job's log (read once the job ended)
        self._paths = [p.replace("{{id}}", self.name) if p is not None else None for p in log_files]
        self._offsets = [0, 0]
        self._kvs_read = False

    # -- end ------------------------------------------------------------------------
    @property
    def ended_fd(self) -> int:
        """A pipe's reading end, written once the Flux job finished or failed (see
        ``WorkerHandle.ended_fd``)."""
        return self._ended_r

    def _on_done(self, _future) -> None:
        """Runs in the FluxExecutor's thread when the job finished or failed."""
        try:
            os.write(self._ended_w, b"x")
        except OSError:
            pass  # closed already: nobody waits any more

    def ended(self) -> bool:
        """Whether the Flux job has ended (its ``FluxExecutor`` future is done); never blocks."""
        return self.future.done()

    def wait_ended(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds (None: no limit) for the Flux job to end.

        Returns:
            True if it has ended.
        """
        import concurrent.futures

        done, _ = concurrent.futures.wait([self.future], timeout=timeout)
        return bool(done)

    def _exception(self):
        if not self.future.done() or self.future.cancelled():
            return None
        return self.future.exception()

    def describe_exit(self) -> str:
        """How the job ended: its exit code or signal, or Flux's exception on it (type and
        note: a cancel, a timeout, an allocation it can never get), with its stderr tail."""
        self.wait_ended(None)
        self.pump_stderr()
        exc = self._exception()
        if exc is not None:
            how = f"{getattr(exc, 'type', 'failed')}: {getattr(exc, 'note', exc)}"
        else:
            how = exit_words(self.future.result())
        text = f"Flux job {self.name} ({os.path.basename(self.argv[0]) if self.argv else '?'}) {how}"
        return with_stderr_tail(text, self.stderr_tail())

    def exit_error(self) -> BaseException:
        """``TimeoutError`` for a job that exceeded its duration, ``UnsatisfiableRequestError``
        for one Flux can never allocate, ``WorkerCrashedError`` (exit code or the job's
        exception, e.g. a ``flux cancel`` from outside, and the stderr tail) otherwise."""
        text = self.describe_exit()
        kind = getattr(self._exception(), "type", None)
        if kind == "timeout":
            return TimeoutError(f"the task ran longer than run_time_max={self._run_time_max} s: {text}")
        note = str(getattr(self._exception(), "note", ""))
        if kind == "alloc" and "unsatisfiable" in note.lower():
            return UnsatisfiableRequestError(f"Flux can never allocate this request: {text}")
        return WorkerCrashedError(text)

    # -- output ---------------------------------------------------------------------
    @property
    def stderr_open(self) -> bool:
        """Always False: a Flux job's output is read from its files, not a pipe to poll."""
        return False  # nothing to poll: the output is read from files

    def pump_stderr(self) -> None:
        """Show what the job wrote since the last look: its stdout on ours, its stderr on ours
        (without the report lines of failing ranks, which go to ``reports``)."""
        if self._closed:
            return
        for i, data in enumerate(self._new_output()):
            if not data:
                continue
            self._offsets[i] += len(data)
            if i == 0:
                _write(sys.stdout, data)
            else:
                self._show(self._reports.feed(data))
        if self.future.done():
            self._show(self._reports.flush())

    def _new_output(self) -> list:
        """What the job wrote to stdout and stderr since the last look: from its files, or,
        when Flux keeps the output (an instance of several nodes, whose other nodes may not
        share this node's /tmp), from the job's output log once the job has ended."""
        if self._paths[0] is None:
            if not self.future.done() or self._kvs_read:
                return [b"", b""]
            self._kvs_read = True
            output = self._launcher.job_output(self.jobid)
            return [text.encode()[offset:] for text, offset in zip(output, self._offsets)]
        chunks = []
        for path, offset in zip(self._paths, self._offsets):
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    chunks.append(f.read())
            except OSError:
                chunks.append(b"")
        return chunks

    def _show(self, chunk: bytes) -> None:
        if chunk:
            self._tail += chunk
            del self._tail[:-STDERR_TAIL]
            _write(sys.stderr, chunk)

    def take_reports(self) -> list[bytes]:
        """The sealed reports (hex) failing ranks left in the job's stderr since the last
        call (see ``WorkerHandle.take_reports``)."""
        return self._reports.take()

    def stderr_tail(self) -> str:
        """The last few kB of the job's stderr seen so far (reports taken out), stripped."""
        return self._tail.decode(errors="replace").strip()

    def request(self) -> str:
        """The job's label (``"job f12..."``) for messages; ``"a Flux job"`` before it has one."""
        return self.label if hasattr(self, "label") else "a Flux job"

    # -- stopping -------------------------------------------------------------------
    def terminate(self, grace: float = 1.0) -> None:
        """SIGTERM to the job's tasks, a cancel after ``grace`` seconds; waits for its end."""
        if self.future.done():
            return
        self._launcher.signal(self.jobid, signal.SIGTERM)
        if not self.wait_ended(grace):
            self._launcher.cancel(self.jobid, "stopped by hpcfutures")
            self.wait_ended(_SIGNAL_GRACE)

    def kill(self) -> None:
        """Cancel the job (Flux kills all its tasks); safe from any thread, never waits."""
        if not self.future.done():
            self._launcher.cancel(self.jobid, "stopped by hpcfutures")

    def _close_fds(self) -> None:
        for fd in (self._ended_r, self._ended_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._ended_r = self._ended_w = -1

    def close(self) -> None:
        """Release the handle: the output read one last time, the pipe closed, the private
        output directory removed. A job still running is cancelled: none is left behind."""
        if self._closed:
            return
        if not self.future.done():
            self._launcher.cancel(self.jobid, "abandoned by hpcfutures")
            self.wait_ended(_SIGNAL_GRACE)
        self.pump_stderr()
        self._closed = True
        self._close_fds()
        if self._outdir:
            shutil.rmtree(self._outdir, ignore_errors=True)


def _write(stream, data: bytes) -> None:
    try:
        stream.write(data.decode(errors="replace"))
    except Exception:
        pass  # a closed or odd stream must not cost the task its result


class FluxLauncher(Launcher):
    """Workers as Flux jobs of the enclosing instance.

    Args:
        flux_executor: a ``flux.job.FluxExecutor`` to submit through (the caller's, left
            running at ``close``); None: one of our own, made at the first start.
        pmi_mode: the shell's ``pmi`` option; None: chosen per job (``pmi_for``).
        nesting: run each job's ranks inside a nested Flux instance.
        log_files: keep each job's stdout/stderr as ``flux-<jobid>.out``/``.err`` in the job's
            working directory (otherwise they go to a private temporary directory, shown on
            the driver's streams, and removed).

    Raises:
        ValueError: an unknown ``pmi_mode``; TypeError: ``flux_executor`` is not a FluxExecutor.
    """

    name = "flux"
    capabilities = frozenset()  # a Flux job inherits no descriptors: every task uses the socket

    def __init__(self, flux_executor=None, pmi_mode: str | None = None, nesting: bool = False, log_files: bool = False):
        check_pmi_mode(pmi_mode)
        if flux_executor is not None and not (hasattr(flux_executor, "submit") and hasattr(flux_executor, "attach")):
            raise TypeError(f"flux_executor must be a flux.job.FluxExecutor, got {type(flux_executor).__qualname__}")
        self.pmi_mode = pmi_mode
        self.nesting = bool(nesting)
        self.log_files = bool(log_files)
        self._given = flux_executor
        self._own = None
        self._lock = threading.Lock()
        self._handle = None  # for cancel/kill; flux handles are not thread-safe: used under _lock

    # -- the Launcher interface -------------------------------------------------------
    def check(self, resources: dict) -> None:
        """Refuse at ``submit()`` what Flux can never start here.

        Raises:
            ValueError: ``openmpi_oversubscribe`` (Flux has no oversubscription).
            ImportError, RuntimeError: no bindings, or not inside an instance (``require_flux``);
                ``cores > 1`` without mpi4py.
            UnsatisfiableRequestError: more cores, GPUs or nodes than the instance has.
            ValueError: a ``priority`` (Flux's urgency) outside 1..31.
        """
        if resources.get("openmpi_oversubscribe"):
            # the honours table refuses it in a resource_dict; this covers the constructor's
            # parameter (and the fronts' oversubscribe=True), which reach only the launcher
            raise ValueError(
                "openmpi_oversubscribe=True is not supported under Flux: Flux gives every rank a core of its own; "
                "ask for fewer cores, or use SingleNodeExecutor (mpiexec --oversubscribe)"
            )
        instance_resources()
        self.executor()  # its thread and Flux handle start now, not in the first call
        cores = int(resources.get("cores", 1))
        if cores > 1:
            require_mpi4py()
            pmi_for(cores, self.pmi_mode)  # learnt now (cached), not in a worker thread
        check_request(resources, nesting=self.nesting)

    _shaped = staticmethod(shaped)  # the one rule, kept under its old name

    def start(self, argv: list[str], resources: dict, env: dict, cwd: str | None, pass_fds=()) -> FluxJob:
        """Submit ``argv`` as one job shaped by ``resources``; returns its handle.

        Args:
            argv: the worker's command line.
            resources: the merged ``resource_dict``.
            env: the job's environment.
            cwd: its working directory.
            pass_fds: must be empty: a job inherits no descriptors.

        ``resources["run_time_max"]`` becomes the job's duration (the warm pool leaves it out:
        there it limits each call, not the worker's life).

        Raises:
            ValueError: descriptors to pass; WorkerCrashedError: Flux refused the job.
        """
        if pass_fds:
            raise ValueError("a Flux job cannot inherit descriptors; use the socket transport")
        cores = int(resources.get("cores", 1))
        pmi = pmi_for(cores, self.pmi_mode)
        duration = resources.get("run_time_max")
        env = dict(env)
        if pmi is not None and "pmix" in pmi:
            for name, value in _PMIX_QUIET.items():
                env.setdefault(name, value)
        outdir = None
        if self.log_files:
            where = os.path.abspath(cwd) if cwd is not None else os.getcwd()
            out, err = os.path.join(where, "flux-{{id}}.out"), os.path.join(where, "flux-{{id}}.err")
        elif instance_resources()["size"] == 1:
            # one node: a private directory, read as the job writes (no size limit)
            outdir = tempfile.mkdtemp(prefix="hpcf-flux-")
            out, err = os.path.join(outdir, "out"), os.path.join(outdir, "err")
        else:
            # several nodes: rank 0's shell may run where this node's /tmp is not seen; Flux
            # keeps the output in the job's log, read back once the job ended
            out = err = None
        shaped = self._shaped(resources)
        if cwd is not None:
            shaped = {**shaped, "cwd": cwd}
        spec, urgency = jobspec_for(argv, shaped, env, pmi=pmi, nesting=self.nesting, stdout=out, stderr=err)
        return FluxJob(self, spec, urgency, outdir, (out, err), run_time_max=duration)

    # -- Flux -----------------------------------------------------------------------
    def executor(self):
        """The FluxExecutor jobs go through (the caller's, or ours, made once)."""
        if self._given is not None:
            return self._given
        with self._lock:
            if self._own is None:
                from flux.job import FluxExecutor

                # the executor's thread looks for new submissions every poll_interval seconds:
                # Flux's default (0.1 s) would add up to that much to every task
                self._own = FluxExecutor(poll_interval=0.005, thread_name_prefix="hpcfutures-flux")
                # Flux's own exit hook (weakref.finalize, registered now, so run BEFORE hpcfutures'
                # atexit hook) would stop the thread first: an executor left open would then wait
                # for every running job on Ctrl-C and fail its queued work at a normal exit. Its
                # threads are daemons; our exit hook finishes or cancels the work, then close()s.
                finalizer = getattr(self._own, "_finalizer", None)
                if finalizer is not None:
                    finalizer.atexit = False
            return self._own

    def _with_handle(self, action) -> None:
        flux = require_flux()
        with self._lock:
            if self._handle is None:
                self._handle = flux.Flux()
            try:
                action(self._handle)
            except OSError:
                pass  # the job ended meanwhile (ENOENT/EPERM on an inactive job)

    def cancel(self, jobid, reason: str) -> None:
        """Cancel a job (Flux raises a 'cancel' exception on it; its tasks are killed).

        Args:
            jobid: the Flux job id.
            reason: the text Flux records with the cancel exception.
        """
        import flux.job

        self._with_handle(lambda h: flux.job.cancel(h, jobid, reason))

    def job_output(self, jobid) -> tuple[str, str]:
        """(stdout, stderr) Flux kept for an ended job; empty strings where it has none."""
        from flux.job.output import job_output

        result: list = []

        def fetch(handle):
            try:
                got = job_output(handle, jobid, nowait=True)
                result.extend((got.stdout, got.stderr))
            except FileNotFoundError:  # the job never started: no output
                pass

        self._with_handle(fetch)
        return (result[0], result[1]) if result else ("", "")

    def signal(self, jobid, signum: int) -> None:
        """Send ``signum`` to every task of a running job (an ended job is ignored).

        Args:
            jobid: the Flux job id.
            signum: the signal number (``signal.SIGTERM``, ...).
        """
        import flux.job

        self._with_handle(lambda h: flux.job.kill(h, jobid, signum))

    def close(self) -> None:
        """Stop our FluxExecutor's thread (not a caller's); idempotent."""
        with self._lock:
            own, self._own = self._own, None
            self._handle = None  # closed when collected
        if own is not None:
            own.shutdown(wait=True)

