"""The package's shape: imports point down the layers of the picture in
``hpcfutures/__init__.py``; every engine implements the one interface; ``help()`` of every
public executor documents every constructor parameter. No processes: milliseconds."""

import ast
import inspect
import pathlib
import pydoc
import textwrap

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
        check_pool=lambda n, resources, remedy: pools.append((n, resources["cores"])),
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


def _public_modules(root: pathlib.Path = SRC) -> list[pathlib.Path]:
    """Every module of the package whose path has no part with a leading underscore
    (a package's ``__init__.py`` counts as the package)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if not any(part.startswith("_") and part != "__init__" for part in parts):
            found.append(path)
    return found


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> list[str]:
    """The named parameters a caller passes (not self/cls, not *args/**kwargs)."""
    arguments = function.args
    names = [a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs]
    if method and names and not any(
        isinstance(d, ast.Name) and d.id == "staticmethod" for d in function.decorator_list
    ):
        names = names[1:]
    return names


def _raised_here(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """The exception classes ``function`` raises by name in its own body (``raise X(...)``),
    not counting ``NotImplementedError`` (an interface's abstract method) or a re-raise of a
    caught exception (``raise exc``)."""
    raised = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = ast.unparse(target)
            if name.split(".")[-1][:1].isupper() and name != "NotImplementedError":
                raised.add(name)
    return sorted(raised)


def _documentation_gaps(path: pathlib.Path, root: pathlib.Path = SRC) -> list[str]:
    """What the module's public functions, classes and methods leave undocumented: a missing
    docstring, an exception raised by name with no ``Raises:`` section, or (with more than
    one parameter) a parameter with no ``Args:`` entry. A constructor may be documented in
    the class docstring or ``__init__``'s."""
    relative = path.relative_to(root).as_posix()
    gaps = []

    def check(name: str, function, doc: str | None, method: bool) -> None:
        if not doc:
            gaps.append(f"{relative}: {name} has no docstring")
            return
        raised = _raised_here(function)
        if raised and "Raises:" not in doc:
            gaps.append(f"{relative}: {name} raises {raised} but its docstring has no Raises section")
        parameters = _parameters(function, method)
        if len(parameters) > 1:  # one obvious argument may be described in prose
            missing = [p for p in parameters if p not in _documented_arguments(inspect.cleandoc(doc))]
            if missing:
                gaps.append(f"{relative}: {name}'s docstring has no Args entry for {missing}")

    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            check(node.name, node, ast.get_docstring(node), method=False)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            class_doc = ast.get_docstring(node)
            if not class_doc:
                gaps.append(f"{relative}: {node.name} has no docstring")
            for member in node.body:
                if not isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                if member.name == "__init__":
                    doc = "\n".join(filter(None, [class_doc, ast.get_docstring(member)]))
                    check(f"{node.name}()", member, doc or None, method=True)
                elif not member.name.startswith("_"):
                    check(f"{node.name}.{member.name}", member, ast.get_docstring(member), method=True)
    return gaps


@pytest.mark.parametrize(
    "path", _public_modules(), ids=lambda p: p.relative_to(SRC).as_posix()
)
def test_public_functions_document_their_arguments(path):
    """Every public function, class and method of every public module has a docstring, and
    one that takes more than one argument names each in ``Args:``."""
    assert _documentation_gaps(path) == []


def test_the_documentation_check_sees_gaps(tmp_path):
    """The check itself can fail: a missing docstring, a missing Args entry, an undocumented
    constructor parameter; private names and modules are not asked."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "_private.py").write_text("def f(a, b): pass\n")
    (tmp_path / "pkg" / "mod.py").write_text(
        textwrap.dedent(
            '''
            def bare(a):
                pass

            def half(a, b):
                """Two.

                Args:
                    a: one.
                """

            def _hidden(a, b):
                pass

            class Thing:
                """A thing.

                Args:
                    x: one.
                """

                def __init__(self, x, y):
                    pass

                def method(self, z):
                    """One argument, in prose."""

                def check(self, z):
                    """Refuses a bad ``z``."""
                    if z is None:
                        raise ValueError("z")
            '''
        )
    )
    modules = _public_modules(tmp_path)
    assert [p.name for p in modules] == ["mod.py"]
    assert _documentation_gaps(modules[0], tmp_path) == [
        "pkg/mod.py: bare has no docstring",
        "pkg/mod.py: half's docstring has no Args entry for ['b']",
        "pkg/mod.py: Thing()'s docstring has no Args entry for ['y']",
        "pkg/mod.py: Thing.check raises ['ValueError'] but its docstring has no Raises section",
    ]


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


def _question_files(text: str) -> dict[str, list[str]]:
    """The files each newcomer question names: question text -> the ``*.py`` paths in its
    answer (the package docstring's list, or the table of docs/architecture.md)."""
    import re

    answers: dict[str, list[str]] = {}
    for question in ("cores", "warm worker", "SIGKILL"):
        line = next(
            (block for block in re.split(r"\n(?=- |\| )", text) if question in block.split("?")[0] and "?" in block),
            "",
        )
        answers[question] = re.findall(r"[\w/]+\.py", line.split("?", 1)[-1])
    return answers


def test_the_three_newcomer_questions_name_at_most_three_existing_files_in_both_places():
    """The package docstring and docs/architecture.md answer "where does a task get its
    cores?", "how does a result get back from a warm worker?" and "what happens when a
    worker is SIGKILLed?" with the same files, which exist, three main files each at most
    (one may name an alternative: ``launched.py`` beside ``base.py``, ``one_process.py``
    beside ``warm_pool.py``)."""
    package = _question_files(inspect.getdoc(hpcfutures) or "")
    page = pathlib.Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
    if not page.exists():  # the packaging run tests the wheel with tests/ alone
        pytest.skip("docs/architecture.md is not beside these tests (a test run against the wheel)")
    docs = _question_files(page.read_text())
    for question, files in package.items():
        assert 3 <= len(files) <= 4, (question, files)
        assert {f.split("/")[-1] for f in files} == {f.split("/")[-1] for f in docs[question]}, question
        for name in files:
            matches = [p for p in SRC.rglob(name.split("/")[-1]) if p.as_posix().endswith(name)]
            assert matches, f"{question}: {name} is no file of the package"


def _unnamed_modules(readme: str, page: str, root: pathlib.Path = SRC) -> list[str]:
    """The modules of the package that README.md's layout block does not name under their
    package's entry, or that docs/architecture.md's layer table does not name in its
    package's row (top-level modules: anywhere in the table)."""
    import re

    block = readme.split("```\nsrc/hpcfutures/\n", 1)[1].split("```", 1)[0]
    entries: dict[str, str] = {}
    package = ""
    for line in block.splitlines():
        opened = re.match(r"  (\w+)/\s", line)
        if opened:
            package = opened.group(1)
        elif re.match(r"\s{0,2}\S", line):  # a top-level module (or docs/, tests/, ...)
            package = ""
        entries[package] = entries.get(package, "") + line + "\n"
    table = page.split("## The layers", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): line for line in table.splitlines() if (m := re.match(r"\| `(\w+)/`", line))}
    missing = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        package = relative.parts[0] if len(relative.parts) > 1 else ""
        name = relative.name
        if not re.search(rf"(?<![\w/]){re.escape(name)}\b", entries.get(package, "")):
            missing.append(f"README.md: {relative.as_posix()}")
        row = rows.get(package, "") if package else table
        if f"`{name}`" not in row and f"`{relative.stem}`" not in row:
            missing.append(f"docs/architecture.md: {relative.as_posix()}")
    return missing


def test_readme_and_architecture_page_name_every_module():
    """README.md's layout block and docs/architecture.md's layer table name every module of
    the package with what it holds, so a newcomer finds each file in both places."""
    top = pathlib.Path(__file__).resolve().parent.parent
    readme, page = top / "README.md", top / "docs" / "architecture.md"
    if not (readme.exists() and page.exists()):  # the packaging run tests the wheel with tests/ alone
        pytest.skip("README.md and docs/ are not beside these tests (a test run against the wheel)")
    assert _unnamed_modules(readme.read_text(), page.read_text()) == []


def test_the_module_listing_check_sees_a_missing_module(tmp_path):
    """The check itself can fail: a module named in neither place is reported twice."""
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "new_engine.py").write_text("")
    (tmp_path / "api.py").write_text("")
    readme = "```\nsrc/hpcfutures/\n  api.py   names\n  engines/   nothing here\n```\n"
    page = "## The layers\n\n| `engines/` | `interface.py` | yes |\n| entry points | `api.py` | no |\n"
    assert _unnamed_modules(readme, page, tmp_path) == [
        "README.md: engines/new_engine.py",
        "docs/architecture.md: engines/new_engine.py",
    ]
