"""One writer at a time: a build holds a lease on the lake root.

The lease is one object, ``ROOT/.lake-lease.json``, created only if it does not exist: an
exclusive create on local disk (``O_CREAT | O_EXCL``), a conditional PUT on object storage
(``If-None-Match: *``, which S3 and its compatible stores honour). It names its holder
(host, process, user, start) and when it expires; the holder renews it while it builds and
removes it when done. So a second build that finds it waits (``wait`` seconds) and then
stops with a message naming the holder, before it reads or writes anything of the lake.

A lease whose holder is gone does not block for ever: it is stale once it has expired
(the holder stopped renewing it), or at once when its holder ran on this host and that
process no longer exists. A stale lease is taken over, and the build says so. Two builds
taking over one stale lease at the same instant are told apart by a read-back after the
create: the one whose lease is not there any more waits. Readers never take a lease.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from lake.errors import LeaseError, TargetError

if TYPE_CHECKING:
    from lake.storage import Root

LEASE = ".lake-lease.json"
TTL = 600.0
"""Seconds a lease lasts unless its holder renews it."""
RENEW = 60.0
"""Seconds between renewals."""
POLL = 1.0
"""Seconds between attempts while waiting for a lease."""
SETTLE = 0.2
"""Seconds before the read-back that confirms a lease taken over from a stale one."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, and until when (ISO 8601, UTC)."""

    id: str
    host: str
    pid: int
    process_started: float
    user: str
    started: str
    expires: str

    def describe(self) -> str:
        return (f"a build on {self.host} (process {self.pid}, user {self.user}) since "
                f"{self.started}")  # fmt: skip


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _process_started(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def stale_reason(holder: Holder, now: datetime | None = None) -> str | None:
    """Why ``holder``'s lease no longer holds (None while it does)."""
    now = now or _now()
    if datetime.fromisoformat(holder.expires.replace("Z", "+00:00")) < now:
        return f"its lease expired at {holder.expires}"
    if holder.host == socket.gethostname():
        started = _process_started(holder.pid)
        if started is None or abs(started - holder.process_started) > 1.0:
            return f"process {holder.pid} no longer runs on {holder.host}"
    return None


class Lease:
    """The lease on one lake root, held as a context: ``with Lease(root).held(wait):``."""

    def __init__(self, root: Root, ttl: float = TTL, renew: float = RENEW) -> None:
        self.root = root
        self.path = root.path(LEASE)
        self.ttl = ttl
        self.renew_every = renew
        self.notes: list[str] = []
        self.lost = False
        self._holder: Holder | None = None
        self._stop = threading.Event()
        self._made_root = False
        """Whether taking the lease made the (local) root folder, removed again if empty."""

    def _mine(self) -> Holder:
        now = _now()
        return Holder(
            id=uuid.uuid4().hex, host=socket.gethostname(), pid=os.getpid(),
            process_started=_process_started(os.getpid()) or 0.0, user=getpass.getuser(),
            started=_iso(now), expires=_iso(now + timedelta(seconds=self.ttl)),
        )  # fmt: skip

    def _create(self, data: bytes) -> bool:
        """Write the lease if none exists; False if one does."""
        try:
            if self.root.local:
                folder = os.path.dirname(self.path)
                self._made_root = self._made_root or not os.path.isdir(folder)
                os.makedirs(folder, exist_ok=True)
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                return True
            try:
                self.root.fs().pipe_file(self.path, data, mode="create")
            except FileExistsError:
                return False
            return True
        except OSError:
            self.root.check_writable()  # names the root and the fix
            raise

    def read(self) -> Holder | None:
        """The holder of the published lease; None when there is none. A lease being
        written (empty or partial, on local disk) is read again shortly."""
        for _ in range(5):
            try:
                with self.root.fs().open(self.path, "rb") as handle:
                    raw = handle.read()
            except FileNotFoundError:
                return None
            try:
                return Holder(**json.loads(raw))
            except (ValueError, TypeError):
                time.sleep(0.1)
        raise TargetError(
            f"{self.root.display}/{LEASE}", "is not a lease this version can read",
            "make sure no build runs on this lake, then remove it",
        )  # fmt: skip

    def _remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.root.fs().rm_file(self.path)

    def acquire(self, wait: float = 0.0) -> None:
        """Take the lease, waiting up to ``wait`` seconds for its holder to finish."""
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            mine = self._mine()
            if self._create(json.dumps(asdict(mine)).encode()):
                self._holder = mine
                return
            holder = self.read()
            if holder is None:
                continue  # released between the two calls
            reason = stale_reason(holder)
            if reason is not None:
                self._remove()
                mine = self._mine()
                if self._create(json.dumps(asdict(mine)).encode()):
                    time.sleep(SETTLE)
                    current = self.read()
                    if current is not None and current.id == mine.id:
                        self._holder = mine
                        self.notes.append(f"took over the lease of {holder.describe()}: "
                                          f"{reason}")  # fmt: skip
                        return
                continue
            if time.monotonic() >= deadline:
                raise LeaseError(
                    f"lake root {self.root.display}",
                    f"is being built by {holder.describe()} (its lease expires at "
                    f"{holder.expires} unless that build renews it)",
                    "wait for that build to end (`--wait SECONDS` waits up to that long); "
                    f"if it is gone, its lease is taken over once it expires, or remove "
                    f"{self.root.display}/{LEASE}",
                )  # fmt: skip
            time.sleep(min(POLL, max(deadline - time.monotonic(), 0.0)) or POLL)

    def _renew(self) -> None:
        while not self._stop.wait(self.renew_every):
            holder = self.read()
            if self._holder is None or holder is None or holder.id != self._holder.id:
                self.lost = True
                return
            renewed = Holder(**{**asdict(self._holder),
                                "expires": _iso(_now() + timedelta(seconds=self.ttl))})  # fmt: skip
            self.root.put(self.path, json.dumps(asdict(renewed)).encode())
            self._holder = renewed

    def release(self) -> None:
        """Remove the lease if it is still this build's."""
        self._stop.set()
        holder = self.read()
        if self._holder is not None and holder is not None and holder.id == self._holder.id:
            self._remove()
        self._holder = None
        if self._made_root:  # a build that stopped before writing leaves no empty root
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(self.path))

    @contextlib.contextmanager
    def held(self, wait: float = 0.0) -> Iterator[Lease]:
        self.acquire(wait)
        renewer = threading.Thread(target=self._renew, name="lake-lease", daemon=True)
        renewer.start()
        try:
            yield self
        finally:
            self.release()
            renewer.join(timeout=5)
            if self.lost:
                self.notes.append(
                    "the lease was taken over while this build ran (it did not renew it for "
                    f"{self.ttl:.0f} s): run `lake verify`, and build again"
                )
