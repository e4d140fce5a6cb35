"""GPUs on this machine: which the driver may hand out, and to whom.

The devices are the driver's own view: ``CUDA_VISIBLE_DEVICES`` when it is set (so an
allocation's or a user's restriction is respected), otherwise every device the NVIDIA
driver reports. Each worker or task gets whole devices of its own through
``CUDA_VISIBLE_DEVICES``; CUDA numbers them from 0 inside the worker.
"""

from __future__ import annotations

import os

_PROC_GPUS = "/proc/driver/nvidia/gpus"


def visible_gpus() -> list[str]:
    """The GPU ids tasks may be given: ``CUDA_VISIBLE_DEVICES`` when set (an empty
    value: none), else the NVIDIA devices found on this machine.

    Returns:
        Device ids as strings, in order.
    """
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        devices = []
        for item in listed.split(","):
            item = item.strip()
            if not item or item.startswith("-"):  # CUDA stops at the first invalid entry
                break
            devices.append(item)
        return devices
    try:
        return [str(i) for i in range(len(os.listdir(_PROC_GPUS)))]
    except OSError:
        return []


def gpus_needed(resources: dict, where: str) -> int:
    """Whole devices a task or worker needs: ``cores x gpus_per_core``.

    Args:
        resources: a task's or worker's merged ``resource_dict``.
        where: where the error points to.

    Returns:
        The number of whole devices.

    Raises:
        ValueError: ``cores x gpus_per_core`` is not a whole number.
    """
    per_core = resources.get("gpus_per_core", 0) or 0
    total = resources.get("cores", 1) * per_core
    if total != int(total):
        raise ValueError(
            f"{where}: cores={resources.get('cores', 1)} x gpus_per_core={per_core} = {total} GPUs; "
            "devices are assigned whole, so this must be a whole number"
        )
    return int(total)


def check_enough(needed: int, devices: list[str], where: str) -> None:
    """Refuse a request for more GPUs than this machine shows.

    Args:
        needed: devices asked for.
        devices: the visible devices (``visible_gpus``).
        where: where the error points to.

    Raises:
        ValueError: more asked for than visible; the message says what was seen.
    """
    if needed > len(devices):
        seen = f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r}" if "CUDA_VISIBLE_DEVICES" in os.environ else (
            f"{len(devices)} NVIDIA device(s) found"
        )
        raise ValueError(f"{where}: {needed} GPU(s) asked for, but only {len(devices)} are visible here ({seen})")


class GpuPool:
    """Whole devices handed out first-come; the engine's lock guards it."""

    def __init__(self, devices: list[str]):
        self.free = list(devices)
        self.total = len(self.free)  # a task needing more than this can never be served

    def fits(self, n: int) -> bool:
        """Whether ``n`` devices are free now."""
        return n <= len(self.free)

    def take(self, n: int) -> list[str]:
        """Take ``n`` free devices (the caller checked ``fits``); returns their ids."""
        taken, self.free = self.free[:n], self.free[n:]
        return taken

    def give(self, devices: list[str]) -> None:
        """Return the ``devices`` of a task that ended."""
        self.free.extend(devices)


def gpu_environment(devices: list[str], needed: int) -> dict | None:
    """The variable that confines a worker to its devices; ``None`` leaves the driver's
    setting alone for workers that asked for no GPU.

    Args:
        devices: the ids assigned to the worker.
        needed: how many it asked for (0: none).

    Returns:
        ``{"CUDA_VISIBLE_DEVICES": "0,1"}`` or ``None``.
    """
    if not needed:
        return None
    return {"CUDA_VISIBLE_DEVICES": ",".join(devices)}
