"""OPeNDAP and THREDDS cube sources: gridded data read over DAP2/DAP4 instead of as files.

``cube: {opendap: URL | [URLs]}`` names DAP endpoints; ``cube: {thredds: CATALOG_URL,
match: GLOB}`` walks a THREDDS client catalogue (with siphon), through its catalogue
references, to the datasets whose path below the catalogue matches the glob, and reads
each through its OPeNDAP access (its HTTPServer access, as a NetCDF file over HTTP, when
it has no OPeNDAP one).

Values go through xarray with the engine the spec names (``engine: netcdf4``, the
default: the netCDF-C library's DAP client; or ``engine: pydap``), raw and normalised
exactly as files are (:mod:`lake.cubes.netcdf`), so a cube built over DAP equals the cube
built from the same files. Every open and read is retried on transient faults (no
connection, a timeout, a 5xx answer) with exponential backoff, ``retries`` times, each
request bounded by ``timeout`` seconds; then the build stops with one message naming
the endpoint.

Incremental builds: a THREDDS catalogue gives each dataset's size and modification date;
an OPeNDAP endpoint's ``Last-Modified`` header (of its ``.dds`` answer) gives a version.
A dataset with neither is opened at every build for its time axis, and never taken as
changed for ``updates: replace``.
"""

from __future__ import annotations

import functools
import re
import time as clock
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from lake.cubes.netcdf import open_netcdf, read_block, scan_files, time_axes_of
from lake.errors import LakeError, SourceError
from lake.sourcefiles import open_netcdf_dataset
from lake.storage import redact

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import xarray as xr

    from lake.cubes.index import SourceIndex
    from lake.cubes.source import SourceFile
    from lake.spec import CubeSource

T = TypeVar("T")
ENGINES = ("netcdf4", "pydap")
_TRANSIENT_NETCDF = ("I/O failure", "DAP server error", "timeout", "Timeout", "curl")


def _transient(exc: BaseException) -> bool:
    """A fault worth retrying: no connection, a timeout, a server error (5xx)."""
    import requests

    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else _status(str(exc))
        return status is None or status >= 500
    if isinstance(exc, requests.RequestException | ConnectionError | TimeoutError):
        return True
    return isinstance(exc, OSError) and any(s in str(exc) for s in _TRANSIENT_NETCDF)


def _status(text: str) -> int | None:
    """The HTTP status an error message names (pydap re-raises without the response)."""
    found = re.search(r"\b([1-5][0-9][0-9]) (?:Client|Server) Error", text)
    return int(found.group(1)) if found else None


def _fault(url: str, exc: BaseException, attempts: int, catalogue: bool = False) -> SourceError:
    import requests

    text = redact(str(exc))
    missing = "file not found" in text or (
        isinstance(exc, requests.HTTPError) and _status(text) == 404
    )
    if missing and catalogue:
        return SourceError(
            redact(url),
            f"is not a THREDDS catalogue on its server ({type(exc).__name__}: {text})",
            "check the URL: a THREDDS client catalogue ends in catalog.xml",
        )
    if missing:
        return SourceError(
            redact(url),
            f"is not an OPeNDAP dataset on its server ({type(exc).__name__}: {text})",
            "check the URL: it should open in a browser with `.html` added to it",
        )
    after = f" after {attempts} attempts" if attempts > 1 else ""
    what = "as a THREDDS catalogue" if catalogue else "over OPeNDAP"
    return SourceError(
        redact(url),
        f"could not be read {what}{after} ({type(exc).__name__}: {text})",
        "check that the server is up and reachable from every worker; for a slow server "
        "raise `timeout` or `retries` in the spec's `cube` section",
    )


@dataclass(frozen=True)
class DapAccess:
    """Datasets reached over DAP with one xarray engine (see the module's docstring)."""

    engine: str = "netcdf4"
    timeout: float = 60.0
    retries: int = 4
    http: frozenset[str] = frozenset()
    """URLs that are NetCDF files served over plain HTTP, not DAP endpoints."""

    def open(self, url: str, **open_kwargs: Any) -> xr.Dataset:
        import xarray as xr

        if url in self.http:
            return open_netcdf_dataset(url, {"timeout": self.timeout}, **open_kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydap's notes on DAP2/DAP4 schemes, CF decoding
            if self.engine == "pydap":
                ds: xr.Dataset = xr.open_dataset(url, engine="pydap", timeout=self.timeout,
                                                 **open_kwargs)  # fmt: skip
                return _typed_packing(ds)
            import netCDF4

            netCDF4.rc_set("HTTP.TIMEOUT", str(max(1, round(self.timeout))))
            netCDF4.rc_set("HTTP.CONNECTTIMEOUT", str(max(1, round(self.timeout))))
            ds = xr.open_dataset(url, engine="netcdf4", **open_kwargs)
            lost = sorted(n for n in _described(url, self.timeout)
                          if n in ds.variables and not ds.variables[n].attrs)  # fmt: skip
            if lost:
                ds.close()
                raise IncompleteAnswer(
                    f"the attributes of {', '.join(lost)} did not arrive (the .das request "
                    "failed; the netCDF-C client goes on without them)"
                )
            return _without_protocol_attrs(ds)

    def size(self, url: str, ds: xr.Dataset) -> int:
        """Bytes the dataset's variables hold as stored: what a full read transfers."""
        return int(sum(v.nbytes for v in ds.variables.values()))

    def direct(self, url: str) -> bool:
        return False

    def run(self, url: str, work: Callable[[], T], catalogue: bool = False) -> T:
        """``work()`` retried on transient faults (``catalogue``: ``url`` is a THREDDS
        catalogue, for the message)."""
        for attempt in range(1, self.retries + 2):
            try:
                return work()
            except LakeError:
                raise
            except Exception as exc:
                if not _transient(exc) or attempt > self.retries:
                    raise _fault(url, exc, attempt, catalogue) from None
                clock.sleep(min(8.0, 0.25 * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")  # pragma: no cover


class IncompleteAnswer(ConnectionError):
    """The server's answers arrived in part: retried like a lost connection."""


@functools.lru_cache(maxsize=1024)
def _described(url: str, timeout: float) -> frozenset[str]:
    """The variables the endpoint's attribute answer (``.das``) gives attributes to.

    The netCDF-C client opens an endpoint whose ``.das`` request failed (a 503, a reset
    connection) as if its variables had no attributes, packing and time units included,
    and says nothing. Each dataset it opens is checked against this, fetched once per
    process (a failed fetch is not kept, and is retried as any read is)."""
    import requests
    from pydap.parsers.das import parse_das

    with requests.get(f"{url}.das", timeout=timeout) as answer:
        answer.raise_for_status()
        text = answer.text
    das = parse_das(text)
    return frozenset(str(k) for k, v in das.items() if isinstance(v, dict) and v
                     and str(k) not in ("NC_GLOBAL", "DODS_EXTRA", "dimensions"))  # fmt: skip


# Attribute containers of the DAP answer, not of the dataset, which the netCDF-C client
# flattens into global attributes (``DODS_EXTRA.Unlimited_Dimension``; pydap's server
# lists dimension sizes as ``dimensions.time``).
_PROTOCOL_ATTRS = ("DODS_EXTRA.", "DODS.", "dimensions.")


def _without_protocol_attrs(ds: xr.Dataset) -> xr.Dataset:
    for name in [n for n in ds.attrs if str(n).startswith(_PROTOCOL_ATTRS)]:
        del ds.attrs[name]
    return ds


def _typed_packing(ds: xr.Dataset) -> xr.Dataset:
    """pydap reads a DAS ``Float64 add_offset 10`` as the integer 10; CF packing values are
    floating point in the variable's unpacked type, as the netCDF-C client gives them."""
    for var in ds.variables.values():
        for key in ("scale_factor", "add_offset"):
            value = var.attrs.get(key)
            if isinstance(value, int | np.integer) and not isinstance(value, bool):
                var.attrs[key] = np.float64(value)
    return ds


def _last_modified(url: str, timeout: float) -> dict[str, Any] | None:
    """The listing of one endpoint: the ``Last-Modified`` of its ``.dds`` (None when the
    server cannot be reached: the scan then says what is wrong)."""
    import requests

    try:
        with requests.get(f"{url}.dds", timeout=timeout, stream=True) as answer:
            if answer.status_code >= 400:
                return None
            modified = answer.headers.get("Last-Modified")
    except requests.RequestException:
        return None
    return {"size": None, "LastModified": modified} if modified else {"size": None}


class _Reads:
    """What both DAP readers do once they know their URLs and access."""

    variables: tuple[str, ...] | None
    time: str | None

    @property
    def access(self) -> DapAccess:
        raise NotImplementedError

    def scan(self, files: Sequence[tuple[str, int | None]]) -> list[SourceFile]:
        return scan_files(files, self.access, self.variables, self.time)

    def open(self, url: str) -> xr.Dataset:
        access = self.access
        return access.run(url, lambda: open_netcdf(url, access, self.time))

    def time_axes(self, url: str) -> dict[str, list[str]]:
        return time_axes_of(url, self.access, self.variables)

    def read(self, index: SourceIndex, name: str, region: Mapping[str, slice]) -> np.ndarray:
        return read_block(index, name, region, self.access, self.time)


def _options(cube: CubeSource) -> dict[str, Any]:
    return {
        "engine": cube.engine or "netcdf4",
        "timeout": cube.timeout,
        "retries": cube.retries,
        "variables": tuple(cube.variables) if cube.variables is not None else None,
        "time": cube.time,
    }


@dataclass(frozen=True)
class OpendapReader(_Reads):
    """OPeNDAP endpoints named by URL (``cube: {opendap: URL | [URLs]}``)."""

    title: ClassVar[str] = "OPeNDAP endpoints"
    urls: tuple[str, ...]
    engine: str = "netcdf4"
    timeout: float = 60.0
    retries: int = 4
    variables: tuple[str, ...] | None = None
    time: str | None = None

    @classmethod
    def from_spec(cls, cube: CubeSource) -> OpendapReader:
        urls = [cube.opendap] if isinstance(cube.opendap, str) else list(cube.opendap or [])
        return cls(tuple(u.rstrip("/") for u in urls), **_options(cube))

    @property
    def access(self) -> DapAccess:
        return DapAccess(self.engine, self.timeout, self.retries)

    def list_files(self) -> dict[str, dict[str, Any] | None]:
        with ThreadPoolExecutor(8) as pool:
            infos = pool.map(lambda u: _last_modified(u, self.timeout), self.urls)
            return dict(sorted(zip(self.urls, infos, strict=True)))


@dataclass(frozen=True)
class ThreddsReader(_Reads):
    """The datasets of a THREDDS catalogue (``cube: {thredds: URL, match: GLOB}``)."""

    title: ClassVar[str] = "THREDDS catalogue"
    catalog: str
    match: str = "*"
    engine: str = "netcdf4"
    timeout: float = 60.0
    retries: int = 4
    variables: tuple[str, ...] | None = None
    time: str | None = None
    http: set[str] = field(default_factory=set, compare=False)
    """The datasets read as files over HTTP (no OPeNDAP access), found by :meth:`list_files`."""

    @classmethod
    def from_spec(cls, cube: CubeSource) -> ThreddsReader:
        assert cube.thredds is not None
        return cls(cube.thredds, cube.match or "*", **_options(cube))

    @property
    def access(self) -> DapAccess:
        return DapAccess(self.engine, self.timeout, self.retries, frozenset(self.http))

    def list_files(self) -> dict[str, dict[str, Any] | None]:
        from lake.cubes.thredds import walk

        access = DapAccess(self.engine, self.timeout, self.retries)
        found = access.run(self.catalog, lambda: walk(self.catalog, self.match, self.timeout),
                           catalogue=True)  # fmt: skip
        if not found:
            raise SourceError(
                redact(self.catalog),
                f"lists no dataset matching {self.match!r} (in it or its catalogue references)",
                "check `match` (a glob on each dataset's path below the catalogue, such as "
                "`2024/*.nc`) and the catalogue URL (it ends in catalog.xml)",
            )
        self.http.clear()
        self.http.update(d.url for d in found if not d.dap)
        return {d.url: {"size": d.size, "LastModified": d.modified} for d in sorted(found)}
