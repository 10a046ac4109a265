"""A value read from a file and read again when the file changes, for the settings a user edits while the platform
runs (`codexk8s.yaml`, the agent catalog).

Why: the sensors run in the code server, one process that lives for days. A value read once there (it was
`functools.cache`) kept the first file for good: a budget raised in `codexk8s.yaml`, a repository added or a login
allowed did nothing until the code location was reloaded, while every new run process read the new file, so runs
and sensors followed two configurations. Asking the file system on every call is one `stat`; the file is parsed
again only when its stamp moved.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

FileStamp = tuple[int, int, int]
NO_FILE: FileStamp = (0, 0, 0)  # no file named: the built-in value
UNREADABLE: FileStamp = (-1, -1, -1)  # named but cannot be stat'ed: its reader says why


def file_stamp(path: Path | None) -> FileStamp:
    """What tells one version of a file from the next: modification time (ns), size and inode (an editor that saves
    through a new file, a Kubernetes ConfigMap update: a new inode, whatever the clock's resolution)."""
    if path is None:
        return NO_FILE
    try:
        st = os.stat(path)
    except OSError:
        return UNREADABLE
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ReadWhenChanged(Generic[T]):
    """`read(path)` of the file `locate()` names now, kept while that file keeps its stamp (`file_stamp`).

    The file is stamped before it is read, so an edit that lands during the read is read again at the next call,
    never missed. An error is never kept (the cache keeps what `read` returned, not what it raised): a file fixed
    after a mistake is used at the next call. `locate()` returns None for "no file": `read(None)` is then the
    built-in value. `cache_clear()` forgets every file read (tests that start from their own environment)."""

    def __init__(self, locate: Callable[[], Path | None], read: Callable[[Path | None], T], maxsize: int = 8) -> None:
        self._locate = locate
        self._read = read
        self._cached = functools.lru_cache(maxsize=maxsize)(self._read_at)

    def _read_at(self, path: Path | None, _where: str | None, _stamp: FileStamp) -> T:
        return self._read(path)

    def __call__(self) -> T:
        path = self._locate()
        where = None if path is None else os.path.abspath(path)  # the same relative name in another directory
        return self._cached(path, where, file_stamp(path))

    def cache_clear(self) -> None:
        self._cached.cache_clear()
