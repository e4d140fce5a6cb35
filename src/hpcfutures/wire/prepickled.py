"""A function pickled once and sent many times — what ``map`` submits.

A function defined in ``__main__`` or a notebook is pickled by value (its code, its globals),
which costs ~0.15 ms each time; ``map`` over thousands of items paid it per item. Within one
``map`` call the function cannot change, so it is pickled once here and every item's message
carries the same bytes; a worker turns equal bytes back into the function once (a small
cache in ``load_function``). Outside ``map`` nothing is cached: a notebook may redefine a
global between two ``submit`` calls, and each call must see the state of its moment.
"""

from __future__ import annotations

from collections import OrderedDict


class Prepickled:
    """Calls like ``fn``; pickles as ``load_function(<fn's pickle>)``.

    Args:
        fn: the function, kept for its name and for the cache key.
        data: its pickle, made once (bytes).
    """

    def __init__(self, fn, data: bytes):
        self.__wrapped__ = fn
        self.data = data
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)
        self.__qualname__ = getattr(fn, "__qualname__", self.__name__)
        self.__module__ = getattr(fn, "__module__", None)
        self.__doc__ = getattr(fn, "__doc__", None)

    @classmethod
    def of(cls, fn):
        """``fn`` wrapped; ``fn`` itself if it cannot be pickled (``submit`` reports why)."""
        if isinstance(fn, cls):
            return fn
        from hpcfutures.wire.frames import dumps_by_value

        try:
            return cls(fn, dumps_by_value(fn))
        except Exception:
            return fn

    def __call__(self, *args, **kwargs):
        return self.__wrapped__(*args, **kwargs)

    def __reduce__(self):
        return (load_function, (self.data,))


_LOADED: OrderedDict = OrderedDict()
_KEEP = 32


def load_function(data: bytes):
    """Unpickle a function, once per distinct pickle (worker side; standard library only)."""
    fn = _LOADED.get(data)
    if fn is None:
        import pickle

        fn = pickle.loads(data)
        _LOADED[data] = fn
        if len(_LOADED) > _KEEP:
            _LOADED.popitem(last=False)
    else:
        _LOADED.move_to_end(data)
    return fn
