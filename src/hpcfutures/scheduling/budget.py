"""The core budget of the one-process-per-task mode: how many tasks, and how many cores,
may run at once."""

from __future__ import annotations


class CoreBudget:
    """Admits a task when it fits both limits. A task larger than an *implicit* budget
    (the machine's core count, when the user gave none) still runs, alone, rather than
    never; an explicit ``max_cores`` is checked at ``submit()`` instead.

    Args:
        max_cores: cores all running tasks may use together (``None``: no limit).
        max_running: tasks that may run at once.
    """

    def __init__(self, max_cores: int | None, max_running: int):
        self.max_cores = max_cores
        self.max_running = max_running
        self.used = 0
        self.running = 0

    def fits(self, slots: int) -> bool:
        """Whether a task of ``slots`` cores may start now (one always may when nothing
        runs, so a task larger than the budget still runs alone).
        """
        if self.running == 0:
            return True
        if self.running >= self.max_running:
            return False
        return self.max_cores is None or self.used + slots <= self.max_cores

    def take(self, slots: int) -> None:
        """Count a starting task of ``slots`` cores."""
        self.used += slots
        self.running += 1

    def give(self, slots: int) -> None:
        """Return the ``slots`` cores of a task that ended."""
        self.used -= slots
        self.running -= 1
