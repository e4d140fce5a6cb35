"""The small shared helpers: one walk over nested arguments, one atomic file write, one
place for the cache entry's header and statuses."""

import collections
import os
from concurrent.futures import Future

import pytest

from hpcfutures import nested
from hpcfutures.cache.entry import EntryReader, Status, finish_header, make_header, write_entry
from hpcfutures.files import atomic_write

pytestmark = pytest.mark.timeout(20)

Point = collections.namedtuple("Point", "x y")


def test_one_walk_finds_and_replaces_at_any_depth():
    a, b = Future(), Future()
    a.set_result(1)
    b.set_result(2)
    args = (a, [Point(b, 3), {"k": (a,)}], {a, 5}, "text")
    assert nested.find(args, Future) == [a, b, a]  # a set is a leaf: not walked
    replaced = nested.replace(args, Future, Future.result)
    assert replaced[:2] == (1, [Point(2, 3), {"k": (1,)}])
    assert type(replaced[1][0]) is Point  # named tuples stay named
    assert replaced[2] is args[2] and replaced[3] == "text"


def test_the_users_of_the_walk_share_it():
    from hpcfutures.scheduling.dependencies import find_futures, substitute
    from hpcfutures.worker.upstream import UpstreamResult, resolve

    f = Future()
    f.set_result(7)
    assert find_futures({"a": [f]}) == [f] and substitute({"a": [Point(f, f)]}) == {"a": [Point(7, 7)]}
    marker = UpstreamResult("/nonexistent/entry", "key")
    with pytest.raises(FileNotFoundError):  # resolve walks into the tuple and loads the marker
        resolve(((marker,),))


def test_atomic_write_leaves_the_old_file_or_the_new_one(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write(target, "first ✓")
    assert target.read_text(encoding="utf-8") == "first ✓"

    def parts():
        yield b"half"
        raise RuntimeError("the writer failed midway")

    with pytest.raises(RuntimeError, match="midway"):
        atomic_write(target, parts())
    assert target.read_text(encoding="utf-8") == "first ✓" and os.listdir(tmp_path) == ["out.txt"]  # no temporary left
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "missing" / "x", b"1")
    atomic_write(tmp_path / "made" / "x", [b"1", memoryview(b"23")], make_dirs=True)
    assert (tmp_path / "made" / "x").read_bytes() == b"123"


def test_entry_header_and_statuses_are_made_in_one_place(tmp_path):
    header = make_header("k", Status.QUEUED, function="f", resource_dict={"cores": 2, "cwd": None, "fn": len}, job_id="7", cwd=None)
    assert header == {"cache_key": "k", "status": "queued", "function": "f", "resource_dict": {"cores": 2}, "job_id": "7"}
    path = str(tmp_path / "k.hpcfcache")
    write_entry(path, header, b"in", b"")
    with EntryReader(path) as reader:
        assert Status.of(reader.header) is Status.QUEUED and not Status.QUEUED.finished
    done = finish_header(header, failed=True, runtime=1.5, host="h")
    assert Status.of(done) is Status.ERROR and done["runtime"] == 1.5 and done["job_id"] == "7" and header["status"] == "queued"
    assert Status.of({"status": "nonsense"}) is None and Status.of({}) is None
    with pytest.raises(ValueError):
        make_header("k", "done")
    assert f"{Status.OK}" == "ok" and Status.OK == "ok"


@pytest.mark.timeout(60)
def test_leak_check_names_a_thread_and_a_child_left_behind(tmp_path):
    """The conftest's module fixture fails a module that leaves a thread or a child process."""
    import shutil
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    shutil.copy(os.path.join(here, "conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_leaky.py").write_text(
        "import subprocess, sys, threading\n"
        "gate = threading.Event()\n"
        "def test_leaks():\n"
        "    threading.Thread(target=gate.wait, name='leaky-thread', daemon=True).start()\n"
        "    test_leaks.child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(5)'])\n"
    )
    env = dict(os.environ, HPCF_LEAK_GRACE="0.5")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path / "test_leaky.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=50,
    )
    assert out.returncode != 0
    assert "test_leaky left behind: thread 'leaky-thread' (threading.Event.wait); child process" in out.stdout, out.stdout
    assert "time.sleep(5)" in out.stdout
