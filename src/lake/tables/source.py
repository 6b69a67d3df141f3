"""What a table source is: the reader protocol every source kind implements.

A table source kind (PostgreSQL, CF discrete-sampling NetCDF, Darwin Core archives, ...) is
one module with one class satisfying :class:`TableReader`, registered by name in
:mod:`lake.registry`. On the client, :meth:`TableReader.open` describes the source and
splits it into parts (a database session stays open while the workers read, so that every
part sees one snapshot); each worker then reads its parts through the picklable
:class:`PartReader` of the :class:`SourcePlan`, as Arrow record batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager

    import pyarrow as pa

    from lake.spec import TableSource


COUNTED = "lake:count:"
"""Schema metadata of a source batch counting something its reader met (a file source's
dates that did not parse), ``lake:count:<what>`` → a number; summed over a build."""


class SourcePart(Protocol):
    """One unit of parallel reading: a value range, a ctid range, a file."""

    @property
    def index(self) -> int: ...


@runtime_checkable
class PartReader(Protocol):
    """Reads one part as Arrow record batches (on a worker; picklable, no live handles).

    A reader that keeps connections open between the parts a worker reads also has
    ``release()``, which the build runs on every worker once its reads end."""

    def read(self, part: Any) -> Iterator[pa.RecordBatch]: ...


@dataclass(frozen=True)
class SourcePlan:
    """What a build reads from the source: the description the table job needs, its parts
    and the reader the workers use for them."""

    label: str
    """How messages name the source (``table public.occurrence``; never a DSN)."""
    summary: str
    """One line for ``lake build --dry-run`` (columns, size)."""
    parts: list[Any]
    reader: PartReader
    key: list[str] = field(default_factory=list)
    """Columns identifying a row (incremental builds replace rows by key)."""
    srid: int | None = None
    """SRID of a source geometry column; None for lon/lat points (OGC:CRS84)."""
    geography: bool = False
    numeric: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    """Decimal columns → (precision, scale) when decimal128 holds them, else None (text)."""
    record: dict[str, Any] = field(default_factory=dict)
    """What the table manifest records of the source (kind, table, ``crs_srid``)."""
    lon: str | None = None
    lat: str | None = None
    """The columns of each row's point, when the source gives them (file sources)."""
    removed: pa.Table | None = None
    """Keys whose published rows go without a replacement (a file source's removed files)."""
    key_parts: list[Any] = field(default_factory=list)
    """Parts reading the key of every row of the source, in the same snapshot (parts of
    ``parts``' kind), to find rows deleted from it; empty when not asked for."""


@runtime_checkable
class TableReader(Protocol):
    """Describes and splits one table dataset's source (on the client)."""

    title: ClassVar[str]
    """What the source is, for the catalogue's lineage (``PostgreSQL``)."""

    @classmethod
    def from_spec(cls, dataset_id: str, table: TableSource) -> Self:
        """The reader of a dataset's ``table`` section; raises a spec error for a missing
        credential, before anything is read."""
        ...

    @property
    def label(self) -> str:
        """How messages name the source."""
        ...

    def open(
        self, watermark: Any, workers: int, previous: dict[str, Any] | None = None
    ) -> AbstractContextManager[SourcePlan]:
        """Describe the source, check the spec's columns against it, and split the rows
        after ``watermark`` (all rows when None) into parts for ``workers``. ``previous``:
        the ``record`` of the build this one extends (None for a full build), for sources
        that track what they read themselves (files by their change keys). The plan stays
        valid (a snapshot held) until the context exits."""
        ...
