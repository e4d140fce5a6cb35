"""The package's shape: imports point down the layers of the picture in
``hpcfutures/__init__.py``; every engine implements the one interface; ``help()`` of every
public executor documents every constructor parameter. No processes: milliseconds."""

import ast
import inspect
import pathlib
import pydoc

import pytest

import hpcfutures

SRC = pathlib.Path(hpcfutures.__file__).parent

# top to bottom: a module may import its own layer and the layers below it, never above
LAYERS = [
    {"hpcfutures", "__main__", "api", "cli"},  # entry points: the package's lazy exports, the CLI
    {"compat"},  # pympipool's fronts over the executors
    {"executors", "progress_bar"},  # facades: check input, hold dependencies, answer from cache
    {"engines", "graph"},  # engines (and graph-only recording) and outcome.py: futures end here
    {"batch"},  # batch queues: sbatch/squeue/scancel, pysqa, local processes; terminate
    {"launch"},  # how a worker process comes to exist (it renders resources through scheduling/)
    {"scheduling"},  # pure state: Task, TaskFuture, the resource model and its renderers, core budget
    {"worker"},  # the lean entry points run in worker processes (file_task reads cache entries)
    {"cache"},  # the entry format and the store
    {"wire"},  # authenticated frames and transports
    {"errors", "logs", "nested", "files"},  # stdlib-only helpers every layer may use
]

# engines that still live beside the facades until the lead moves them into engines/
# (issue 13 item 5: other branches edit them now); they count as engines
ENGINE_FILES: set = set()

# known upward imports that another branch of issue 13 removes (item 1: wire/ stops importing
# launch/ once launchers return handles); each entry names the file and the package it imports
PENDING: set = set()


def _layer_of(package: str) -> int:
    for depth, members in enumerate(LAYERS):
        if package in members:
            return depth
    raise AssertionError(f"package {package!r} is in no layer of the table: add it where it belongs")


def _package(relative: pathlib.PurePath) -> str:
    if relative.as_posix() in ENGINE_FILES:
        return "engines"
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem.replace("__init__", "hpcfutures")


def _imported(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "hpcfutures":
        return None
    if len(parts) == 1:
        return "hpcfutures"
    if ".".join(parts[1:3]).replace(".", "/") + ".py" in ENGINE_FILES:
        return "engines"
    return parts[1]


def _upward_imports() -> list[tuple[str, str, int]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        here = _package(relative)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "hpcfutures":
                modules = [f"hpcfutures.{alias.name}" for alias in node.names]  # from hpcfutures import nested
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                target = _imported(module)
                if target is None or target == here:
                    continue
                if _layer_of(target) < _layer_of(here) and (relative.as_posix(), target) not in PENDING:
                    found.append((relative.as_posix(), module, node.lineno))
    return found


def test_no_module_imports_a_package_above_it():
    assert _upward_imports() == []


def test_the_layer_check_finds_an_upward_import(tmp_path, monkeypatch):
    """The check itself can fail: a worker module importing the facades is caught."""
    fake = tmp_path / "hpcfutures"
    (fake / "worker").mkdir(parents=True)
    (fake / "worker" / "bad.py").write_text("from hpcfutures.executors.base import BaseExecutor\n")
    monkeypatch.setattr(__import__(__name__), "SRC", fake)
    assert _upward_imports() == [("worker/bad.py", "hpcfutures.executors.base", 1)]


def test_every_package_is_in_the_layer_table():
    packages = {_package(p.relative_to(SRC)) for p in SRC.rglob("*.py")}
    for package in packages:
        _layer_of(package)


def _engine_classes():
    from hpcfutures.engines.job_per_call import JobEngine
    from hpcfutures.engines.one_process import OneProcessPerTask
    from hpcfutures.engines.warm_pool import WarmPool
    from hpcfutures.graph.record import GraphRecorder

    return [OneProcessPerTask, WarmPool, JobEngine, GraphRecorder]


@pytest.mark.parametrize("engine", _engine_classes(), ids=lambda c: c.__name__)
def test_every_engine_implements_the_interface(engine):
    from hpcfutures.engines.interface import Engine

    members = [name for name in vars(Engine) if not name.startswith("_")]
    members += list(Engine.__annotations__)
    missing = [name for name in members if not hasattr(engine, name)]
    assert missing == [], f"{engine.__name__} lacks {missing} of engines.interface.Engine"


def test_graph_recorder_is_an_engine_that_records(tmp_path):
    """Graph-only mode is an engine: it takes tasks through enqueue, ends their futures with
    None, and writes the graph once at stop."""
    from concurrent.futures import Future

    from hpcfutures.graph.record import GraphRecorder
    from hpcfutures.scheduling.futures import TaskFuture
    from hpcfutures.scheduling.task import Task

    out = tmp_path / "graph.json"
    recorder = GraphRecorder(workflow_filename=str(out))
    assert recorder.records_calls and recorder.queued() == 0
    first = Task(TaskFuture(), sum, ([1, 2],), {}, {})
    recorder.enqueue(first)
    second = Task(TaskFuture(), max, (first.future, 5), {}, {})
    recorder.enqueue(second)
    assert first.future.result(timeout=1) is None and second.future.result(timeout=1) is None
    assert {"source": 0, "sourcePort": None, "target": 2, "targetPort": "0"} in recorder.edges  # sum -> max
    recorder.stop(wait=True)
    written = out.read_text()
    out.unlink()
    recorder.stop(wait=True)  # once only
    assert written and not out.exists()
    assert isinstance(recorder.record(len, ([],), {}), Future)


def _public_classes():
    from hpcfutures.api import TestClusterExecutor

    names = ["SingleNodeExecutor", "SlurmJobExecutor", "SlurmClusterExecutor", "Pool", "MPISpawnPool",
             "Executor", "HPCExecutor", "PoolExecutor"]  # fmt: skip
    return [getattr(hpcfutures, name) for name in names] + [TestClusterExecutor]


def _documented_arguments(doc: str) -> set[str]:
    """The names of a Google-style ``Args:`` section (``name:`` or ``a, b, c:`` entries)."""
    names: set[str] = set()
    inside, indent = False, None
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped == "Args:":
            inside, indent = True, None
            continue
        if not inside or not stripped:
            continue
        depth = len(line) - len(line.lstrip())
        if depth == 0:  # the next section (Raises:, Returns:) or prose
            inside = False
            continue
        if indent is None:
            indent = depth
        if depth == indent and ":" in stripped:
            names.update(name.strip() for name in stripped.split(":", 1)[0].split(","))
    return names


@pytest.mark.parametrize("cls", _public_classes(), ids=lambda c: c.__name__)
def test_help_names_every_constructor_parameter(cls):
    doc = inspect.getdoc(cls) or ""
    parameters = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    assert parameters, cls
    undocumented = [p for p in parameters if p not in _documented_arguments(doc)]
    assert undocumented == [], f"{cls.__name__}'s docstring has no Args entry for {undocumented}"
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    assert "Args:" in text and all(p in text for p in parameters)  # help() shows them


def test_the_help_check_sees_a_missing_parameter():
    doc = """Something.

    Args:
        alpha: the first.
        gamma, delta: two more,
            over two lines: with a colon.
    Raises:
        beta: not an argument.
    """
    assert _documented_arguments(inspect.cleandoc(doc)) == {"alpha", "gamma", "delta"}


def test_a_backend_is_immutable():
    from hpcfutures.executors.backends import LOCAL

    with pytest.raises(AttributeError, match="immutable"):
        LOCAL.assigns_gpus = False


@pytest.mark.timeout(60)
def test_a_new_backend_is_one_value(tmp_path):
    """A new place to run is a Backend plus an explicit signature over the shared body: its
    refused keys, default core budget and pool check are honoured with no other code."""
    from hpcfutures.executors.backends import LOCAL, Backend
    from hpcfutures.executors.launched import LaunchedExecutor

    pools, launchers = [], []

    class ClosingLauncher(type(LOCAL.make_launcher())):
        closed = 0

        def close(self):
            self.closed += 1
            super().close()  # the fork server the local launcher may have started

    def make_launcher(colour=None):
        launchers.append((colour, ClosingLauncher()))
        return launchers[-1][1]

    tiny = Backend(
        name="tiny",
        make_launcher=make_launcher,
        launcher_parameters=("colour",),
        default_cores=lambda: 3,
        refused={"cwd": (lambda v: v is None, "this backend runs where the driver runs")},
        worker_keys=LOCAL.worker_keys,
        assigns_gpus=False,
        check_pool=lambda n, resources: pools.append((n, resources["cores"])),
    )

    class TinyExecutor(LaunchedExecutor):
        """Runs on the tiny backend.

        Args:
            block_allocation: warm workers.
        """

        def __init__(self, block_allocation: bool = False, colour: str = "blue"):
            self._open(tiny, "TinyExecutor", None, None, None, None, None, block_allocation, None, False, 0.01,
                       False, None, None, False, True, 0, False, colour=colour)  # fmt: skip

    with TinyExecutor() as exe:
        with pytest.raises(ValueError, match="submit.*'cwd'.*runs where the driver runs"):
            exe.submit(sum, [1], resource_dict={"cwd": str(tmp_path)})
        assert exe.max_workers == 3  # the backend's default core budget
        assert exe.submit(sum, [1, 2]).result(timeout=30) == 3
    with TinyExecutor(block_allocation=True, colour="red") as exe:
        assert pools == [(3, 1)]  # asked whether 3 one-core workers fit
        assert exe.submit(sum, [2, 2]).result(timeout=30) == 4
        assert exe.info["colour"] == "red"  # a launcher parameter is part of info
    exe.shutdown()  # a second shutdown closes nothing twice
    assert [(colour, launcher.closed) for colour, launcher in launchers] == [("blue", 1), ("red", 1)]


def _public_callables():
    """Public functions and methods of the modules the facades own (wire/, launch/, cache/
    and batch/ have their own reviews)."""
    from hpcfutures.compat.pool import AsyncResult

    owned = ("hpcfutures.compat", "hpcfutures.executors", "hpcfutures.scheduling.derived_futures", "hpcfutures.progress_bar")
    found = []
    for cls in _public_classes() + [AsyncResult]:
        for name, member in inspect.getmembers(cls, callable):
            if not name.startswith("_") and getattr(member, "__module__", "").startswith(owned):
                found.append((f"{cls.__name__}.{name}", member))
    for name in hpcfutures.__all__:
        value = getattr(hpcfutures, name)
        if inspect.isfunction(value) and value.__module__.startswith(owned):
            found.append((name, value))
    return found


@pytest.mark.parametrize("name,member", _public_callables(), ids=lambda x: x if isinstance(x, str) else "")
def test_public_functions_document_their_arguments(name, member):
    parameters = [p for p in inspect.signature(member).parameters if p not in ("self", "cls", "args", "kwargs")]
    parameters = [p for p in parameters if inspect.signature(member).parameters[p].kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
    doc = inspect.getdoc(member) or ""
    assert doc, f"{name} has no docstring"
    if len(parameters) > 1:  # one obvious argument may be described in prose
        missing = [p for p in parameters if p not in _documented_arguments(doc)]
        assert missing == [], f"{name}'s docstring has no Args entry for {missing}"


FACADES = ["executors/base.py", "executors/launched.py", "executors/cluster_jobs.py", "executors/single_node.py",
           "executors/slurm_job.py", "compat/executors.py", "compat/pool.py"]  # fmt: skip


def _engine_uses(source: str) -> set[str]:
    """Attributes read on ``self._engine`` (or ``self._engine`` under another name's ``_engine``)."""
    used = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "_engine":
            used.add(node.attr)
    return used


def test_facades_ask_engines_only_what_the_interface_offers():
    from hpcfutures.engines.interface import Engine

    offered = {name for name in vars(Engine) if not name.startswith("_")} | set(Engine.__annotations__)
    # queries: how often a batch queue was asked, read with a default for the benchmark
    used = set().union(*(_engine_uses((SRC / path).read_text()) for path in FACADES))
    assert used - offered - {"queries"} == set()
    assert _engine_uses("self._engine.record(fn)") == {"record"}  # the check sees a stray call


def test_a_subclass_with_the_old_hooks_is_refused():
    """The hooks that Backend replaced would be ignored without a word: refuse them."""
    from hpcfutures import SingleNodeExecutor

    with pytest.raises(TypeError, match=r"\['_make_launcher'\].*Backend"):

        class OldStyle(SingleNodeExecutor):
            def _make_launcher(self):
                return None
