"""One atomic file write, for every file hpcfutures writes whole: cache entries
(``cache.entry``), workflow JSON (``graph.workflow_json``) and drawings (``graph.draw``).

The data goes to a temporary name in the target's own directory (same file system) and is
renamed into place: a reader sees the old file or the new one, never half of one, and a
writer killed midway leaves only the temporary file (whose name says so). Imported by the
workers too: standard library only.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, Union

    Data = Union[str, bytes, bytearray, memoryview, "Iterable[bytes]"]


def atomic_write(path, data: "Data", temp_name: str | None = None, make_dirs: bool = False) -> None:
    """Write ``data`` to ``path`` whole or not at all.

    Args:
        path: the file to (re)place.
        data: text (written as UTF-8), bytes, or an iterable of bytes-like parts written
            in order where they lie (a large part is not copied into one buffer).
        temp_name: the temporary file's name in the target's directory; default
            ``.<name>.tmp-<pid>-<random>``.
        make_dirs: create the target's directory if it is missing.

    Raises:
        OSError: the file could not be written (the temporary file is removed again).
    """
    path = os.fspath(path)
    directory, name = os.path.split(path)
    if isinstance(data, str):
        parts = [data.encode()]
    elif isinstance(data, (bytes, bytearray, memoryview)):
        parts = [data]
    else:
        parts = data
    tmp = os.path.join(directory, temp_name or f".{name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileNotFoundError:
        if not make_dirs:
            raise
        os.makedirs(directory or ".", exist_ok=True)
        fd = os.open(tmp, flags, 0o644)
    try:
        try:
            for part in parts:
                view = memoryview(part).cast("B")
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
