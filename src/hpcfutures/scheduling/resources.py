"""``resource_dict``: which keys exist, what types they take, how defaults merge, and the
value object ``Resources`` the backends render.

"Where does a task get its cores?" — three files: here ``merge`` combines the executor's
defaults with the task's own dict, after ``validate`` has checked both, so a typo or a wrong
type is a ``ValueError``/``TypeError`` at construction or ``submit()``, never a hung future;
``scheduling.honoured`` says which keys each executor honours; ``scheduling.render`` turns a
``Resources`` into mpiexec, srun, ``#SBATCH``, template, pysqa and Flux terms.
"""

from __future__ import annotations

import math
import numbers
import os

TYPE_CHECKING = False  # typing costs milliseconds at import; checkers still see the names
if TYPE_CHECKING:
    from typing import Any, Iterable

_INT = (numbers.Integral,)
_NUM = (numbers.Real,)
_PATH = (str, os.PathLike)

# The longest wait any duration may ask for, in seconds (100 years): every timer a duration
# reaches must hold it — threading's and select's (about 292 years, in ns of a C int64), zmq's
# poll (ms in a C long) and SLURM's --time (minutes in 32 bits); poll()'s C int of ms (24.8
# days) is waited in slices (launch.process.poll_ms). Longer means "no limit": None.
LONGEST_WAIT = 100 * 365 * 24 * 3600
# GPUs per rank: far above any node, far below what srun's and sbatch's counters hold
MOST_GPUS = 65536
# GB of memory (memory_max): 2**30 GB = 1 EiB, rendered in MB for sbatch's 64-bit counter
MOST_MEMORY_GB = 2**30
# ranks, threads per rank, nodes: far above any machine, well inside the 32-bit counters of
# srun, sbatch and mpiexec (a larger count wraps there to a negative "number of tasks")
MOST_COUNT = 2**24
# priority becomes sbatch --nice, whose adjustments range over +-2147483645
MOST_NICE = 2147483645

# key -> (accepted types, may be None, description of the accepted values)
KEYS: dict[str, tuple[tuple, bool, str]] = {
    "cores": (_INT, False, f"an int >= 1 and <= {MOST_COUNT} (MPI ranks)"),
    "threads_per_core": (_INT, False, f"an int >= 1 and <= {MOST_COUNT}"),
    "gpus_per_core": (_NUM, False, f"a finite number >= 0 and <= {MOST_GPUS} (GPUs per rank)"),
    "cwd": (_PATH, True, "a path to a directory (created if missing)"),
    "cache_key": ((str,), True, "a str"),
    "cache_directory": (_PATH, True, "a path"),
    "num_nodes": (_INT, True, f"an int >= 1 and <= {MOST_COUNT}"),
    "exclusive": ((bool,), False, "a bool"),
    "error_log_file": (_PATH, True, "a path"),
    "run_time_max": (_NUM, True, f"a finite number of seconds > 0 and <= {LONGEST_WAIT} (100 years); None: no limit"),
    "priority": (_INT, True, f"an int from {-MOST_NICE} to {MOST_NICE}"),
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

# number-valued keys: key -> (lowest, whether the lowest itself is accepted, highest)
_RANGES = {
    "cores": (1, True, MOST_COUNT),
    "threads_per_core": (1, True, MOST_COUNT),
    "num_nodes": (1, True, MOST_COUNT),
    "priority": (-MOST_NICE, True, MOST_NICE),
    "gpus_per_core": (0, True, MOST_GPUS),
    "run_time_max": (0, False, LONGEST_WAIT),
    "retries": (0, True, None),
}

# keys the queued-job executors hand to their queue adapter (without a warning: they are
# documented, and an adapter that cannot render one warns itself), checked all the same: a
# value the job script cannot render is refused now
QUEUE_KEYS: dict[str, tuple[tuple, str]] = {
    "partition": ((str,), "a str"),
    "account": ((str,), "a str"),
    "qos": ((str,), "a str"),
    "memory_max": (_NUM, f"a finite number of GB > 0 and <= {MOST_MEMORY_GB}"),
}
_QUEUE_RANGES = {"memory_max": (0, False, MOST_MEMORY_GB)}


def _in_range(value, lowest, lowest_ok: bool, highest) -> bool:
    # comparisons rather than math.isfinite: NaN fails every one of them, infinity fails the
    # upper bound, and an int too large for a float still compares exactly
    above = value >= lowest if lowest_ok else value > lowest
    return bool(above and (highest is None or value <= highest))


def validate(resource_dict: dict | None, where: str, allowed: Iterable[str] | None = None, pass_unknown: bool = False) -> dict:
    """Check keys, value types and ranges; return a copy.

    Args:
        resource_dict: the dict given (None: empty).
        where: where it was given, for the messages (``"submit()"``, ...).
        allowed: the keys this executor takes (default: every key of ``KEYS``).
        pass_unknown: keys this table does not know are kept for a queue adapter: those of
            ``QUEUE_KEYS`` (``partition``, ``memory_max``, ...) are checked, others warned about.

    Returns:
        A copy of ``resource_dict``.

    Raises:
        TypeError: not a dict, or a value of the wrong type.
        ValueError: an unknown key, or a value outside its range (NaN and infinity included;
            the message names key, value and range), a ``cwd`` that cannot be a directory.
    """
    if resource_dict is None:
        return {}
    if not isinstance(resource_dict, dict):
        raise TypeError(f"{where}: resource_dict must be a dict, got {type(resource_dict).__qualname__}")
    allowed = set(KEYS if allowed is None else allowed)
    unknown = sorted(set(resource_dict) - allowed)
    if unknown and pass_unknown:
        import warnings

        # the queue keys (QUEUE_KEYS: documented, rendered by the built-in adapters) are
        # expected here; only a key nothing knows (a typo, an adapter's own) is warned about
        strange = [key for key in unknown if key not in QUEUE_KEYS]
        if strange:
            warnings.warn(
                f"{where}: resource_dict key(s) {strange} are not hpcfutures keys; passed on to the queue adapter "
                f"(the queue keys hpcfutures knows: {sorted(QUEUE_KEYS)})",
                stacklevel=3,
            )
        known = validate({k: v for k, v in resource_dict.items() if k not in unknown}, where, allowed)
        for key in unknown:
            _check_queue_key(key, resource_dict[key], where)
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
        if key in _RANGES and not _in_range(value, *_RANGES[key]):
            raise ValueError(f"{where}: resource_dict[{key!r}] must be {text}, got {value!r}")
        if key == "cwd":
            check_cwd(value, where)
        if key == "cache_key":
            from hpcfutures.cache.store import check_key

            check_key(value, f"{where}: resource_dict['cache_key']")
        if key == "retry_on" and not _exception_classes(value):
            raise TypeError(f"{where}: resource_dict['retry_on'] must be {text}, got {value!r}")
        if key == "slurm_cmd_args" and not all(isinstance(a, str) for a in value):
            raise TypeError(f"{where}: resource_dict['slurm_cmd_args'] must be {text}, got {value!r}")
    return dict(resource_dict)


def _check_queue_key(key: str, value, where: str) -> None:
    rule = QUEUE_KEYS.get(key)
    if rule is None or value is None:
        return
    types, text = rule
    if not isinstance(value, types) or isinstance(value, bool):
        raise TypeError(f"{where}: resource_dict[{key!r}] must be {text}, got {value!r}")
    if key in _QUEUE_RANGES and not _in_range(value, *_QUEUE_RANGES[key]):
        raise ValueError(f"{where}: resource_dict[{key!r}] must be {text}, got {value!r}")
    if isinstance(value, str) and not script_safe(value):
        raise ValueError(f"{where}: resource_dict[{key!r}]={value!r} holds a line break, NUL or double quote, which a job script cannot carry")


def script_safe(text: str) -> bool:
    """Whether ``text`` can stand in a job-script directive (``#SBATCH --chdir="..."``): one
    line, no NUL, no double quote. A line break would end the directive and start a command."""
    return not any(c in text for c in '\n\r\0"')


def check_cwd(value, where: str) -> None:
    """Refuse a ``cwd`` that can never become the working directory: empty, a file, below a
    file, or below a directory this process may not create it in. Nothing is created here;
    a missing directory is made when the call is started.

    Args:
        value: the ``cwd`` given (str or path-like).
        where: where it was given, for the message (``"submit()"``, ...).

    Raises:
        ValueError: the path names what is wrong and what is accepted (also a line break,
            NUL or double quote in it, which no job script can carry).
    """
    path = os.fsdecode(os.fspath(value))
    if not path:
        raise ValueError(f"{where}: resource_dict['cwd'] is empty; give a directory (None: the default)")
    if not script_safe(path):  # the same name must work once the code moves to a cluster
        raise ValueError(
            f"{where}: resource_dict['cwd']={value!r} holds a line break, NUL or double quote: such a name "
            "cannot be handed to srun or a job script; choose another directory name"
        )
    absolute = os.path.abspath(path)
    if os.path.isdir(absolute):
        if not os.access(absolute, os.X_OK):
            raise ValueError(f"{where}: resource_dict['cwd']={value!r} is a directory this user may not enter")
        return
    if os.path.lexists(absolute):
        raise ValueError(
            f"{where}: resource_dict['cwd']={value!r} exists and is not a directory; "
            "cwd must be a directory or a path where one can be created"
        )
    existing = os.path.dirname(absolute)  # the nearest existing ancestor decides whether it can be made
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(
            f"{where}: resource_dict['cwd']={value!r} cannot be created: {existing!r} is not a directory"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"{where}: resource_dict['cwd']={value!r} cannot be created: no permission to create "
            f"directories in {existing!r}"
        )


def check_seconds(value, name: str, lowest: float | None = 0, none_ok: bool = False):
    """Check a duration parameter (``refresh_rate``, ``timeout``): a real number (not a
    bool), not NaN, within ``lowest`` and ``LONGEST_WAIT`` seconds.

    Args:
        value: the value given.
        name: the parameter's name, for the message.
        lowest: the smallest value accepted (None: any finite negative too).
        none_ok: whether ``None`` (no limit) is accepted.

    Returns:
        ``value`` unchanged.

    Raises:
        TypeError: not a number.
        ValueError: NaN, infinite, below ``lowest`` or above ``LONGEST_WAIT``.
    """
    if value is None and none_ok:
        return None
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds{' or None' if none_ok else ''}, got {value!r}")
    low = -LONGEST_WAIT if lowest is None else lowest
    if not _in_range(value, low, True, LONGEST_WAIT):
        floor = "" if lowest is None else f" >= {lowest}"
        raise ValueError(
            f"{name} must be a finite number of seconds{floor} and <= {LONGEST_WAIT} (100 years)"
            f"{'; None: no limit' if none_ok else ''}, got {value!r}"
        )
    return value


def _exception_classes(value) -> bool:
    classes = value if isinstance(value, tuple) else (value,)
    return all(isinstance(c, type) and issubclass(c, BaseException) for c in classes)


def merge(defaults: dict, task: dict, where: str = "submit()") -> dict:
    """The task's resources over the executor's defaults, checked as a whole.

    Args:
        defaults: the executor's ``resource_dict``.
        task: the call's ``resource_dict``; its keys win.
        where: where the error points to (``submit()``, ``map()``).

    Returns:
        A new dict; neither argument is changed.

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


def whole_minutes(seconds) -> int:
    """The one rounding rule for time limits: ``run_time_max`` (seconds) as whole minutes,
    rounded UP, at least 1 — SLURM counts minutes, and a job must never get less time than
    asked (``60.5`` s -> 2 min). Every renderer (srun, ``#SBATCH``, template variables,
    pysqa) takes its value from here.

    Args:
        seconds: a positive number of seconds (already validated).

    Returns:
        Minutes, an int >= 1.
    """
    return max(1, math.ceil(seconds / 60))


class Resources:
    """One task's (or warm worker's) resources, validated, in the names backends think in.

    Built from a merged ``resource_dict`` (``Resources.from_dict`` checks it first;
    ``Resources.of`` trusts a dict that ``validate``/``merge`` already checked). The
    renderers in ``scheduling.render`` read only this object, so a key means the same on
    every backend.

    Attributes:
        ranks: MPI ranks (``cores``), >= 1.
        threads_per_rank: CPUs (threads) per rank (``threads_per_core``), >= 1.
        gpus_per_rank: GPUs per rank (``gpus_per_core``; whole on SLURM), >= 0.
        nodes: nodes to spread the ranks over (``num_nodes``), None: the scheduler's choice.
        exclusive: nodes (jobs) or CPUs (srun steps) not shared with other work.
        cwd: working directory (str, absolute), None: the backend's default.
        time_limit: seconds (``run_time_max``), None: no limit.
        priority: higher runs sooner (queued jobs), None: the queue's default.
        oversubscribe: more ranks than cores allowed (``openmpi_oversubscribe``).
        scheduler_args: extra ``srun`` arguments (``slurm_cmd_args``), a tuple of str.
        submission_template: a jinja2 job-script template, None: the built-in script.
        queue_options: keys for a queue adapter (``partition``, ``account``, ``qos``,
            ``memory_max`` in GB, ...), as given.
        pmi: the ``srun --mpi`` plugin, None: none chosen (set by the launcher, not a key).
        rest: the keys no backend renders (``cache_key``, ``retries``, ...), as given.

    Args:
        values: the attributes above by name; the ones left out take their defaults.

    Raises:
        TypeError: a name that is not one of the attributes.
    """

    __slots__ = (
        "ranks", "threads_per_rank", "gpus_per_rank", "nodes", "exclusive", "cwd", "time_limit", "priority",
        "oversubscribe", "scheduler_args", "submission_template", "queue_options", "pmi", "rest",
    )  # fmt: skip

    # resource_dict key -> attribute; the other known keys stay in ``rest``
    FIELDS = {
        "cores": "ranks",
        "threads_per_core": "threads_per_rank",
        "gpus_per_core": "gpus_per_rank",
        "num_nodes": "nodes",
        "exclusive": "exclusive",
        "cwd": "cwd",
        "run_time_max": "time_limit",
        "priority": "priority",
        "openmpi_oversubscribe": "oversubscribe",
        "slurm_cmd_args": "scheduler_args",
        "submission_template": "submission_template",
    }

    def __init__(self, **values):
        defaults = {"ranks": 1, "threads_per_rank": 1, "gpus_per_rank": 0, "exclusive": False, "oversubscribe": False}
        defaults.update(scheduler_args=(), queue_options={}, rest={})
        for name in self.__slots__:
            object.__setattr__(self, name, values.pop(name, defaults.get(name)))
        if values:
            raise TypeError(f"Resources: unknown field(s) {sorted(values)}")

    def __setattr__(self, name, value):
        raise AttributeError("Resources is immutable; build another with .of({...})")

    def __eq__(self, other) -> bool:
        return isinstance(other, Resources) and all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # holds dicts

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__ if getattr(self, n) not in (None, (), {}))
        return f"Resources({shown})"

    @classmethod
    def of(cls, resources: dict | Resources, pmi: str | None = None) -> Resources:
        """The value object of an already validated (merged) ``resource_dict``.

        Args:
            resources: the dict (or a ``Resources``, returned as is when ``pmi`` is None).
            pmi: the ``srun --mpi`` plugin chosen for it.

        Returns:
            A ``Resources``.
        """
        if isinstance(resources, Resources):
            if pmi is None:
                return resources
            resources = resources.as_dict()
        values: dict = {"pmi": pmi, "queue_options": {}, "rest": {}}
        for key, value in resources.items():
            field = cls.FIELDS.get(key)
            if field is not None:
                values[field] = value
            elif key in KEYS:
                values["rest"][key] = value
            else:
                values["queue_options"][key] = value
        for field in ("ranks", "threads_per_rank"):  # None (never from validate) means the default
            if values.get(field) is None:
                values.pop(field, None)
        values["exclusive"] = bool(values.get("exclusive"))
        values["oversubscribe"] = bool(values.get("oversubscribe"))
        values["gpus_per_rank"] = values.get("gpus_per_rank") or 0
        values["scheduler_args"] = tuple(values.get("scheduler_args") or ())
        if values.get("cwd") is not None:
            values["cwd"] = os.path.abspath(os.fsdecode(os.fspath(values["cwd"])))
        return cls(**values)

    @classmethod
    def from_dict(cls, resource_dict: dict | None, where: str = "resource_dict", pass_unknown: bool = False) -> Resources:
        """Validate ``resource_dict`` (over ``DEFAULTS``) and build the value object.

        Args:
            resource_dict: the dict given (None: the defaults).
            where: where it was given, for the messages.
            pass_unknown: keep keys for a queue adapter (``partition``, ...), with a warning.

        Returns:
            A ``Resources``.

        Raises:
            TypeError: not a dict, or a value of the wrong type (a bool where a number belongs too).
            ValueError: an unknown key, a value outside its range, ``num_nodes`` above ``cores``.
        """
        return cls.of(merge(DEFAULTS, validate(resource_dict, where, pass_unknown=pass_unknown), where))

    def as_dict(self) -> dict:
        """Back to ``resource_dict`` keys (the values the object holds, ``cwd`` absolute)."""
        out = {key: getattr(self, field) for key, field in self.FIELDS.items()}
        out["slurm_cmd_args"] = list(self.scheduler_args)
        out.update(self.rest)
        out.update(self.queue_options)
        return out

    @property
    def time_minutes(self) -> int | None:
        """The time limit in whole minutes, rounded up (``whole_minutes``); None: no limit."""
        return None if self.time_limit is None else whole_minutes(self.time_limit)

    @property
    def granted_seconds(self) -> int | None:
        """The time limit a scheduler grants: ``time_minutes`` in seconds (never below
        ``time_limit``); what templates and pysqa receive as ``run_time_max``."""
        return None if self.time_limit is None else 60 * self.time_minutes

    @property
    def cpus(self) -> int:
        """CPUs in all: ranks x threads per rank (what counts against a core budget)."""
        return self.ranks * self.threads_per_rank

    @property
    def gpus(self) -> int | float:
        """GPUs in all: ranks x GPUs per rank."""
        return self.ranks * self.gpus_per_rank
