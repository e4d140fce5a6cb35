"""The result cache: hits without workers, atomic writes, versions, errors, tools."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import funcs
from conftest import wait_until
from hpcfutures import SingleNodeExecutor, get_cache_data, get_future_from_cache
from hpcfutures.cache.entry import TEMP_MARK, CacheEntryError
from hpcfutures.cache.fingerprint import default_key
from hpcfutures.cache.store import CacheStore

MODES = [pytest.param(False, id="fresh"), pytest.param(True, id="warm")]


@pytest.mark.parametrize("block", MODES)
def test_second_run_is_answered_from_the_cache(tmp_path, block):
    calls, cache = str(tmp_path / "calls"), str(tmp_path / "cache")
    for _ in range(2):
        with SingleNodeExecutor(max_workers=1, block_allocation=block, cache_directory=cache) as exe:
            futures = [exe.submit(funcs.count_call, calls, i) for i in range(3)]
            assert [f.result(timeout=30) for f in futures] == [0, 2, 4]
    assert funcs.runs(calls) == 3  # the second run computed nothing
    data = get_cache_data(cache)
    assert sorted(d["output"] for d in data) == [0, 2, 4]
    assert {d["status"] for d in data} == {"ok"}
    assert all(d["function"].__name__ == "count_call" and d["input_args"][0] == calls for d in data)
    assert all(d["runtime"] >= 0 and d["resource_dict"]["cores"] == 1 and d["filename"].startswith(cache) for d in data)


def test_a_hit_starts_no_worker(tmp_path):
    cache = str(tmp_path / "cache")
    with SingleNodeExecutor(max_workers=1, cache_directory=cache) as exe:
        pid = exe.submit(funcs.my_pid).result(timeout=30)
    with SingleNodeExecutor(max_workers=1, cache_directory=cache) as exe:
        fut = exe.submit(funcs.my_pid)
        assert fut.done()  # answered inside submit(), in the driver
        assert fut.result() == pid


def test_key_ignores_resources_and_cache_key_makes_subfolders(tmp_path):
    calls, cache = str(tmp_path / "calls"), tmp_path / "cache"
    with SingleNodeExecutor(max_workers=1, cache_directory=str(cache)) as exe:
        assert exe.submit(funcs.count_call, calls, 1).result(timeout=30) == 2
        again = exe.submit(funcs.count_call, calls, 1, resource_dict={"threads_per_core": 2})
        assert again.result(timeout=30) == 2
        named = exe.submit(funcs.count_call, calls, 5, resource_dict={"cache_key": "study/run-5"})
        assert named.result(timeout=30) == 10
    assert funcs.runs(calls) == 2
    assert (cache / "study" / "run-5.hpcfcache").is_file()
    assert get_future_from_cache(str(cache), "study/run-5").result() == 10


def test_per_task_cache_directory(tmp_path):
    calls = str(tmp_path / "calls")
    task_cache = str(tmp_path / "task-cache")
    with SingleNodeExecutor(max_workers=1) as exe:
        exe.submit(funcs.count_call, calls, 3, resource_dict={"cache_directory": task_cache}).result(timeout=30)
        exe.submit(funcs.count_call, calls, 4).result(timeout=30)  # not cached
    assert [d["output"] for d in get_cache_data(task_cache)] == [6]


def test_dependent_calls_are_cached_by_their_resolved_arguments(tmp_path):
    calls, cache = str(tmp_path / "calls"), str(tmp_path / "cache")
    for _ in range(2):
        with SingleNodeExecutor(max_workers=2, cache_directory=cache) as exe:
            first = exe.submit(funcs.count_call, calls, 1)
            second = exe.submit(funcs.count_call, calls, first)
            assert second.result(timeout=30) == 4
    assert funcs.runs(calls) == 2


@pytest.mark.parametrize("block", MODES)
def test_failures_are_stored_but_run_again(tmp_path, block):
    calls, cache = str(tmp_path / "calls"), str(tmp_path / "cache")
    for _ in range(2):
        with SingleNodeExecutor(max_workers=1, block_allocation=block, cache_directory=cache) as exe:
            fut = exe.submit(funcs.count_then_fail, calls, 1, resource_dict={"cache_key": "failing"})
            with pytest.raises(ValueError, match="failing on 1"):
                fut.result(timeout=30)
    assert funcs.runs(calls) == 2
    [entry] = get_cache_data(cache)
    assert entry["status"] == "error" and isinstance(entry["error"], ValueError) and entry["output"] is None
    with pytest.raises(ValueError, match="failing on 1"):
        get_future_from_cache(cache, "failing").result()


def test_unknown_key_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        get_future_from_cache(str(tmp_path), "nope")


def test_bad_cache_keys_are_refused_at_submit(tmp_path):
    with SingleNodeExecutor(max_workers=1, cache_directory=str(tmp_path)) as exe:
        for bad in ("../outside", "/abs", "a//b", ""):
            with pytest.raises(ValueError, match="cache_key"):
                exe.submit(funcs.add, 1, resource_dict={"cache_key": bad})


def test_corrupted_entry_is_reported_and_the_task_runs_again(tmp_path):
    calls, cache = str(tmp_path / "calls"), str(tmp_path / "cache")
    with SingleNodeExecutor(max_workers=1, cache_directory=cache) as exe:
        exe.submit(funcs.count_call, calls, 7, resource_dict={"cache_key": "k"}).result(timeout=30)
    path = os.path.join(cache, "k.hpcfcache")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])  # as if the disk lost the end
    with pytest.raises(CacheEntryError, match="damaged"):
        get_future_from_cache(cache, "k")
    assert get_cache_data(cache)[0]["status"] == "unreadable"
    with SingleNodeExecutor(max_workers=1, cache_directory=cache) as exe:
        with pytest.warns(UserWarning, match="damaged"):
            fut = exe.submit(funcs.count_call, calls, 7, resource_dict={"cache_key": "k"})
        assert fut.result(timeout=30) == 14
    assert funcs.runs(calls) == 2
    assert get_future_from_cache(cache, "k").result() == 14  # replaced by a whole entry


def test_entry_of_an_unknown_format_version_is_reported(tmp_path):
    cache = str(tmp_path)
    with SingleNodeExecutor(max_workers=1, cache_directory=cache) as exe:
        exe.submit(funcs.add, 1, 1, resource_dict={"cache_key": "v"}).result(timeout=30)
    path = os.path.join(cache, "v.hpcfcache")
    data = open(path, "rb").read()
    assert data.startswith(b"HPCFCACHE 2 ")
    open(path, "wb").write(data.replace(b"HPCFCACHE 2 ", b"HPCFCACHE 9 ", 1))
    with pytest.raises(CacheEntryError, match="format version 9"):
        get_future_from_cache(cache, "v")
    with SingleNodeExecutor(max_workers=1, cache_directory=cache) as exe:
        with pytest.warns(UserWarning, match="version 9"):
            assert exe.submit(funcs.add, 1, 1, resource_dict={"cache_key": "v"}).result(timeout=30) == 2


def _flip_bit(path, at: int, bit: int = 0) -> None:
    data = bytearray(open(path, "rb").read())
    data[at] ^= 1 << bit
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("part", ["output", "input", "header"])
def test_a_flipped_bit_is_reported_and_the_task_runs_again(tmp_path, part):
    """A bit flip that still unpickles must never be served: each part has a checksum."""
    calls, cache = str(tmp_path / "calls"), str(tmp_path / "cache")
    text = "abc" * 100
    with SingleNodeExecutor(max_workers=1, cache_directory=cache) as exe:
        assert exe.submit(funcs.count_call, calls, text, resource_dict={"cache_key": "k"}).result(timeout=30) == text * 2
    path = os.path.join(cache, "k.hpcfcache")
    data = open(path, "rb").read()
    if part == "output":  # inside the stored result: "abc" becomes "abb", still a valid pickle
        _flip_bit(path, data.rindex(b"abc") + 2, 0)
    elif part == "input":  # inside the stored argument
        _flip_bit(path, data.index(b"abc") + 2, 0)
    else:  # a digit of the stored run time in the JSON header
        _flip_bit(path, data.index(b'"runtime": ') + len(b'"runtime": ') + 2, 0)
    if part != "input":
        with pytest.raises(CacheEntryError, match="checksum"):
            get_future_from_cache(cache, "k")
    record = get_cache_data(cache)[0]
    assert record["status"] == "unreadable" and "checksum" in str(record["error"])
    with SingleNodeExecutor(max_workers=1, cache_directory=cache) as exe:
        if part == "input":  # a hit reads only the header and the output: the input is checked when it is read
            assert exe.submit(funcs.count_call, calls, text, resource_dict={"cache_key": "k"}).result(timeout=30) == text * 2
        else:
            with pytest.warns(UserWarning, match="checksum"):
                fut = exe.submit(funcs.count_call, calls, text, resource_dict={"cache_key": "k"})
            assert fut.result(timeout=30) == text * 2
    assert funcs.runs(calls) == (1 if part == "input" else 2)
    assert get_future_from_cache(cache, "k").result() == text * 2


def test_an_entry_of_format_version_1_is_never_served(tmp_path):
    """Entries written before checksums existed are refused, and the task runs again."""
    import json
    import pickle
    import struct

    calls, cache = str(tmp_path / "calls"), str(tmp_path / "cache")
    os.makedirs(cache)
    wrong = pickle.dumps({"result": -1})  # what a version 1 entry holds, unchecked
    head = json.dumps({"status": "ok", "version": 1, "input_size": 0, "output_size": len(wrong)}).encode()
    pack = struct.Struct("<Q").pack
    entry = b"HPCFCACHE 1\n" + pack(len(head)) + head + pack(0) + pack(len(wrong)) + wrong
    open(os.path.join(cache, "k.hpcfcache"), "wb").write(entry)
    with SingleNodeExecutor(max_workers=1, cache_directory=cache) as exe:
        with pytest.warns(UserWarning, match="version 1"):
            assert exe.submit(funcs.count_call, calls, 5, resource_dict={"cache_key": "k"}).result(timeout=30) == 10
    assert funcs.runs(calls) == 1


_HAMMER = """
import sys
from hpcfutures.cache.entry import write_entry
directory, tag, rounds = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
for i in range(rounds):
    for k in range(10):
        body = tag * (1000 + 100 * (i % 7))  # sizes differ, so a torn write would show
        write_entry(f"{directory}/key{k}.hpcfcache", {"status": "ok"}, body, b"\\x80\\x04N.")
"""


def test_concurrent_writers_leave_whole_entries(tmp_path):
    from hpcfutures.cache.entry import EntryReader

    writers = [
        subprocess.Popen([sys.executable, "-c", _HAMMER, str(tmp_path), tag, "200"]) for tag in ("a", "b")
    ]
    reads = 0
    while any(w.poll() is None for w in writers):
        for k in range(10):
            try:
                with EntryReader(str(tmp_path / f"key{k}.hpcfcache")) as reader:
                    body = reader.input_bytes()
            except FileNotFoundError:
                continue
            assert len(set(body)) == 1  # one writer's bytes only, and whole (the reader checks sizes)
            reads += 1
    assert all(w.wait(timeout=60) == 0 for w in writers)
    assert reads > 0
    names = os.listdir(tmp_path)
    assert sorted(names) == [f"key{k}.hpcfcache" for k in range(10)]  # no temporaries left


_SLOW_WRITER = """
import sys
from hpcfutures.cache.entry import write_entry
write_entry(sys.argv[1], {"status": "ok"}, b"", b"\\x80\\x04N." + b"y" * (600 << 20))
"""


def test_a_writer_killed_mid_write_leaves_no_entry(tmp_path):
    target = tmp_path / "big.hpcfcache"
    writer = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)])
    try:
        assert wait_until(lambda: any(TEMP_MARK in n and os.path.getsize(tmp_path / n) > 0 for n in os.listdir(tmp_path)), 30, interval=0.001)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        writer.kill()
    if target.exists():
        pytest.skip("the write finished before the kill landed (machine too fast for this test)")
    assert get_cache_data(str(tmp_path)) == []
    assert CacheStore(str(tmp_path)).lookup("big") is None
    leftovers = [n for n in os.listdir(tmp_path) if TEMP_MARK in n]
    assert len(leftovers) == 1


def test_main_defined_function_keeps_its_key_across_interpreters(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            from hpcfutures import SingleNodeExecutor
            from hpcfutures.cache.fingerprint import default_key

            SCALE = 3

            def helper(x):
                return x * SCALE

            def work(x, tags=frozenset({{"a", "b", "c"}})):
                return helper(x) + len(tags)

            print(default_key(work, ({{"p", "q", "r"}}, 2), {{}}))
            with SingleNodeExecutor(max_workers=1, cache_directory={str(tmp_path / 'cache')!r}) as exe:
                fut = exe.submit(work, 5)
                print(fut.result(), "hit" if fut.done() else "")
            """
        )
    )
    outputs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        outputs.append(out.stdout.split("\n")[0])
    assert outputs[0] == outputs[1] and outputs[0].startswith("work_")
    assert len(get_cache_data(str(tmp_path / "cache"))) == 1  # the second run hit the first run's entry


def test_default_key_tracks_what_the_function_computes():
    def f(x):
        return x + 1

    def g(x):
        return x + 2

    assert default_key(f, (1,), {}) == default_key(f, (1,), {})
    assert default_key(f, (1,), {}) != default_key(f, (2,), {})
    assert default_key(f, (1,), {}).split("_")[1] != default_key(g, (1,), {}).split("_")[1]
    assert default_key(f, (), {"a": 1, "b": 2}) == default_key(f, (), {"b": 2, "a": 1})
    assert default_key(f, (1,), {}) != default_key(f, (True,), {})
    assert default_key(funcs.add, (1,), {}) == default_key(funcs.add, (1,), {})


def _mem_available_gib():
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return 0.0


@pytest.mark.timeout(300)
@pytest.mark.skipif(_mem_available_gib() < 14, reason="needs ~14 GiB of free memory for a 2.1 GiB result")
def test_result_over_2_gib_is_stored_and_served(tmp_path):
    n = (2 << 30) + (100 << 20)
    cache = str(tmp_path)
    with SingleNodeExecutor(max_workers=1, cache_directory=cache) as exe:
        assert len(exe.submit(funcs.big_bytes, n, resource_dict={"cache_key": "big"}).result(timeout=240)) == n
    assert os.path.getsize(os.path.join(cache, "big.hpcfcache")) > n
    value = get_future_from_cache(cache, "big").result()
    assert len(value) == n and value[:1] == b"x"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "hpcfutures", "cache", *args], capture_output=True, text=True, timeout=60)


def test_command_line_tool(tmp_path):
    cache = str(tmp_path)
    with SingleNodeExecutor(max_workers=1, cache_directory=cache) as exe:
        exe.submit(funcs.add, 1, 2, resource_dict={"cache_key": "good/one"}).result(timeout=30)
        exe.submit(funcs.boom, "bad", resource_dict={"cache_key": "bad"}).exception(timeout=30)
    listing = _cli("list", cache)
    assert listing.returncode == 0
    assert "good/one" in listing.stdout and "bad" in listing.stdout and "2 entries" in listing.stdout
    assert "good/one" not in _cli("list", cache, "--status", "error").stdout
    shown = _cli("show", cache, "good/one")
    assert shown.returncode == 0 and "output         3" in shown.stdout and "funcs.add" in shown.stdout
    assert _cli("show", cache, "missing").returncode == 1
    assert "would delete" in _cli("delete", cache, "--status", "error", "--dry-run").stdout
    assert len(get_cache_data(cache)) == 2
    deleted = _cli("delete", cache, "--status", "error")
    assert deleted.returncode == 0 and "1 files deleted" in deleted.stdout
    assert [d["cache_key"] for d in get_cache_data(cache)] == ["good/one"]
    assert "0 files" in _cli("delete", cache, "--older-than", "1d").stdout
    for age in ("nan", "nand", "inf", "-1s"):  # NaN passed every "older than" test: everything went
        refused = _cli("delete", cache, f"--older-than={age}")
        assert refused.returncode == 2 and "not an age" in refused.stderr
    assert len(get_cache_data(cache)) == 1
    assert "1 files would be deleted" in _cli("delete", cache, "--older-than", "0s", "--dry-run").stdout
    from hpcfutures.cache.entry import write_job_record

    write_job_record(os.path.join(cache, "good", "one.hpcfcache"), "7", "slurm")  # as a queued entry has
    assert "1 files deleted" in _cli("delete", cache, "--key", "good/one").stdout
    assert get_cache_data(cache) == [] and os.listdir(os.path.join(cache, "good")) == []  # its job record too
    assert _cli("delete", cache).returncode == 2  # nothing said: nothing deleted


def test_a_repeat_in_the_same_executor_hits_and_gets_its_own_copy(tmp_path):
    calls = str(tmp_path / "calls")
    with SingleNodeExecutor(max_workers=1, block_allocation=True, cache_directory=str(tmp_path / "c")) as exe:
        first = exe.submit(funcs.count_call_list, calls, 3).result(timeout=30)
        second = exe.submit(funcs.count_call_list, calls, 3).result(timeout=30)
    assert first == second == [0, 1, 2] and first is not second
    assert funcs.runs(calls) == 1


def test_lookups_never_list_the_cache_directory(tmp_path, monkeypatch):
    cache = str(tmp_path)
    with SingleNodeExecutor(max_workers=1, cache_directory=cache) as exe:
        exe.submit(funcs.add, 1, 1).result(timeout=30)

    def forbidden(*args, **kwargs):
        raise AssertionError("a cache lookup listed a directory")

    for name in ("listdir", "scandir", "walk"):
        monkeypatch.setattr(os, name, forbidden)
    with SingleNodeExecutor(max_workers=1, cache_directory=cache) as exe:
        assert exe.submit(funcs.add, 1, 1).result(timeout=30) == 2  # hit
        assert exe.submit(funcs.add, 2, 2).result(timeout=30) == 4  # miss, then stored


def test_queued_job_is_the_record_of_an_entry_still_waiting_for_its_job(tmp_path):
    """The one reader behind terminate_tasks_in_cache and a later run's adoption of a job:
    only a queued entry with a job record names a job; a finished, damaged or missing
    entry names none."""
    import pickle

    from hpcfutures.cache.entry import Status, make_header, write_entry, write_job_record
    from hpcfutures.cache.store import queued_job

    queued, done, damaged = (str(tmp_path / f"{name}.hpcfcache") for name in ("queued", "done", "damaged"))
    write_entry(queued, make_header("queued", Status.QUEUED), pickle.dumps({}), b"")
    assert queued_job(queued) is None  # no job recorded yet
    write_job_record(queued, "42", "slurm")
    assert queued_job(queued) == {"job_id": "42", "queue": "slurm"}
    write_entry(done, make_header("done", Status.OK), pickle.dumps({}), pickle.dumps({"result": 1}))
    write_job_record(done, "43", "slurm")
    assert queued_job(done) is None  # its job wrote the result
    with open(damaged, "wb") as f:
        f.write(b"not an entry")
    write_job_record(damaged, "44", "slurm")
    assert queued_job(damaged) is None
    assert queued_job(str(tmp_path / "missing.hpcfcache")) is None
