"""``map`` in chunks (issue 15): the automatic policy on warm pools, results in order, a
failing item raised where its result is reached, futures among items, and the pympipool
``Pool`` on the same path."""

import os
from concurrent.futures import Future

import numpy as np
import pytest

import funcs
from hpcfutures import SingleNodeExecutor
from hpcfutures.compat.pool import Pool
from hpcfutures.executors.mapping import auto_chunksize

pytestmark = pytest.mark.timeout(60)


class Point:  # a class the worker can import only by value: must not take the plain-pickle path
    def __init__(self, x):
        self.x = x


def test_policy_is_multiprocessing_pools():
    assert auto_chunksize(20000, 2) == 2500
    assert auto_chunksize(32, 2) == 4
    assert auto_chunksize(33, 2) == 5
    assert auto_chunksize(3, 2) == 1
    assert auto_chunksize(0, 2) == 1


def test_warm_pool_map_is_chunked_in_order():
    with SingleNodeExecutor(max_workers=2, block_allocation=True) as exe:
        assert list(exe.map(funcs.add, range(100), range(100))) == [2 * i for i in range(100)]
        assert len(exe.task_overview()) == 8  # ceil(100 / 8) = 13 items per message, 8 messages
        assert list(exe.map(funcs.identity, range(5), chunksize=1)) == list(range(5))
        assert len(exe.task_overview()) == 8 + 5  # chunksize=1: one call per item still
        assert list(exe.map(funcs.add, [])) == []


def test_fresh_process_per_item_without_block_allocation():
    with SingleNodeExecutor(max_workers=2) as exe:
        pids = list(exe.map(lambda _: os.getpid(), range(6)))
    assert len(set(pids)) == 6  # the mode's promise: every call its own process


@pytest.mark.parametrize("chunksize", [None, 4, 1])
def test_failing_item_raised_where_its_result_is_reached(chunksize):
    with SingleNodeExecutor(max_workers=2, block_allocation=True) as exe:
        results = exe.map(funcs.raise_at, range(40), [5] * 40, chunksize=chunksize)
        seen = []
        with pytest.raises(ValueError, match="bad value 5"):
            for r in results:
                seen.append(r)
        assert seen == [1, 2, 3, 4, 5]  # the items before the failing one, and nothing after
        # later chunks ran; the pool is fine
        assert list(exe.map(funcs.identity, range(3))) == [0, 1, 2]


def test_a_chunk_stops_at_its_first_failing_item(tmp_path):
    """The first failure is the chunk's: the items after it in the chunk do not run, so a
    later item's SystemExit (or a worker-killing item) cannot replace it (review F1)."""
    path = str(tmp_path / "ran")
    with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
        results = exe.map(funcs.mark_then_fail_at_three_exit_at_five, [path] * 8, range(8), chunksize=8)
        seen = []
        with pytest.raises(ValueError, match="three"):
            for r in results:
                seen.append(r)
        assert seen == [0, 1, 2]
        assert list(exe.map(funcs.identity, range(3))) == [0, 1, 2]  # the worker lives on
    assert funcs.runs(path) == 4  # items 0..3


def test_policy_takes_bigger_chunks_for_items_known_to_be_cheap():
    from hpcfutures.executors.mapping import CHUNK_SECONDS

    assert auto_chunksize(16, 2, None) == 2  # nothing known: multiprocessing.Pool's choice
    assert auto_chunksize(16, 2, CHUNK_SECONDS / 100) == 8  # cheap: one chunk per worker
    assert auto_chunksize(17, 2, 0.0) == 9
    assert auto_chunksize(400, 2, CHUNK_SECONDS / 100) == 100  # ~CHUNK_SECONDS of work, 4 even chunks
    assert auto_chunksize(20000, 2, CHUNK_SECONDS / 5900) == 5000  # 4 of 5,000, not 5,900 + 5,900 + ...
    assert auto_chunksize(100, 3, 1e-6) == 34  # one chunk per worker
    assert auto_chunksize(16, 2, CHUNK_SECONDS) == 2  # dear items keep Pool's chunks
    assert auto_chunksize(20000, 2, 10 * CHUNK_SECONDS) == 2500  # never smaller than Pool's


def test_item_costs_keep_the_tighter_bound_until_a_map_shows_dearer_items():
    from hpcfutures.executors.mapping import ItemCosts

    costs = ItemCosts()
    fn = funcs.identity
    assert costs.get(fn) is None
    costs.record(fn, 0.002, 20000, 2)  # 20,000 items in 2 ms: <= 0.2 us each
    assert costs.get(fn) == pytest.approx(0.2e-6)
    costs.record(fn, 0.0005, 10, 2)  # a warm-up map: all messages, it says nothing new
    assert costs.get(fn) == pytest.approx(0.2e-6)
    costs.record(fn, 0.001, 20000, 2)  # tighter
    assert costs.get(fn) == pytest.approx(0.1e-6)
    costs.record(fn, 8.0, 16, 2)  # 16 items in 8 s: they got dearer
    assert costs.get(fn) == pytest.approx(1.0)
    costs.record(lambda x: x, 0.001, 10, 2)  # held weakly: a lambda gone is forgotten
    costs.record(42, 0.001, 10, 2)  # not weakly referable: silently not kept
    assert costs.get(42) is None
    small, large = Point(1), Point(2)
    costs.record(small.__init__, 0.001, 1000, 2)  # a bound method: per instance
    assert costs.get(small.__init__) == pytest.approx(2e-6)
    assert costs.get(large.__init__) is None

    class Awkward:  # review G1: found by identity, its __hash__/__eq__ are never called
        def __hash__(self):
            raise ValueError("no hash")

        def __eq__(self, other):
            raise ValueError("no eq")

        def work(self, x):
            return x

    a, b = Awkward(), Awkward()
    costs.record(a.work, 0.001, 1000, 2)
    assert costs.get(a.work) == pytest.approx(2e-6) and costs.get(b.work) is None
    del a
    import gc

    gc.collect()
    assert len(costs._costs) == 2  # a's entry went with it (fn and small remain)


def test_a_second_map_of_cheap_items_sends_one_chunk_per_worker(monkeypatch):
    import hpcfutures.executors.mapping as mapping

    monkeypatch.setattr(mapping, "CHUNK_SECONDS", 3600.0)  # any item here counts as cheap
    with SingleNodeExecutor(max_workers=2, block_allocation=True) as exe:
        assert list(exe.map(funcs.identity, range(16))) == list(range(16))
        assert len(exe.task_overview()) == 8  # first map: nothing known yet, Pool's policy
        assert list(exe.map(funcs.identity, range(16))) == list(range(16))
        assert len(exe.task_overview()) == 8 + 2
        it = exe.map(funcs.add, range(16))  # another function: its own first map
        assert list(it) == list(range(16))
        assert len(exe.task_overview()) == 8 + 2 + 8
        # a map left early records nothing; lambdas made anew are new functions
        assert list(exe.map(lambda x: -x, range(16))) == [-x for x in range(16)]
        assert len(exe.task_overview()) == 8 + 2 + 8 + 8


def test_timeout_is_honoured_with_chunks():
    with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
        results = exe.map(funcs.sleep_then, [0.0] * 7 + [30.0], timeout=0.5)
        with pytest.raises(TimeoutError):
            list(results)
        exe.shutdown(wait=True, cancel_futures=True)


def test_futures_and_objects_among_items():
    with SingleNodeExecutor(max_workers=2, block_allocation=True) as exe:
        upstream = exe.submit(funcs.add, 1, 1)
        assert isinstance(upstream, Future)
        assert list(exe.map(funcs.add, [upstream] + list(range(19)), [1] * 20)) == [3] + [i + 1 for i in range(19)]
        points = [Point(i) for i in range(20)]  # defined in a test module: by reference is fine
        assert list(exe.map(lambda p: p.x, points)) == list(range(20))
        assert list(exe.map(lambda f: f(2), [lambda x: x + 1] * 20)) == [3] * 20  # needs cloudpickle
        arrays = [np.arange(5.0) * i for i in range(20)]
        assert list(exe.map(np.sum, arrays)) == [10.0 * i for i in range(20)]
        mixed = [np.array([Point(i)], dtype=object) for i in range(20)]
        assert list(exe.map(lambda a: a[0].x, mixed)) == list(range(20))


def test_pool_map_and_imap_on_chunks():
    with Pool(max_workers=2) as pool:
        assert pool.map(funcs.identity, range(50)) == list(range(50))
        assert pool.starmap(funcs.add, [(i, i) for i in range(50)]) == [2 * i for i in range(50)]
        with pytest.raises(ValueError, match="bad value 3"):
            pool.starmap(funcs.raise_at, [(i, 3) for i in range(20)])
        seen = []
        with pytest.raises(ValueError, match="bad value 6"):
            for r in pool.imap(lambda x: funcs.raise_at(x, 6), range(20), chunksize=4):
                seen.append(r)
        assert seen == [1, 2, 3, 4, 5, 6]


def test_not_callable_is_refused_at_map_and_cached_maps_keep_one_item_per_call(tmp_path):
    with SingleNodeExecutor(max_workers=2, block_allocation=True) as exe:
        with pytest.raises(TypeError, match="callable"):
            exe.map(42, range(100))
        assert exe.task_overview() == []  # nothing was submitted
    with SingleNodeExecutor(max_workers=2, block_allocation=True, cache_directory=str(tmp_path)) as exe:
        assert list(exe.map(funcs.identity, range(20))) == list(range(20))
        assert len(exe.task_overview()) == 20  # each item its own call, so its own cache entry


@pytest.mark.parametrize("chunksize", [0, -1, 2.5, 2.0, "2", True])
def test_a_chunksize_map_cannot_use_is_refused_naming_executorlib_s_difference(chunksize):
    """F02: executorlib ignores chunksize; hpcfutures keeps refusing what it cannot use (as
    ProcessPoolExecutor refuses < 1), for executors and the pympipool Pool alike, and says why
    (documented in docs/migrating.md)."""
    from hpcfutures import Pool

    match = r"chunksize must be None \(automatic\) or an int >= 1, got .*executorlib ignored chunksize.*pass an int"
    with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
        with pytest.raises(ValueError, match=match):
            exe.map(funcs.identity, range(3), chunksize=chunksize)
        assert list(exe.map(funcs.identity, range(3), chunksize=2)) == [0, 1, 2]
    with Pool(max_workers=1) as pool:
        for method in (pool.map, pool.map_async, pool.imap, pool.imap_unordered):
            with pytest.raises(ValueError, match=match):
                method(funcs.identity, range(3), chunksize=chunksize)


def test_closing_a_chunked_map_cancels_the_chunks_not_started(tmp_path):
    """The iterator keeps the generator's close() of concurrent.futures' map (review F09)."""
    first, rest = str(tmp_path / "first"), str(tmp_path / "rest")
    items = [(first, 0), (first, 1)] + [(rest, i) for i in range(2, 12)]
    with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
        results = exe.map(funcs.wait_for_file, *zip(*items), chunksize=2)
        open(first, "w").close()
        assert next(results) == 0
        results.close()
        open(rest, "w").close()
        states = [row["state"] for row in exe.task_overview()]
    assert states.count("cancelled") >= 3  # 6 chunks: the first ran, one may be sent ahead, one runs


def test_ranges_small_and_large_map_like_lists(monkeypatch):
    """A range up to _LAZY_RANGE items is chunked as sub-ranges; a larger one is built as a
    list first, as any iterable (so a map whose results cannot fit fails at map() with
    MemoryError, as before: review G5)."""
    import hpcfutures.executors.base as base

    with SingleNodeExecutor(max_workers=2, block_allocation=True) as exe:
        assert list(exe.map(funcs.identity, range(-3, -9, -2))) == [-3, -5, -7]
        assert list(exe.map(funcs.identity, range(0))) == []
        monkeypatch.setattr(base, "_LAZY_RANGE", 10)
        assert list(exe.map(funcs.identity, range(5, 105, 3))) == list(range(5, 105, 3))


def test_closing_the_iterator_stops_it_at_once(tmp_path):
    """Review G4: after close() the rest of the chunk being handed out came out still."""
    with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
        results = exe.map(funcs.identity, range(40), chunksize=10)
        assert next(results) == 0
        results.close()
        assert list(results) == []


def test_the_call_a_map_timed_out_on_is_cancelled_when_it_has_not_started(tmp_path):
    """Review P2: as concurrent.futures' map, the future whose result() ran out of time is
    cancelled too, not only those after it."""
    gate, path = str(tmp_path / "gate"), str(tmp_path / "ran")
    with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
        blockers = [exe.submit(funcs.wait_for_file, gate, i, 60.0) for i in range(2)]  # running, sent ahead
        results = exe.map(funcs.count_call, [path] * 3, range(3), timeout=0.2, chunksize=1)
        with pytest.raises(TimeoutError):
            next(results)
        open(gate, "w").close()
        assert [b.result(timeout=30) for b in blockers] == [0, 1]
    assert funcs.runs(path) == 0


@pytest.mark.mpi
def test_map_on_mpi_workers_gives_each_item_its_ranks_results():
    """Review F04: a chunk on 2 ranks gave each rank's list of the chunk in place of items."""
    with SingleNodeExecutor(max_workers=1, block_allocation=True, resource_dict={"cores": 2}) as exe:
        expected = [exe.submit(funcs.mpi_ranks, i).result(timeout=60) for i in range(6)]
        assert expected[1] == [(1, 2, 0), (1, 2, 1)]
        assert list(exe.map(funcs.mpi_ranks, range(6))) == expected
        assert list(exe.map(funcs.mpi_ranks, range(6), chunksize=1)) == expected
        with pytest.raises(ValueError, match="MPI ranks"):
            exe.map(funcs.mpi_ranks, range(6), chunksize=3)


def test_init_function_values_reach_a_mapped_function_as_they_reach_a_submitted_one():
    """Review: map's chunks called the function without the init_function store that
    submit() (and executorlib's map, a submit per item) fills in."""
    with SingleNodeExecutor(max_workers=2, block_allocation=True, init_function=funcs.init_store) as exe:
        expected = [exe.submit(funcs.uses_store, i).result(timeout=30) for i in range(20)]
        assert expected[0] == 7
        assert list(exe.map(funcs.uses_store, range(20))) == expected
        assert list(exe.map(funcs.uses_store, range(20), chunksize=1)) == expected
        assert list(exe.map(funcs.uses_store, range(20), chunksize=7)) == expected


def test_results_before_an_item_whose_error_cannot_travel_back_come_first():
    """Review H2: the stand-in for an exception that cannot be rebuilt lost the chunk's
    results before it."""
    with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
        results = exe.map(funcs.two_arg_error_at, range(10), [5] * 10, chunksize=10)
        seen = []
        with pytest.raises(RuntimeError, match="TwoArgError"):
            for r in results:
                seen.append(r)
        assert seen == [0, 1, 2, 3, 4]


def test_run_time_max_and_retries_keep_one_item_per_call():
    """Review H1: run_time_max limits each call and retries rerun one; a chunk would make
    them apply to several items at once."""
    for resources in ({"run_time_max": 30}, {"retries": 1}):
        with SingleNodeExecutor(max_workers=2, block_allocation=True, resource_dict=resources) as exe:
            assert list(exe.map(funcs.identity, range(12))) == list(range(12))
            assert len(exe.task_overview()) == 12


def test_a_callable_whose_self_property_raises_still_maps():
    class Odd:
        @property
        def __self__(self):
            raise RuntimeError("not here")

        def __call__(self, x):
            return x + 1

    with SingleNodeExecutor(max_workers=2, block_allocation=True) as exe:
        assert list(exe.map(Odd(), range(5))) == [1, 2, 3, 4, 5]
