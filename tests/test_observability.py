"""Progress bars, the task overview and its graph, logging, and the package's metadata."""

import io
import logging
import os
import subprocess
import sys
import warnings

import pytest

import funcs
from conftest import wait_until
from hpcfutures import SingleNodeExecutor, WorkerCrashedError, progress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _state_of(exe, task_id):
    return next(row["state"] for row in exe.task_overview() if row["id"] == task_id)


# -- task overview ----------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_overview_shows_every_state(tmp_path):
    go = str(tmp_path / "go")
    with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
        held = exe.submit(funcs.wait_for_file, go, 1)  # 1: runs until the file appears
        after = exe.submit(funcs.add, held, 1)  # 2: waits for 1
        queued = exe.submit(funcs.add, 5, 5)  # 3: queued behind 1 (one worker)
        assert wait_until(lambda: _state_of(exe, 1) == "running", 30)
        rows = {row["id"]: row for row in exe.task_overview()}
        assert rows[1]["function"] == "wait_for_file" and rows[1]["worker"] == "worker 0"
        assert rows[2]["state"] == "waiting-for-dependencies" and rows[2]["depends_on"] == [1]
        # task 3 may already be sent ahead to the busy worker (then it shows running there)
        assert rows[3]["state"] in ("queued", "running")
        assert rows[1]["since"] >= rows[1]["submitted"]
        open(go, "w").close()
        assert after.result(30) == 2 and queued.result(30) == 10
        failed = exe.submit(funcs.boom)
        with pytest.raises(ValueError):
            failed.result(30)
    rows = exe.task_overview()
    assert [row["state"] for row in rows] == ["done", "done", "done", "failed"]
    assert all(row["worker"] == "worker 0" for row in rows)
    assert "result" not in rows[0] and "output" not in rows[0]  # no results kept alive


@pytest.mark.timeout(60)
def test_overview_cancelled_and_fresh_process_pid(tmp_path):
    go = str(tmp_path / "go")
    exe = SingleNodeExecutor(max_workers=1)
    running = exe.submit(funcs.wait_for_file, go, 1)
    waiting = exe.submit(funcs.add, 1, 1)
    assert wait_until(lambda: _state_of(exe, 1) == "running", 30)
    assert _state_of(exe, 2) == "queued"
    assert waiting.cancel()
    # "running" from the moment it is admitted; its process id once the process exists
    assert wait_until(lambda: exe.task_overview()[0]["worker"] is not None, 30)
    pid = exe.task_overview()[0]["worker"]
    assert pid.startswith("pid ") and int(pid[4:]) != os.getpid()
    open(go, "w").close()
    assert running.result(30) == 1
    exe.shutdown()
    assert [row["state"] for row in exe.task_overview()] == ["done", "cancelled"]


@pytest.mark.timeout(60)
def test_overview_is_a_pandas_table():
    pandas = pytest.importorskip("pandas")
    with SingleNodeExecutor(max_workers=2) as exe:
        list(exe.map(funcs.add, [1, 2, 3], [1, 1, 1]))
    table = pandas.DataFrame(exe.task_overview())
    assert list(table["state"]) == ["done"] * 3
    assert {"id", "function", "state", "worker", "since", "submitted", "attempt", "cores", "depends_on"} <= set(table.columns)


@pytest.mark.timeout(90)
def test_overview_of_queued_jobs(tmp_path):
    from hpcfutures.api import TestClusterExecutor

    go = str(tmp_path / "go")
    with TestClusterExecutor(cache_directory=str(tmp_path / "cache")) as exe:
        job = exe.submit(funcs.wait_for_file, go, 3)
        assert wait_until(lambda: _state_of(exe, 1) == "running", 30)
        worker = exe.task_overview()[0]["worker"]
        assert worker.startswith("job ") and worker[4:].isdigit()
        open(go, "w").close()
        assert job.result(30) == 3
    assert exe.task_overview()[0]["state"] == "done"


@pytest.mark.timeout(60)
def test_task_graph_coloured_by_state(tmp_path):
    from hpcfutures.executors.overview import COLOURS

    with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
        a = exe.submit(funcs.add, 1, 1)
        b = exe.submit(funcs.boom)
        c = exe.submit(funcs.add, a, 2)
        c.result(30)
        with pytest.raises(ValueError):
            b.result(30)
    graph = exe.task_graph()
    assert [e["source"] for e in graph.edges] == [1] and [e["target"] for e in graph.edges] == [3]
    svg = graph._repr_svg_()
    assert svg.count(f'fill="{COLOURS["done"]}"') >= 2 + 1  # two boxes and the legend
    assert f'fill="{COLOURS["failed"]}"' in svg and "boom #2" in svg
    graph.save(tmp_path / "g.dot")
    dot = (tmp_path / "g.dot").read_text()
    assert "n1 -> n3" in dot and COLOURS["failed"] in dot
    with pytest.raises(ValueError, match="suffix"):
        graph.save(tmp_path / "nosuffix")


# -- progress ---------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_progress_over_futures_counts_to_the_end(tmp_path):
    pytest.importorskip("tqdm")
    out = io.StringIO()
    with SingleNodeExecutor(max_workers=2, block_allocation=True) as exe:
        futures = [exe.submit(funcs.add, i, 1) for i in range(5)] + [exe.submit(funcs.boom)]
        returned = progress(futures, desc="sums", file=out)
        # wait=True: every future is done when progress() returns, failed ones included
        assert returned == futures and all(f.done() for f in futures)
    text = out.getvalue()
    assert "sums" in text and "6/6" in text


@pytest.mark.timeout(60)
def test_progress_without_waiting_and_of_nothing():
    pytest.importorskip("tqdm")
    out = io.StringIO()
    assert progress([], file=out) == []
    assert "0it" in out.getvalue()  # an empty bar is drawn and closed at once
    with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
        futures = [exe.submit(funcs.add, i) for i in range(3)]
        out = io.StringIO()
        progress(futures, wait=False, file=out)
        [f.result(30) for f in futures]
    assert wait_until(lambda: "3/3" in out.getvalue(), 10)
    with pytest.raises(ValueError, match="one per future"):
        progress(futures, sizes=[1])


@pytest.mark.timeout(60)
def test_map_progress_counts_items_also_in_chunks(capsys):
    pytest.importorskip("tqdm")
    with SingleNodeExecutor(max_workers=2, block_allocation=True) as exe:
        assert list(exe.map(funcs.add, range(7), range(7), progress=True)) == [0, 2, 4, 6, 8, 10, 12]
        # the bar is full and closed before the last result is handed out, so what the
        # caller prints next does not land inside it
        first = capsys.readouterr().err
        assert "7/7" in first and first.endswith("\n")
        assert list(exe.map(funcs.add, range(7), chunksize=3, progress="chunked")) == list(range(7))
    err = first + capsys.readouterr().err
    assert "add" in err and "7/7" in err and "chunked" in err
    assert "/3 " not in err  # chunks count their items, not themselves


@pytest.mark.timeout(60)
def test_progress_without_tqdm_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import tqdm.auto now fails
    with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
        with pytest.raises(ImportError, match=r"hpcfutures\[progress\]"):
            exe.map(funcs.add, [1, 2], progress=True)
        assert exe.task_overview() == []  # refused before anything was submitted
        with pytest.raises(ImportError, match=r"hpcfutures\[progress\]"):
            progress([exe.submit(funcs.add, 1)])


@pytest.mark.timeout(60)
def test_map_keeps_the_executor_contract():
    from concurrent.futures import TimeoutError as FuturesTimeout

    with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
        with pytest.raises(FuturesTimeout):
            list(exe.map(funcs.sleep_then, [5, 5], timeout=0.2))
        results = exe.map(funcs.add, [1, 2, 3])  # submitted now, not when iterated
        assert len([r for r in exe.task_overview() if r["function"] == "add"]) == 3
        assert list(results) == [1, 2, 3]


# -- logging ----------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_log_worker_started_died_restarted_and_retry(caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="hpcfutures")
    with SingleNodeExecutor(max_workers=1, block_allocation=True, restart_limit=1) as exe:
        with pytest.raises(WorkerCrashedError, match="killed by signal SIGKILL"):  # not result()'s own TimeoutError
            exe.submit(funcs.kill_self).result(30)
        assert exe.submit(funcs.add, 1, 1).result(30) == 2
    pool = [r for r in caplog.records if r.name == "hpcfutures.pool"]
    messages = [r.getMessage() for r in pool]
    assert any("worker 0 started" in m for m in messages), messages
    assert any("worker 0 died running kill_self()" in m and r.levelno == logging.WARNING for m, r in zip(messages, pool))
    assert any("worker 0 restarted (1 of restart_limit=1)" in m for m in messages), messages
    caplog.clear()
    counter = str(tmp_path / "count")
    with SingleNodeExecutor(max_workers=1) as exe:
        assert exe.submit(funcs.raise_until_attempt, counter, 2, "ok", resource_dict={"retries": 1, "retry_on": (ValueError,)}).result(30) == "ok"
    retried = [r for r in caplog.records if r.name == "hpcfutures.retry"]
    assert len(retried) == 1 and "raise_until_attempt() failed on attempt 1 of 2" in retried[0].getMessage()
    assert exe.task_overview()[0]["attempt"] == 2


@pytest.mark.timeout(60)
def test_log_cache_entry_unreadable(caplog, tmp_path):
    caplog.set_level(logging.WARNING, logger="hpcfutures")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "broken.hpcfcache").write_bytes(b"not an entry")
    with SingleNodeExecutor(cache_directory=str(cache)) as exe:
        with pytest.warns(UserWarning, match="cache entry not used"):
            assert exe.submit(funcs.add, 2, 2, resource_dict={"cache_key": "broken"}).result(30) == 4
    records = [r for r in caplog.records if r.name == "hpcfutures.cache"]
    assert records and "unreadable" in records[0].getMessage() and "broken" in records[0].getMessage()


@pytest.mark.timeout(90)
def test_log_job_submitted_state_changed_and_lost(caplog, tmp_path):
    from hpcfutures import WorkerCrashedError
    from hpcfutures.api import TestClusterExecutor

    caplog.set_level(logging.INFO, logger="hpcfutures")
    go = str(tmp_path / "go")
    with TestClusterExecutor(cache_directory=str(tmp_path / "cache")) as exe:
        killed = exe.submit(funcs.wait_for_file, go, 1)
        assert wait_until(lambda: any("PENDING -> RUNNING" in r.getMessage() for r in caplog.records), 30)
        job = exe.task_overview()[0]["worker"].split()[1]
        os.kill(int(job), 9)
        with pytest.raises(WorkerCrashedError):
            killed.result(30)
    messages = [r.getMessage() for r in caplog.records if r.name == "hpcfutures.cluster"]
    assert f"job {job} submitted for wait_for_file()" in messages
    assert f"job {job}: PENDING -> RUNNING" in messages
    assert any(m.startswith(f"job {job} ended in state FAILED") for m in messages), messages


@pytest.mark.timeout(60)
def test_nothing_is_printed_unless_logging_is_configured(tmp_path):
    """A worker death logs a WARNING; without a NullHandler Python's last-resort handler
    would print it to stderr."""
    script = (
        "import funcs\n"
        "from hpcfutures import SingleNodeExecutor\n"
        "with SingleNodeExecutor(max_workers=1, block_allocation=True, restart_limit=1) as exe:\n"
        "    try:\n"
        "        exe.submit(funcs.kill_self).result(30)\n"
        "    except Exception as exc:\n"
        "        print('failed', type(exc).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50)
    assert out.returncode == 0 and "failed WorkerCrashedError" in out.stdout
    assert "worker 0" not in out.stderr, out.stderr
    configured = "import logging; logging.basicConfig(level=logging.INFO)\n" + script
    out = subprocess.run([sys.executable, "-c", configured], capture_output=True, text=True, timeout=50)
    assert "INFO:hpcfutures.pool:worker 0 started" in out.stderr
    assert "WARNING:hpcfutures.pool:worker 0 died running kill_self()" in out.stderr


# -- package metadata -------------------------------------------------------------------
def test_version_comes_from_the_package_metadata():
    import importlib.metadata

    import hpcfutures

    assert hpcfutures.__version__ == importlib.metadata.version("hpcfutures")
    pyproject = os.path.join(ROOT, "pyproject.toml")
    if sys.version_info < (3, 11) or not os.path.exists(pyproject):  # no tomllib; an installed copy's tests
        return
    import tomllib

    with open(pyproject, "rb") as f:
        assert hpcfutures.__version__ == tomllib.load(f)["project"]["version"]


def test_typed_marker_is_shipped():
    import hpcfutures

    assert os.path.exists(os.path.join(os.path.dirname(hpcfutures.__file__), "py.typed"))


def test_import_does_not_pull_heavy_modules():
    code = "import sys, hpcfutures; print(sorted(m for m in ('importlib.metadata', 'tqdm', 'logging.handlers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
