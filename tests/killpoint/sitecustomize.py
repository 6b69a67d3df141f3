"""Kill a build at its N-th change to the lake, in whichever of its processes it happens.

Loaded by every Python process of a build started with this folder on ``PYTHONPATH``
(the client and the Dask worker processes it spawns). With ``LAKE_KILL_ROOT`` set, each
change below that folder (opening a file for writing, rename, replace, link, unlink,
rmtree) increments a counter shared through ``LAKE_KILL_COUNTER`` (a file, under a lock).
At change ``LAKE_KILL_AT`` the whole process group gets SIGKILL: before a rename or
delete happens, or, for a file opened for writing, after half of its first write reached
the disk (a torn write). ``LAKE_KILL_AT=0`` only counts; ``LAKE_KILL_LOG`` lists changes.
"""

from __future__ import annotations

import builtins
import fcntl
import io
import os
import shutil
import signal
from typing import Any

_ROOT = os.environ.get("LAKE_KILL_ROOT")


def _under_root(path: Any) -> bool:
    try:
        text = os.fsdecode(path) if not isinstance(path, int) else ""
    except TypeError:
        return False
    return bool(text) and os.path.abspath(text).startswith(_ROOT or "\0")


def _tick(what: str, path: Any) -> bool:
    """Count one change; True when this is the change to die at."""
    fd = _real_os_open(os.environ["LAKE_KILL_COUNTER"], os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        count = int(os.read(fd, 32) or b"0") + 1
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, str(count).encode())
        log = os.environ.get("LAKE_KILL_LOG")
        if log:
            with _real_open(log, "a") as handle:
                handle.write(f"{count} {os.getpid()} {what} {os.fsdecode(path)}\n")
    finally:
        os.close(fd)
    return count == int(os.environ.get("LAKE_KILL_AT", "0"))


def _die() -> None:
    os.killpg(os.getpgid(0), signal.SIGKILL)


class _TornFile:
    """A file that writes half of its first write, then kills the build."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._handle.write(view[: len(view) // 2])
        self._handle.flush()
        _die()
        return 0  # pragma: no cover

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _TornFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


def _open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    writes = any(c in mode for c in "wax+")
    if writes and _under_root(file) and _tick(f"open-{mode}", file):
        return _TornFile(_real_open(file, mode, *args, **kwargs))
    return _real_open(file, mode, *args, **kwargs)


def _wrap(name: str, func: Any) -> Any:
    def changed(path: Any, *args: Any, **kwargs: Any) -> Any:
        if _under_root(path) and _tick(name, path):
            _die()
        return func(path, *args, **kwargs)

    return changed


if _ROOT:
    _real_open = builtins.open
    _real_os_open = os.open
    builtins.open = io.open = _open  # type: ignore[assignment]
    for _name in ("rename", "replace", "link", "unlink", "remove"):
        setattr(os, _name, _wrap(_name, getattr(os, _name)))
    shutil.rmtree = _wrap("rmtree", shutil.rmtree)  # type: ignore[assignment]
