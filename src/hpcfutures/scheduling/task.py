"""The unit of work as the scheduler sees it."""

from __future__ import annotations



class Task:
    """One call: its future, the call itself, its merged resources and, once known, the
    pickled call (made at submit, so pickling errors surface there)."""

    __slots__ = ("future", "fn", "args", "kwargs", "resources", "payload")

    def __init__(self, future, fn, args: tuple, kwargs: dict, resources: dict, payload: bytes | None = None):
        self.future = future
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.resources = resources
        self.payload = payload

    @property
    def cores(self) -> int:
        return self.resources.get("cores", 1)

    @property
    def slots(self) -> int:
        """Cores this task occupies: ranks x threads per rank."""
        return self.cores * self.resources.get("threads_per_core", 1)

    @property
    def name(self) -> str:
        return getattr(self.fn, "__qualname__", None) or repr(self.fn)
