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
