"""The storage root: any fsspec URL (local folder, ``s3://``, ...), and Zarr stores inside it.

Credentials come from the usual chains (environment, profiles, instance roles) or from
``storage_options``; neither is ever printed: :func:`redact` strips them from any text that
may reach a log or an error message.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fsspec.core import url_to_fs

from lake.errors import TargetError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from fsspec.spec import AbstractFileSystem
    from zarr.abc.store import Store

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
S3_RETRIES = {"retries": {"max_attempts": 10, "mode": "standard"}}
_SECRET_KEYS = ("secret", "password", "token", "key", "credential", "session")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove user-info from URLs and any of ``secrets`` from ``text``."""
    out = _USERINFO.sub(r"\g<scheme>***@", text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, "***")
    return out


def secret_values(options: Mapping[str, Any]) -> list[str]:
    """The string values of ``options`` (nested) whose key looks like a credential."""
    found: list[str] = []
    for key, value in options.items():
        if isinstance(value, dict):
            found.extend(secret_values(value))
        elif isinstance(value, str) and any(s in key.lower() for s in _SECRET_KEYS):
            found.append(value)
    return found


def with_retries(url: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """fsspec ``options`` for ``url``, with S3's transient errors (500, 503 SlowDown,
    throttling) retried with backoff unless the options configure the client already."""
    if url.startswith(("s3://", "s3a://")) and "config_kwargs" not in options:
        return {**options, "config_kwargs": S3_RETRIES}
    return dict(options)


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


@dataclass(frozen=True)
class Root:
    """A folder or bucket prefix that holds a lake.

    ``storage_options`` are passed to fsspec and kept out of ``repr`` and messages.
    """

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        url = self.url.rstrip("/") if self.url not in ("/", "") else self.url
        if is_local(url):
            url = os.path.abspath(url.removeprefix("file://"))
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "storage_options", with_retries(url, self.storage_options))

    @property
    def display(self) -> str:
        return redact(self.url, secret_values(self.storage_options))

    @property
    def local(self) -> bool:
        return is_local(self.url)

    def fs(self) -> AbstractFileSystem:
        fs, _ = url_to_fs(self.url, **self.storage_options)
        return fs

    @functools.cached_property
    def _base(self) -> str:
        _, base = url_to_fs(self.url, **self.storage_options)
        return str(base).rstrip("/")

    def path(self, *parts: str) -> str:
        """The filesystem path (no scheme) of ``parts`` below the root."""
        return "/".join([self._base, *(p.strip("/") for p in parts if p)])

    def zarr_store(self, *parts: str, read_only: bool = False) -> Store:
        """A Zarr v3 store at ``parts`` below the root."""
        from zarr.storage import FsspecStore, LocalStore

        if self.local:
            return LocalStore(self.path(*parts), read_only=read_only)
        url = "/".join([self.url, *(p.strip("/") for p in parts)])
        return FsspecStore.from_url(url, storage_options=self.storage_options, read_only=read_only)

    def read_json(self, *parts: str) -> Any:
        """The JSON document at ``parts`` below the root; FileNotFoundError if absent."""
        with self.fs().open(self.path(*parts), "rb") as handle:
            return json.loads(handle.read())

    def open_write(self, path: str) -> Any:
        """A binary file handle for writing ``path`` (parent folders made on local disk)."""
        if self.local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        return self.fs().open(path, "wb")

    def put(self, path: str, data: bytes) -> None:
        """Write one object atomically (a rename on local disk; one PUT on object storage)."""
        if self.local:
            with _replacing(path) as tmp, open(tmp, "wb") as handle:
                handle.write(data)
        else:
            self.fs().pipe_file(path, data)

    def put_file(self, local: str, path: str) -> None:
        """Upload a local file to ``path`` atomically, without reading it into memory (a
        copy and a rename on local disk; a PUT or a multipart upload on object storage,
        which appears only once complete)."""
        if self.local:
            import shutil

            with _replacing(path) as tmp:
                shutil.copyfile(local, tmp)
        else:
            self.fs().put_file(local, path)

    def remove_partials(self, *parts: str) -> list[str]:
        """Delete temporary ``*.partial`` files a killed writer left below ``parts``.

        Only local disk has them (object stores publish a PUT whole or not at all); no
        reader opens them, so this is housekeeping before a dataset is written again.
        """
        if not self.local:
            return []
        removed: list[str] = []
        for folder, _, files in os.walk(self.path(*parts)):
            for name in files:
                if name.endswith(".partial"):
                    removed.append(os.path.join(folder, name))
                    os.remove(removed[-1])
        return removed

    def put_many(self, objects: Mapping[str, bytes]) -> None:
        """Write many objects, each atomically: concurrent PUTs on object storage (where
        each one waits on the network), one after the other on local disk (threads only
        added GIL contention there: 2.3x slower on a RAM disk, measured)."""
        if not objects:
            return
        if self.local:
            for path, data in objects.items():
                self.put(path, data)
        else:
            self.fs().pipe(dict(objects))

    def check_writable(self) -> None:
        """Write and remove a probe object; raise :class:`TargetError` if that fails."""
        fs = self.fs()
        probe = self.path(f".lake-write-probe-{uuid.uuid4().hex}")
        try:
            if self.local:
                fs.makedirs(self.path(), exist_ok=True)
            with fs.open(probe, "wb") as handle:
                handle.write(b"probe")
            fs.rm(probe)
        except Exception as exc:
            raise TargetError(
                f"target root {self.display}",
                f"cannot be written ({type(exc).__name__}: "
                f"{redact(str(exc), secret_values(self.storage_options))})",
                "point `root` at a folder or bucket you can write to, and check that the "
                "bucket exists and your credentials allow PutObject and DeleteObject",
            ) from None


@contextlib.contextmanager
def _replacing(path: str) -> Iterator[str]:
    """A temporary ``*.partial`` path beside local ``path`` to write, renamed over ``path``
    when the block ends without error (a killed writer leaves only the partial file)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex}.partial"
    yield tmp
    os.replace(tmp, path)
