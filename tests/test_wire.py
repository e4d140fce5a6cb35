"""The wire alone: frames, authentication, the pipe framing."""

import os
import pickle
import sys

import pytest

from hpcfutures.wire import frames

pytestmark = pytest.mark.timeout(20)


class _Bomb:
    """Unpickling this would create a file: proof of code execution."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_seal_unseal_roundtrip():
    key = frames.new_key()
    payload = frames.dumps({"a": 1})
    assert frames.loads(frames.unseal(key, frames.seal(key, payload))) == {"a": 1}


def test_wrong_key_is_rejected_before_unpickling(tmp_path):
    target = tmp_path / "pwned"
    forged = frames.seal(frames.new_key(), pickle.dumps(_Bomb(str(target))))
    with pytest.raises(frames.AuthenticationError):
        frames.unseal(frames.new_key(), forged)
    assert not target.exists()


def test_tampered_payload_is_rejected():
    key = frames.new_key()
    frame = bytearray(frames.seal(key, frames.dumps([1, 2, 3])))
    frame[-1] ^= 1
    with pytest.raises(frames.AuthenticationError):
        frames.unseal(key, bytes(frame))
    with pytest.raises(frames.AuthenticationError):
        frames.unseal(key, b"short")


def test_pipe_framing_large_payload():
    key = frames.new_key()
    r, w = os.pipe()
    payload = os.urandom(3 * 65536 + 17)
    pid = os.fork()
    if pid == 0:  # child writes, so a full pipe cannot block the test
        os.close(r)
        frames.write_frame(w, key, payload)
        os._exit(0)
    os.close(w)
    try:
        assert frames.read_frame(r, key) == payload
        with pytest.raises(EOFError):
            frames.read_frame(r, key)
    finally:
        os.close(r)
        os.waitpid(pid, 0)


def test_dumps_falls_back_to_cloudpickle_for_lambdas():
    assert frames.loads(frames.dumps(lambda x: x + 1))(1) == 2


def test_take_key_removes_it_from_environment(monkeypatch):
    key = frames.new_key()
    monkeypatch.setenv(frames.KEY_ENV, key.hex())
    assert frames.take_key_from_env() == key
    assert frames.KEY_ENV not in os.environ


def test_rank_reports_are_taken_out_of_a_launchers_stderr(capfd):
    """A failing rank's report arrives as short lines among other output (a launcher may
    put its own lines between them); the driver joins them and shows only the rest."""
    from hpcfutures.launch.process import WorkerProcess

    script = (
        "import os, sys\n"
        "os.write(2, b'before\\nHPCF-RANK-REPORT r1 0 2 abcd\\n')\n"
        "os.write(2, b'srun: a line of its own\\nHPCF-RANK-')\n"
        "os.write(2, b'REPORT r1 1 2 ef01\\nafter\\n')\n"
    )
    process = WorkerProcess([sys.executable, "-c", script], dict(os.environ))
    assert process.wait_exit(30)
    process.pump_stderr()
    process.close()
    assert process.reports == [b"abcdef01"]
    shown = capfd.readouterr().err
    assert "before" in shown and "srun: a line of its own" in shown and "after" in shown
    assert "HPCF-RANK-REPORT" not in shown and "REPORT" not in process.stderr_tail()
