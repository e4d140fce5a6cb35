"""``resource_dict``: which keys exist, what types they take, how defaults merge.

"Where does a task get its cores?" — here: ``merge`` combines the executor's defaults
with the task's own dict, after ``validate`` has checked both, so a typo or a wrong type is
a ``ValueError``/``TypeError`` at construction or ``submit()``, never a hung future.
"""

from __future__ import annotations

import numbers
import os

TYPE_CHECKING = False  # typing costs milliseconds at import; checkers still see the names
if TYPE_CHECKING:
    from typing import Any, Iterable

_INT = (numbers.Integral,)
_NUM = (numbers.Real,)
_PATH = (str, os.PathLike)

# key -> (accepted types, may be None, description of the accepted values)
KEYS: dict[str, tuple[tuple, bool, str]] = {
    "cores": (_INT, False, "an int >= 1 (MPI ranks)"),
    "threads_per_core": (_INT, False, "an int >= 1"),
    "gpus_per_core": (_NUM, False, "a number >= 0"),
    "cwd": (_PATH, True, "a path"),
    "cache_key": ((str,), True, "a str"),
    "cache_directory": (_PATH, True, "a path"),
    "num_nodes": (_INT, True, "an int >= 1"),
    "exclusive": ((bool,), False, "a bool"),
    "error_log_file": (_PATH, True, "a path"),
    "run_time_max": (_NUM, True, "a number of seconds > 0"),
    "priority": (_INT, True, "an int"),
    "slurm_cmd_args": ((list, tuple), True, "a list of str"),
    "submission_template": ((str,), True, "a str"),
    "openmpi_oversubscribe": ((bool,), False, "a bool"),
    "retries": (_INT, False, "an int >= 0"),
    "retry_on": ((type, tuple), True, "an exception class or a tuple of them"),
}

DEFAULTS: dict[str, Any] = {
    "cores": 1,
    "threads_per_core": 1,
    "gpus_per_core": 0,
    "cwd": None,
    "openmpi_oversubscribe": False,
}

_POSITIVE = {"cores", "threads_per_core", "num_nodes"}


def validate(resource_dict: dict | None, where: str, allowed: Iterable[str] | None = None, pass_unknown: bool = False) -> dict:
    """Check keys and value types; return a copy. ``pass_unknown``: keys this table does
    not know (``partition``, ``memory_max``, ...) are kept for a queue adapter, with a warning."""
    if resource_dict is None:
        return {}
    if not isinstance(resource_dict, dict):
        raise TypeError(f"{where}: resource_dict must be a dict, got {type(resource_dict).__qualname__}")
    allowed = set(KEYS if allowed is None else allowed)
    unknown = sorted(set(resource_dict) - allowed)
    if unknown and pass_unknown:
        import warnings

        warnings.warn(
            f"{where}: resource_dict key(s) {unknown} are not hpcfutures keys; passed on to the queue adapter",
            stacklevel=3,
        )
        known = validate({k: v for k, v in resource_dict.items() if k not in unknown}, where, allowed)
        return {**known, **{k: resource_dict[k] for k in unknown}}
    if unknown:
        raise ValueError(f"{where}: unknown resource_dict key(s) {unknown}; accepted keys: {sorted(allowed)}")
    for key, value in resource_dict.items():
        types, nullable, text = KEYS[key]
        if value is None and nullable:
            continue
        bad_type = not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
        if bad_type:
            raise TypeError(f"{where}: resource_dict[{key!r}] must be {text}, got {value!r}")
        if key in _POSITIVE and value < 1:
            raise ValueError(f"{where}: resource_dict[{key!r}] must be {text}, got {value!r}")
        if key in ("gpus_per_core", "retries") and value < 0:
            raise ValueError(f"{where}: resource_dict[{key!r}] must be {text}, got {value!r}")
        if key == "run_time_max" and value <= 0:
            raise ValueError(f"{where}: resource_dict[{key!r}] must be {text}, got {value!r}")
        if key == "cache_key":
            from hpcfutures.cache.store import check_key

            check_key(value, f"{where}: resource_dict['cache_key']")
        if key == "retry_on" and not _exception_classes(value):
            raise TypeError(f"{where}: resource_dict['retry_on'] must be {text}, got {value!r}")
        if key == "slurm_cmd_args" and not all(isinstance(a, str) for a in value):
            raise TypeError(f"{where}: resource_dict['slurm_cmd_args'] must be {text}, got {value!r}")
    return dict(resource_dict)


def _exception_classes(value) -> bool:
    classes = value if isinstance(value, tuple) else (value,)
    return all(isinstance(c, type) and issubclass(c, BaseException) for c in classes)


def merge(defaults: dict, task: dict, where: str = "submit()") -> dict:
    """The task's resources over the executor's defaults, checked as a whole.

    Raises:
        ValueError: a combination no executor can honour (``check_combination``).
    """
    merged = dict(defaults)
    merged.update(task)
    check_combination(merged, where)
    return merged


def check_combination(resources: dict, where: str) -> None:
    """Refuse values that are each fine but cannot be honoured together.

    ``num_nodes`` above ``cores``: every node of a job runs at least one rank, so SLURM
    (and Flux) cannot spread fewer ranks over that many nodes; srun and sbatch lower the
    node count with a warning nobody sees, and the call would run on fewer nodes than
    asked.

    Args:
        resources: merged ``resource_dict`` (defaults and the task's own).
        where: the call to name in the message (``"submit()"``, ``"SlurmJobExecutor(resource_dict=...)"``).

    Raises:
        ValueError: naming the values and the remedy.
    """
    nodes = resources.get("num_nodes")
    cores = resources.get("cores", 1)
    if nodes is not None and nodes > cores:
        raise ValueError(
            f"{where}: resource_dict num_nodes={nodes} with cores={cores}: every node runs at least one MPI rank, "
            f"so {cores} rank(s) cannot use {nodes} nodes (SLURM would quietly use fewer); ask for cores >= "
            "num_nodes, or fewer nodes"
        )
