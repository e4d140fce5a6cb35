"""The result cache: one file per task, named by its key, written atomically.

``fingerprint`` makes the default key (stable across processes and sessions), ``entry``
owns the on-disk format, ``store`` answers lookups for the executors and the public
``get_cache_data`` / ``get_future_from_cache``; ``hpcfutures cache`` (``cli``) manages it
from a shell.
"""
