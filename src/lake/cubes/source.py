"""What a cube source is: the reader protocol every source kind implements, and what a scan
of one source file finds.

A cube source kind (NetCDF files, OPeNDAP endpoints, ...) is one module with one class
that satisfies :class:`CubeReader`, registered by name in :mod:`lake.registry`. The class
is built from the dataset's ``cube`` section on the client, pickled to the workers, and
must hold no live handles. Its scans return :class:`SourceFile` records, which the index
(:mod:`lake.cubes.index`), the plan and the scan record (:mod:`lake.cubes.scans`) use
without knowing where the values come from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, TypeVar, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import xarray as xr

    from lake.cubes.index import SourceIndex
    from lake.spec import CubeSource


T = TypeVar("T")


@runtime_checkable
class CubeReader(Protocol):
    """Lists, scans and reads the source files of one cube dataset.

    ``list_files`` and ``open`` run on the client; ``scan`` and ``read`` run on the workers.
    """

    title: ClassVar[str]
    """What the source is, for the catalogue's lineage (``NetCDF files``)."""

    @classmethod
    def from_spec(cls, cube: CubeSource) -> Self:
        """The reader of a dataset's ``cube`` section (no I/O here)."""
        ...

    def list_files(self) -> dict[str, dict[str, Any] | None]:
        """Each source URL, sorted, with its listing (size, ETag or mtime), or None when it
        cannot be listed (its scan then says what is wrong)."""
        ...

    def scan(self, files: Sequence[tuple[str, int | None]]) -> list[SourceFile]:
        """Open each ``(url, size)`` and record what the plan needs of it."""
        ...

    def open(self, url: str) -> xr.Dataset:
        """One source opened raw (values packed as stored), time decoded, names normalised:
        the template of the cube's metadata."""
        ...

    def time_axes(self, url: str) -> dict[str, list[str]]:
        """The time axes of one source, by their names in it, each with the data variables
        along it (of the spec's ``variables``, when it names some)."""
        ...

    def read(self, index: SourceIndex, name: str, region: Mapping[str, slice]) -> np.ndarray:
        """Raw values of variable ``name`` for ``region`` (global time indices)."""
        ...


class SourceAccess(Protocol):
    """How the values of one source kind are reached: NetCDF files through fsspec
    (:class:`lake.cubes.netcdf.FileAccess`), OPeNDAP endpoints
    (:class:`lake.cubes.opendap.DapAccess`). Picklable; holds no live handles."""

    def open(self, url: str, **open_kwargs: Any) -> xr.Dataset:
        """The source opened by xarray with ``open_kwargs`` (a :class:`SourceError` naming
        it when it cannot be)."""
        ...

    def size(self, url: str, ds: xr.Dataset) -> int:
        """Its size in bytes when its listing gave none (``ds``: it, opened)."""
        ...

    def direct(self, url: str) -> bool:
        """Whether its variables stored as read may be read from the file directly."""
        ...

    def run(self, url: str, work: Callable[[], T]) -> T:
        """``work()``, which reads ``url``, retried as this access retries transient faults."""
        ...


def digest(values: np.ndarray) -> str:
    arr = np.ascontiguousarray(values)
    h = hashlib.sha1(f"{arr.dtype.str}{arr.shape}".encode())
    if arr.dtype.kind in "OT":
        h.update("\x00".join(map(str, arr.ravel())).encode())
    else:
        h.update(arr.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class VariableSchema:
    """What must agree between files for a variable to be concatenated."""

    dims: tuple[str, ...]
    shape: tuple[int, ...]  # with the time dimension's length set to 0
    dtype: str
    packing: tuple[tuple[str, str], ...]
    source_name: str = field(default="", compare=False)
    """The variable's name in the file, before normalisation."""
    direct: bool = field(default=False, compare=False)
    """Stored exactly as in the file (numeric, not decoded here): readable without xarray."""


@dataclass(frozen=True)
class SourceFile:
    """What one scan of a source file learned: enough to plan without reopening it."""

    url: str
    times: np.ndarray
    time_units: str
    calendar: str
    variables: dict[str, VariableSchema]
    statics: dict[str, str] = field(default_factory=dict)  # name -> digest
    size: int = 0  # bytes on storage
    dropped: tuple[str, ...] = ()
    """Variables left out because they follow another time axis than the cube's."""
