"""The default cache key: ``<function name>_<hash of (function, args, kwargs)>``.

Hashing a pickle would be simpler, but a pickle is not a stable name for a value: set order
changes with ``PYTHONHASHSEED``, and a function defined in ``__main__`` or a notebook is
pickled with its file name and line numbers (a notebook's "file" is new in every kernel).
So the hash is computed from a canonical walk instead: containers by content (sets and dict
keys in a fixed order), importable functions and classes by their import path, and other
functions by what they compute — bytecode, constants, names, defaults, closure values and
the globals they read — not by where they were written. Objects without a better rule are
hashed through their pickle.
"""

from __future__ import annotations

import contextlib
import hashlib
import pickle
import sys
import types

_SIMPLE = (type(None), bool, int, float, complex, str, bytes, bytearray, range, type(Ellipsis))


def default_key(fn, args: tuple, kwargs: dict) -> str:
    """The cache key of a call with no ``cache_key``: the function's name and a
    fingerprint of the function (by its code for functions defined in ``__main__``) and its
    arguments.

    Args:
        fn: the function (map's ``Prepickled`` wrapper is looked through).
        args: its positional arguments.
        kwargs: its keyword arguments.

    Returns:
        ``<name>_<32 hex digits>``, a relative path below the cache directory.
    """
    from hpcfutures.wire.prepickled import Prepickled  # stdlib-only, loaded by map already

    if isinstance(fn, Prepickled):  # map's wrapper: the key is the function's own
        fn = fn.__wrapped__
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return f"{name}_{fingerprint((fn, args, kwargs))}"


def fingerprint(obj) -> str:
    """A stable digest of ``obj``: equal for equal values across processes and runs
    (functions and classes of ``__main__`` by their code, importable ones by their path;
    keying a cache on a function's code is the idea of ``joblib.Memory``).

    Returns:
        32 hex digits (the first 128 bits of a SHA-256).
    """
    h = hashlib.sha256()
    _Walker(h).feed(obj)
    return h.hexdigest()[:32]


def _digest(obj) -> bytes:
    h = hashlib.sha256()
    _Walker(h).feed(obj)
    return h.digest()


class _Walker:
    def __init__(self, h):
        self.h = h
        self.active: set[int] = set()  # functions being walked: recursion among globals

    def put(self, tag: str, data: bytes = b"") -> None:
        self.h.update(tag.encode())
        self.h.update(len(data).to_bytes(8, "little"))
        self.h.update(data)

    def feed(self, obj) -> None:
        kind = type(obj)
        if kind in _SIMPLE:
            self.put(kind.__name__, obj if isinstance(obj, (bytes, bytearray)) else repr(obj).encode())
        elif kind in (list, tuple):
            self.put(kind.__name__, len(obj).to_bytes(8, "little"))
            for item in obj:
                self.feed(item)
        elif kind is dict:
            self.put("dict", len(obj).to_bytes(8, "little"))
            for key_digest, value in sorted(((_digest(k), v) for k, v in obj.items()), key=lambda kv: kv[0]):
                self.put("key", key_digest)
                self.feed(value)
        elif kind in (set, frozenset):
            self.put(kind.__name__, b"".join(sorted(_digest(item) for item in obj)))
        elif isinstance(obj, types.FunctionType):
            self.function(obj)
        elif isinstance(obj, (types.BuiltinFunctionType, type, types.ModuleType)) and _importable(obj):
            self.put("ref", _path(obj).encode())
        elif isinstance(obj, type):
            self.klass(obj)
        elif isinstance(obj, types.CodeType):
            self.code(obj)
        elif hasattr(obj, "__array_interface__") and hasattr(obj, "tobytes"):  # numpy, without importing it
            self.put("array", f"{obj.dtype.str}{obj.shape}".encode())
            self.put("data", obj.tobytes())
        else:
            self.put(f"pickle:{kind.__module__}.{kind.__qualname__}", _pickled(obj))

    @contextlib.contextmanager
    def entered(self, obj, kind: str):
        """Walk a function or class once per path: one met again inside itself (recursion,
        a method naming its class) is fed as a name, so the walk ends."""
        if id(obj) in self.active:
            self.put("recursive", obj.__qualname__.encode())
            yield False
            return
        self.active.add(id(obj))
        try:
            self.put(kind, obj.__qualname__.encode())
            yield True
        finally:
            self.active.discard(id(obj))

    def function(self, fn: types.FunctionType) -> None:
        if _importable(fn):
            self.put("ref", _path(fn).encode())
            return
        with self.entered(fn, "function") as first:
            if not first:
                return
            self.code(fn.__code__)
            self.feed(fn.__defaults__)
            self.feed(fn.__kwdefaults__)
            self.feed(tuple(cell.cell_contents for cell in fn.__closure__ or () if _cell_filled(cell)))
            fn_globals = fn.__globals__
            for name in sorted(_global_names(fn.__code__)):
                if name in fn_globals:
                    self.put("global", name.encode())
                    value = fn_globals[name]
                    self.feed(value.__name__ if isinstance(value, types.ModuleType) else value)

    def klass(self, cls: type) -> None:
        """A class defined in ``__main__`` or a notebook: by its name, bases and the
        attributes it defines (methods walked like functions)."""
        with self.entered(cls, "class") as first:
            if not first:
                return
            self.feed(cls.__bases__)
            for name in sorted(vars(cls)):
                if name in ("__dict__", "__weakref__", "__module__", "__doc__") or isinstance(
                    vars(cls)[name], (types.MemberDescriptorType, types.GetSetDescriptorType)
                ):
                    continue
                value = vars(cls)[name]
                self.put("attr", name.encode())
                if isinstance(value, (staticmethod, classmethod)):
                    value = value.__func__
                if isinstance(value, property):
                    value = (value.fget, value.fset, value.fdel)
                self.feed(value)

    def code(self, code: types.CodeType) -> None:
        self.put("code", code.co_code)
        self.put("names", " ".join(code.co_names + code.co_varnames + code.co_freevars).encode())
        for const in code.co_consts:
            self.feed(const)


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _cell_filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _path(obj) -> str:
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    return f"{obj.__module__}.{obj.__qualname__}"


def _importable(obj) -> bool:
    """True when ``obj`` is what its module exports under its name: then the name is the
    identity (as pickle itself treats it). ``__main__`` is never that: it changes per script."""
    if isinstance(obj, types.ModuleType):
        return True
    module = getattr(obj, "__module__", None)
    if not module or module == "__main__" or module not in sys.modules:
        return False
    target = sys.modules[module]
    for part in getattr(obj, "__qualname__", "").split("."):
        target = getattr(target, part, None)
        if target is None:
            return False
    return target is obj


def _pickled(obj) -> bytes:
    try:
        return pickle.dumps(obj, protocol=4)
    except Exception:
        import cloudpickle

        return cloudpickle.dumps(obj, protocol=4)
