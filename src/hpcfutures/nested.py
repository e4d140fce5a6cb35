"""One walk over nested call arguments, for every place that looks inside ``args`` and
``kwargs``: finding futures (``scheduling.dependencies``), replacing them by their results
(the same), by markers naming their cache entries (``executors.cluster_jobs``), and the
markers by the stored results (``worker.upstream``, in the batch-job worker).

The walk goes into lists, tuples (named tuples stay named tuples) and dict values, at any
depth, and nowhere else: a set, a custom class or a numpy array is a leaf. Imported by the
workers too: standard library only.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

CONTAINERS = (list, tuple, dict)


def find(obj: Any, kind: type | tuple, found: list | None = None) -> list:
    """Every instance of ``kind`` in ``obj`` (itself, or inside containers), in order.

    Args:
        obj: a value, usually the ``args`` tuple or ``kwargs`` dict of a call.
        kind: the class (or tuple of classes) to collect.
        found: a list to append to (returned).

    Returns:
        The instances found, depth first, dict values in insertion order.
    """
    if found is None:
        found = []
    if isinstance(obj, kind):
        found.append(obj)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            if isinstance(item, kind) or isinstance(item, CONTAINERS):
                find(item, kind, found)
    elif isinstance(obj, dict):
        for item in obj.values():
            if isinstance(item, kind) or isinstance(item, CONTAINERS):
                find(item, kind, found)
    return found


def replace(obj: Any, kind: type | tuple, convert: Callable[[Any], Any]) -> Any:
    """A copy of ``obj`` with every instance of ``kind`` replaced by ``convert(instance)``.

    Args:
        obj: a value, usually the ``args`` tuple or ``kwargs`` dict of a call.
        kind: the class (or tuple of classes) to replace.
        convert: called once per instance found; its exceptions propagate.

    Returns:
        New lists, tuples (of the same named-tuple class) and dicts where the walk went;
        every other value is the same object.
    """
    if isinstance(obj, kind):
        return convert(obj)
    if isinstance(obj, list):
        return [replace(x, kind, convert) for x in obj]
    if isinstance(obj, tuple):
        items = [replace(x, kind, convert) for x in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    if isinstance(obj, dict):
        return {k: replace(v, kind, convert) for k, v in obj.items()}
    return obj
