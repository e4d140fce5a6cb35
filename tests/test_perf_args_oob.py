"""Large arguments out of band (issue 15): a call's large numpy buffers travel beside its
pickle to a warm worker, every byte under the frame's MAC; a cache entry's input stays a
plain pickle."""

import glob
import os
import pickle

import pytest

import funcs
from hpcfutures import SingleNodeExecutor
from hpcfutures.scheduling.futures import TaskFuture
from hpcfutures.scheduling.task import Task
from hpcfutures.wire import frames

np = pytest.importorskip("numpy")


def _call(*args, **kwargs):
    return Task(TaskFuture(), funcs.array_memory, args, kwargs, {})


def test_a_large_argument_goes_beside_the_pickle_and_loads_whole():
    array = np.linspace(0.0, 1.0, 1 << 18)  # 2 MiB
    payload = _call(array).pickle(out_of_band=True)
    assert frames.is_container(payload)
    message = frames.loads(bytearray(payload))  # as a worker reads a frame: writable
    assert np.array_equal(message["args"][0], array) and message["args"][0].flags.writeable
    plain = _call(array).pickle()  # the default: a plain pickle, as a cache entry stores
    assert not frames.is_container(plain)
    assert np.array_equal(pickle.loads(plain)["args"][0], array)


def test_small_or_scattered_arguments_stay_in_band():
    small = _call(np.ones(10)).pickle(out_of_band=True)
    assert not frames.is_container(small) and pickle.loads(small)["args"][0].sum() == 10
    strided = np.ones((1 << 19, 2))[:, 0]  # 4 MiB of memory, not contiguous: in band
    assert not frames.is_container(_call(strided).pickle(out_of_band=True))


def test_every_byte_of_a_call_with_large_arguments_is_authenticated():
    key = frames.new_key()
    payload = _call(np.ones(1 << 18)).pickle(out_of_band=True)
    frame = frames.seal(key, payload)
    assert frames.unseal(key, frame) == payload
    for where in (len(payload) // 2, len(payload) - 1, 30):  # a buffer, the pickle, the layout
        damaged = bytearray(frame)
        damaged[frames.MAC_SIZE + where] ^= 0x01
        with pytest.raises(frames.AuthenticationError):
            frames.unseal(key, bytes(damaged))


@pytest.mark.timeout(120)
def test_large_arguments_through_a_warm_worker_arrive_whole_and_writable():
    first = np.arange(1 << 18, dtype=np.float64)
    second = np.full(3 << 17, 2.0)
    with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
        by_keyword = exe.submit(funcs.array_memory, a=second)
        positional = exe.submit(funcs.array_memory, first)
        scattered = exe.submit(funcs.array_memory, np.ones((1 << 19, 2))[:, 1])
        pair = exe.submit(funcs.add, first, second[: 1 << 18])  # two buffers in one call
        assert by_keyword.result(timeout=60)[1:] == (True, float(second.sum()))
        assert positional.result(timeout=60)[1:] == (True, float(first.sum()))
        assert scattered.result(timeout=60)[1:] == (True, float(1 << 19))
        assert np.array_equal(pair.result(timeout=60), first + 2.0)


@pytest.mark.timeout(120)
def test_a_cache_entry_input_stays_a_plain_pickle_with_large_arguments(tmp_path):
    from hpcfutures.cache.entry import EntryReader

    array = np.linspace(0.0, 1.0, 1 << 18)
    with SingleNodeExecutor(max_workers=1, block_allocation=True, cache_directory=str(tmp_path)) as exe:
        assert exe.submit(funcs.array_memory, array).result(timeout=60)[2] == float(array.sum())
    entries = glob.glob(os.path.join(str(tmp_path), "**", "*.hpcfcache"), recursive=True)
    assert len(entries) == 1
    with EntryReader(entries[0]) as reader:
        data = reader.input_bytes()
        assert not frames.is_container(data)
        assert np.array_equal(pickle.loads(data)["args"][0], array)


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_a_large_argument_reaches_every_rank_of_a_warm_mpi_worker():
    array = np.arange(1 << 18, dtype=np.float64)
    with SingleNodeExecutor(max_workers=1, block_allocation=True, resource_dict={"cores": 2}) as exe:
        ranks = exe.submit(funcs.mpi_rank_and_sum, array).result(timeout=90)
    assert sorted(ranks) == [(0, float(array.sum())), (1, float(array.sum()))]
