"""Source files of every kind: the files a spec's globs, lists or URLs name, what their
listing says of each (size and version, to recognise a changed file), and a NetCDF file
opened with the reader its first bytes call for. Cube and table sources both use them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import threading
import warnings
from typing import TYPE_CHECKING, Any

import fsspec

from lake.errors import SourceError
from lake.storage import is_local, redact

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    import xarray as xr

NETCDF_FIX = "re-download the file, or remove it from the spec's `netcdf` list or glob"


_VERSION_FIELDS = ("ETag", "etag", "md5Hash", "generation", "mtime", "LastModified", "updated")


@dataclasses.dataclass(frozen=True)
class Listed:
    """A source file as its listing shows it."""

    url: str
    size: int | None = None
    version: str | None = None

    @property
    def key(self) -> str | None:
        """What identifies this content; None when the listing gives no version."""
        if self.version is None:
            return None
        text = f"{self.url}\n{self.size}\n{self.version}"
        return hashlib.sha256(text.encode()).hexdigest()


def listed(url: str, info: Mapping[str, Any] | None) -> Listed:
    """``url`` with the size and version of its listing ``info`` (an fsspec info dict)."""
    if not info:
        return Listed(url)
    size = info.get("size")
    version = next((info[k] for k in _VERSION_FIELDS if info.get(k) not in (None, "")), None)
    return Listed(
        url, int(size) if size is not None else None, None if version is None else str(version)
    )


def list_sources(
    patterns: Sequence[str], storage_options: Mapping[str, Any], key: str = "netcdf"
) -> dict[str, dict[str, Any] | None]:
    """Each file URL the globs and lists name, sorted, with its listing (fsspec's info:
    size, ETag or modification time; None for a named file that cannot be listed, whose
    scan then says what is wrong)."""
    found: dict[str, dict[str, Any] | None] = {}
    for pattern in patterns:
        fs, path = fsspec.core.url_to_fs(pattern, **storage_options)
        fs.invalidate_cache()  # listings are cached per process; a rerun must see new files
        if fsspec.core.has_magic(path):
            listing = fs.glob(path, detail=True)
        else:
            try:
                listing = {path: fs.info(path)}
            except Exception:
                listing = {path: None}
        protocol = fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol
        for path, info in listing.items():
            if info is not None and info.get("type") == "directory":
                continue
            found[path if protocol in ("file", "local") else f"{protocol}://{path}"] = info
    if not found:
        raise SourceError(
            ", ".join(redact(p) for p in patterns),
            "matches no file",
            f"check the `{key}` glob or paths in the spec",
        )
    return dict(sorted(found.items()))


def netcdf_engine_and_handle(url: str, storage_options: Mapping[str, Any]) -> tuple[str, Any]:
    """Pick the reader by the file's magic bytes; remote files go through fsspec."""
    handle = fsspec.open(url, "rb", **storage_options).open()
    magic = handle.read(8)
    handle.seek(0)
    if magic[:3] == b"CDF":
        engine = "scipy"
    elif magic[:4] == b"\x89HDF":
        engine = "netcdf4" if is_local(url) else "h5netcdf"
    else:
        handle.close()
        raise SourceError(
            redact(url),
            "is not a NetCDF file (it starts with neither 'CDF' nor the HDF5 signature)",
            NETCDF_FIX,
        )
    if engine == "netcdf4":
        handle.close()
        return engine, url.removeprefix("file://")
    if engine == "scipy" and is_local(url):
        handle.close()
        return engine, url.removeprefix("file://")
    return engine, handle


_LICENSING_LOCK = threading.Lock()


@functools.cache
def spdx_licensing() -> Any:
    """The SPDX licence index, built once per process (its build is slow and not safe to run
    in two threads at once)."""
    from license_expression import get_spdx_licensing

    with _LICENSING_LOCK:
        return get_spdx_licensing()


_LICENCE_URLS = (
    (r"creativecommons\.org/publicdomain/zero/1\.0", "CC0-1.0"),
    (r"creativecommons\.org/licenses/by/4\.0", "CC-BY-4.0"),
    (r"creativecommons\.org/licenses/by-sa/4\.0", "CC-BY-SA-4.0"),
    (r"creativecommons\.org/licenses/by-nc/4\.0", "CC-BY-NC-4.0"),
    (r"creativecommons\.org/licenses/by/3\.0", "CC-BY-3.0"),
    (r"opendatacommons\.org/licenses/by/1\.0", "ODC-By-1.0"),
    (r"opendatacommons\.org/licenses/odbl/1\.0", "ODbL-1.0"),
    (r"opendatacommons\.org/licenses/pddl/1\.0", "PDDL-1.0"),
)
_LICENCE_NAMES = (
    (r"\bCC[-_ ]?0\b|public domain dedication", "CC0-1.0"),
    (r"\bCC[-_ ]BY[-_ ]SA[-_ ]4\.0\b", "CC-BY-SA-4.0"),
    (r"\bCC[-_ ]BY[-_ ]NC[-_ ]4\.0\b", "CC-BY-NC-4.0"),
    (r"\bCC[-_ ]BY[-_ ]4\.0\b|creative commons attribution 4\.0", "CC-BY-4.0"),
    (r"open data commons attribution", "ODC-By-1.0"),
)


def licence_of(text: str) -> dict[str, str]:
    """The spec's ``license`` (and ``license_url``) for a source's licence text: an SPDX id
    when the text names or links a well-known licence, else ``other`` with the first URL
    it gives; nothing when it gives neither (the spec must then name it)."""
    import re

    for pattern, spdx in _LICENCE_URLS:
        if re.search(pattern, text, re.IGNORECASE):
            return {"license": spdx}
    for pattern, spdx in _LICENCE_NAMES:
        if re.search(pattern, text, re.IGNORECASE):
            return {"license": spdx}
    url = re.search(r"https?://[^\s\"'<>)]+", text)
    if url:
        return {"license": "other", "license_url": url.group(0).rstrip(".,;")}
    return {}


def acdd_metadata(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """What a NetCDF file's ACDD/CF global attributes say for the catalogue (title,
    description, licence, keywords, citation, providers), as spec ``metadata`` fields."""

    def text(*names: str) -> str:
        for name in names:
            value = str(attrs.get(name, "")).strip()
            if value:
                return value
        return ""

    out: dict[str, Any] = {}
    if text("title"):
        out["title"] = text("title")
    if text("summary", "comment"):
        out["description"] = text("summary", "comment")
    if text("license", "licence"):
        out.update(licence_of(text("license", "licence")))
    keywords = [k.strip() for k in text("keywords").replace(";", ",").split(",") if k.strip()]
    if keywords:
        out["keywords"] = keywords[:20]
    if text("citation", "references"):
        out["citation"] = text("citation", "references")
    providers = []
    producer = text("creator_institution", "institution", "creator_name")
    if producer:
        url = text("creator_url", "institution_url")
        providers.append({"name": producer, "roles": ["producer"], **({"url": url} if url else {})})
    publisher = text("publisher_institution", "publisher_name")
    if publisher and publisher != producer:
        url = text("publisher_url")
        providers.append({"name": publisher, "roles": ["host"],
                          **({"url": url.split()[0]} if url else {})})  # fmt: skip
    if providers:
        out["providers"] = providers
    return out


@contextlib.contextmanager
def read_errors(
    url: str, reads_as: str, fix: str, missing_fix: str = "check the path or glob"
) -> Iterator[None]:
    """Reading source file ``url`` (a ``reads_as``, such as ``NetCDF``) inside: a missing,
    unreadable or corrupt file becomes one :class:`SourceError` naming it (lake errors
    pass through)."""
    from lake.errors import LakeError

    try:
        yield
    except LakeError:
        raise
    except FileNotFoundError:
        raise SourceError(redact(url), "does not exist", missing_fix) from None
    except ImportError as exc:
        raise SourceError(
            redact(url), f"needs a reader that is not installed ({exc})", "pip install marine-lake"
        ) from None
    except Exception as exc:
        raise SourceError(
            redact(url),
            f"cannot be read as {reads_as}, it may be truncated or corrupt "
            f"({type(exc).__name__}: {redact(str(exc))})",
            fix,
        ) from None


def netcdf_errors(url: str) -> contextlib.AbstractContextManager[None]:
    """:func:`read_errors` of a NetCDF file."""
    return read_errors(url, "NetCDF", NETCDF_FIX)


def open_netcdf_dataset(
    url: str, storage_options: Mapping[str, Any] | None, **open_kwargs: Any
) -> xr.Dataset:
    """A NetCDF file opened with xarray (``open_kwargs``), with the reader its first bytes
    call for; what goes wrong is a :class:`SourceError` naming the file."""
    import xarray as xr

    with netcdf_errors(url):
        engine, target = netcdf_engine_and_handle(url, dict(storage_options or {}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=xr.SerializationWarning)
            opened: xr.Dataset = xr.open_dataset(target, engine=engine, **open_kwargs)
        return opened
