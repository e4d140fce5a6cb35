"""Issue 15: the frames' two MACs (small: keyed BLAKE2b, large: HMAC-SHA256) each cover
every byte, and a fresh worker imports no more than a bare start needs."""

import os
import subprocess
import sys

import pytest

import funcs
from hpcfutures import SingleNodeExecutor
from hpcfutures.wire import frames

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("size", [0, 100, (1 << 20) - 1, 1 << 20, 3 << 20])
def test_every_byte_is_covered_at_every_size(size):
    key = frames.new_key()
    payload = os.urandom(size)
    frame = frames.seal(key, payload)
    assert frames.unseal(key, frame) == payload
    assert frames.mac_matches(key, frames.mac_of(key, payload), memoryview(payload))
    for where in {0, size // 2, size - 1} if size else ():
        damaged = bytearray(frame)
        damaged[frames.MAC_SIZE + where] ^= 0x40
        with pytest.raises(frames.AuthenticationError):
            frames.unseal(key, bytes(damaged))
        assert not frames.mac_matches(key, frame[: frames.MAC_SIZE], damaged[frames.MAC_SIZE :])
    with pytest.raises(frames.AuthenticationError):
        frames.unseal(frames.new_key(), frame)  # another key


def test_a_worker_start_imports_neither_openssl_nor_re():
    """The serial worker's imports (what srun and the local launcher start): a bare start
    plus our stdlib-only modules; hmac/hashlib (OpenSSL), pickle's re and struct stay out."""
    code = (
        "import sys, hpcfutures.worker.interactive, hpcfutures.worker.one_shot;"
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    modules = set(out.stdout.split())
    assert not modules & {"hmac", "hashlib", "_hashlib", "re", "pickle", "struct", "zmq", "cloudpickle"}, modules


def test_small_and_large_messages_through_a_warm_worker():
    with SingleNodeExecutor(max_workers=1, block_allocation=True) as exe:
        assert exe.submit(funcs.identity, b"x" * 100).result(timeout=30) == b"x" * 100
        big = os.urandom(3 << 20)  # HMAC-SHA256 both ways
        assert exe.submit(funcs.identity, big).result(timeout=30) == big
        assert len(exe.submit(funcs.big_bytes, 5 << 20).result(timeout=30)) == 5 << 20
    with SingleNodeExecutor(max_workers=1) as exe:  # the pipe framing of fresh processes
        assert exe.submit(funcs.identity, big).result(timeout=30) == big


def test_large_buffers_travel_out_of_band_and_load_without_a_copy():
    np = pytest.importorskip("numpy")
    array = np.arange(1 << 18, dtype=np.float64)  # 2 MiB
    data = frames.dumps_with_buffers({"result": array, "small": [1, "x"]})
    assert frames.is_container(data)
    frame = bytearray(data)
    loaded = frames.loads(frame)
    assert np.array_equal(loaded["result"], array) and loaded["small"] == [1, "x"]
    assert loaded["result"].flags.writeable
    frame[len(frame) // 2] ^= 0xFF  # the array's memory is the frame's: no copy was made
    assert not np.array_equal(loaded["result"], array)
    from_bytes = frames.loads(bytes(data))  # read-only input: copied, still writable
    assert np.array_equal(from_bytes["result"], array) and from_bytes["result"].flags.writeable
    # small or strided buffers stay in band: a plain pickle
    assert not frames.is_container(frames.dumps_with_buffers({"result": np.arange(10)}))
    strided = np.arange(1 << 19, dtype=np.float64)[::2]
    plain = frames.dumps_with_buffers({"result": strided})
    assert not frames.is_container(plain) and np.array_equal(frames.loads(plain)["result"], strided)
    # the MAC covers the buffers too
    key = frames.new_key()
    sealed = bytearray(frames.seal(key, data))
    sealed[frames.MAC_SIZE + 100] ^= 1
    with pytest.raises(frames.AuthenticationError):
        frames.unseal(key, bytes(sealed))


@pytest.mark.parametrize("block", [True, False])
def test_large_array_result_through_workers_and_the_cache(block, tmp_path):
    np = pytest.importorskip("numpy")
    array = np.linspace(0.0, 1.0, 3 << 17)  # 3 MiB
    with SingleNodeExecutor(max_workers=1, block_allocation=block, cache_directory=str(tmp_path)) as exe:
        first = exe.submit(funcs.identity, array).result(timeout=60)
        again = exe.submit(funcs.identity, array).result(timeout=60)  # a cache hit
    for result in (first, again):
        assert np.array_equal(result, array) and result.flags.writeable


@pytest.mark.timeout(120)
def test_large_calls_queued_behind_each_other_do_not_deadlock_the_link():
    """F08: a 400 KB call sent ahead while the worker wrote a 400 KB reply left each side
    waiting for the other to read (a hang, every future pending). Calls over 64 KiB now
    wait until the worker is free."""
    data = b"x" * 400_000
    exe = SingleNodeExecutor(max_workers=1, block_allocation=True)
    try:
        futures = [exe.submit(funcs.identity, data) for _ in range(8)]
        assert all(f.result(timeout=60) == data for f in futures)
        assert list(exe.map(str.upper, ["ab" * 200_000] * 8)) == ["AB" * 200_000] * 8
    finally:
        exe.shutdown(wait=False, cancel_futures=True)
