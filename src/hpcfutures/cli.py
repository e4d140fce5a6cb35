"""``hpcfutures`` on the command line. One command group for now: ``hpcfutures cache``.

    hpcfutures cache list DIR [--status queued|ok|error|cancelled|unreadable]
    hpcfutures cache show DIR KEY
    hpcfutures cache delete DIR [--key KEY ...] [--status STATUS] [--older-than AGE] [--temporary] [--dry-run]

AGE is seconds or a number with s, m, h or d (``7d``). ``--temporary`` also removes files
left by writes that never finished (a killed process), if they are older than an hour.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

_STALE_TEMPORARY = 3600.0


def main(argv: list[str] | None = None) -> int:
    """The ``hpcfutures`` command (``python -m hpcfutures``): ``cache list``,
    ``cache show``, ``cache delete``.

    Args:
        argv: the arguments after the program name; ``None``: ``sys.argv[1:]``.

    Returns:
        The exit status (0: done).
    """
    from hpcfutures.cache.entry import Status

    statuses = [s.value for s in Status]  # the statuses an entry is listed or deleted by
    parser = argparse.ArgumentParser(prog="hpcfutures", description="Manage hpcfutures from a shell.")
    groups = parser.add_subparsers(dest="group", required=True)
    cache = groups.add_parser("cache", help="inspect and clean a result cache directory")
    commands = cache.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="one line per entry: status, size, age, runtime, key")
    listing.add_argument("directory")
    listing.add_argument("--status", choices=statuses)

    show = commands.add_parser("show", help="everything stored for one key")
    show.add_argument("directory")
    show.add_argument("key")

    delete = commands.add_parser("delete", help="delete entries by key, status and/or age")
    delete.add_argument("directory")
    delete.add_argument("--key", action="append", default=[], help="a key to delete (repeatable)")
    delete.add_argument("--status", choices=statuses)
    delete.add_argument("--older-than", type=_age, metavar="AGE", help="written more than AGE ago (30m, 12h, 7d, seconds)")
    delete.add_argument("--temporary", action="store_true", help="also remove leftovers of unfinished writes (> 1 h old)")
    delete.add_argument("--dry-run", action="store_true", help="print what would be deleted, delete nothing")

    args = parser.parse_args(argv)
    if not os.path.isdir(args.directory):
        print(f"hpcfutures: {args.directory!r} is not a directory", file=sys.stderr)
        return 2
    return {"list": _list, "show": _show, "delete": _delete}[args.command](args)


def _age(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an age: {text!r} (examples: 90, 30m, 12h, 7d)") from None
    # NaN compares false with every age, so "--older-than nan" would select every entry
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"not an age: {text!r}; a finite number of seconds >= 0 (examples: 90, 30m, 12h, 7d)")
    return seconds


def _records(directory: str):
    from hpcfutures.cache.store import entry_paths, read_entry

    for path in entry_paths(directory):
        yield read_entry(directory, path, load=False)


def _list(args) -> int:
    now = time.time()
    shown = 0
    print(f"{'status':10} {'size':>10} {'age':>8} {'runtime':>9}  key")
    for record in _records(args.directory):
        if args.status and record["status"] != args.status:
            continue
        runtime = f"{record['runtime']:.3f}s" if isinstance(record["runtime"], (int, float)) else "-"
        age = _human_age(now - record["written"]) if record["written"] else "-"
        print(f"{record['status']:10} {_human_size(record['size']):>10} {age:>8} {runtime:>9}  {record['cache_key']}")
        shown += 1
    leftovers = _temporaries(args.directory)
    print(f"{shown} entries" + (f"; {len(leftovers)} leftover temporary files" if leftovers else ""))
    return 0


def _show(args) -> int:
    from hpcfutures.cache.store import CacheStore, check_key, read_entry

    try:
        path = CacheStore(args.directory).path(check_key(args.key))
    except ValueError as exc:
        print(f"hpcfutures: {exc}", file=sys.stderr)
        return 2
    if not os.path.exists(path):
        print(f"hpcfutures: no entry {args.key!r} in {args.directory}", file=sys.stderr)
        return 1
    record = read_entry(args.directory, path)
    for field in ("cache_key", "status", "function", "input_args", "input_kwargs", "output", "error", "runtime", "resource_dict", "size", "filename"):
        value = record[field]
        text = _function_name(value) if field == "function" else repr(value)
        print(f"{field:14} {text if len(text) <= 500 else text[:497] + '...'}")
    if record["written"]:
        print(f"{'written':14} {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(record['written']))}")
    return 0


def _delete(args) -> int:
    if not (args.key or args.status or args.older_than is not None or args.temporary):
        print("hpcfutures: say what to delete: --key, --status, --older-than and/or --temporary", file=sys.stderr)
        return 2
    now = time.time()
    keys = set(args.key)
    doomed = []
    if keys or args.status or args.older_than is not None:
        for record in _records(args.directory):
            if keys and record["cache_key"] not in keys:
                continue
            if args.status and record["status"] != args.status:
                continue
            if args.older_than is not None:
                written = record["written"] or _mtime(record["filename"])
                if written is None or now - written < args.older_than:
                    continue
            doomed.append(record["filename"])
    if args.temporary:
        doomed += [p for p in _temporaries(args.directory) if now - (_mtime(p) or now) > _STALE_TEMPORARY]
    from hpcfutures.cache.entry import remove_job_record

    for path in doomed:
        print(("would delete " if args.dry_run else "deleted ") + path)
        if not args.dry_run:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            remove_job_record(path)  # a queued entry's job record goes with it
    print(f"{len(doomed)} files {'would be ' if args.dry_run else ''}deleted")
    return 0


def _function_name(fn) -> str:
    if callable(fn) and hasattr(fn, "__qualname__"):
        return f"{getattr(fn, '__module__', '?')}.{fn.__qualname__}"
    return repr(fn)


def _temporaries(directory: str) -> list[str]:
    from hpcfutures.cache.entry import TEMP_MARK

    found = []
    for root, _dirs, files in os.walk(directory):
        found += [os.path.join(root, n) for n in files if TEMP_MARK in n]
    return found


def _mtime(path: str) -> float | None:
    from hpcfutures.cache.store import stat_or_none

    st = stat_or_none(path)
    return None if st is None else st.st_mtime


def _human_size(n) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _human_age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


if __name__ == "__main__":
    sys.exit(main())
