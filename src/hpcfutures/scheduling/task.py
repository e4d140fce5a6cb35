"""The unit of work as the scheduler sees it."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(eq=False)
class Task:
    future: Future
    fn: Callable
    args: tuple
    kwargs: dict
    resources: dict
    payload: bytes | None = None  # the pickled call, made at submit so errors surface there
    attempts: int = 0
    upstream: list = field(default_factory=list)

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
