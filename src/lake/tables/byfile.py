"""Table sources read file by file (NetCDF observations, Darwin Core archives): the files
a spec names, grouped into parts, and incremental builds by file.

Every row carries ``source_file`` (the file it came from) and ``source_id`` (its feature
file's identity, see :func:`source_id`). With ``incremental: {}`` a build compares each
file's listing (size and ETag or modification time) with the last build's, recorded in the
manifest: new files add rows, a changed file replaces its rows, a removed file removes
them. Rows are keyed by ``source_id``, so only partitions holding them are rewritten.

``source_id`` is the file's path, except that an Argo profile file's data-mode letter is
dropped (``R4900590_097.nc``, ``A…`` and ``D4900590_097.nc`` are one profile, Argo User's
Manual §4.1): a delayed-mode file replaces its real-time version, and where both are
listed only the best mode is read (D, then A, then R).
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from lake.errors import SourceError
from lake.sourcefiles import list_sources, listed
from lake.storage import redact
from lake.tables.source import COUNTED, SourcePlan

if TYPE_CHECKING:
    from collections.abc import Mapping

    from lake.spec import TableSource

PART_BYTES = 64 * 2**20
"""Source bytes per read task: thousands of small profile files make few tasks."""
_ARGO = re.compile(r"^(?P<kind>[BS]?)(?P<mode>[RAD])(?P<rest>\d{5,7}_\d{3,4}D?\.nc)$")
_MODE_RANK = {"R": 0, "A": 1, "D": 2}
BATCH_ROWS = 256 * 1024


def source_id(url: str) -> tuple[str, int]:
    """A file's feature identity (its path, an Argo file's data mode dropped) and the rank
    of its version among files of that identity (Argo: D over A over R)."""
    folder, _, name = url.rpartition("/")
    match = _ARGO.match(name)
    if match is None:
        return url, 0
    return f"{folder}/{match['kind']}{match['rest']}", _MODE_RANK[match["mode"]]


@dataclass(frozen=True)
class FilePart:
    index: int
    files: tuple[tuple[str, str], ...]
    """(url, source_id) of each file of the part."""


FileRead = Callable[[str, dict[str, Any], str], Iterator[pa.Table]]
"""Reads one file's rows: ``read(url, storage_options, rows)`` → tables (module-level,
picklable); ``rows`` names a second table of the file (``""``: its main rows)."""


@dataclass(frozen=True)
class FileRows:
    """Reads a part's files as rows (on a worker; picklable): each file's tables with
    ``source_file`` and ``source_id`` added; a part of several files as one schema, the
    union of their columns."""

    read_file: FileRead
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    rows: str = ""

    def read(self, part: FilePart) -> Iterator[pa.RecordBatch]:
        if len(part.files) == 1:
            url, ident = part.files[0]
            for table in self._tables(url, ident):
                yield from _batches(table)
            return
        tables = [t for url, ident in part.files for t in self._tables(url, ident)]
        if not tables:
            return
        counts: dict[bytes, int] = {}
        for table in tables:
            for key, value in (table.schema.metadata or {}).items():
                if key.startswith(COUNTED.encode()):
                    counts[key] = counts.get(key, 0) + int(value)
        try:
            table = pa.concat_tables(
                [t.replace_schema_metadata(None) for t in tables], promote_options="permissive"
            ).replace_schema_metadata({k: str(v).encode() for k, v in counts.items()})
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SourceError(
                ", ".join(redact(u) for u, _ in part.files[:3]),
                f"have variables of one name with types that do not combine ({exc})",
                "build files of different formats as different datasets",
            ) from None
        yield from _batches(table)

    def _tables(self, url: str, ident: str) -> Iterator[pa.Table]:
        shown = redact(url)
        for rows in self.read_file(url, self.storage_options, self.rows):
            n = rows.num_rows
            if n:
                named = rows.append_column(pa.field("source_file", pa.string()),
                                           pa.array([shown] * n, pa.string()))  # fmt: skip
                yield named.append_column(pa.field("source_id", pa.string()),
                                          pa.array([ident] * n, pa.string()))  # fmt: skip


def _batches(table: pa.Table) -> Iterator[pa.RecordBatch]:
    """A table's batches; what it counted (schema metadata) is on the first only."""
    meta = table.schema.metadata
    for i, batch in enumerate(table.to_batches(max_chunksize=BATCH_ROWS)):
        yield batch if i == 0 or not meta else batch.replace_schema_metadata(None)


def _parts(files: list[tuple[str, str, int]], workers: int) -> list[FilePart]:
    """Groups of files of about :data:`PART_BYTES`, at least two per worker when there are
    enough files."""
    total = sum(size for _, _, size in files)
    target = max(1, min(PART_BYTES, total // max(1, 2 * workers)))
    parts: list[FilePart] = []
    group: list[tuple[str, str]] = []
    held = 0
    for url, ident, size in files:
        group.append((url, ident))
        held += size
        if held >= target:
            parts.append(FilePart(len(parts), tuple(group)))
            group, held = [], 0
    if group:
        parts.append(FilePart(len(parts), tuple(group)))
    return parts


@dataclass(frozen=True)
class ByFileReader:
    """The reader of a table source read file by file; a kind sets ``kind``, ``title`` and
    ``read_file``."""

    kind: ClassVar[str]
    title: ClassVar[str]
    point: ClassVar[tuple[str, str]] = ("longitude", "latitude")
    """The columns of each row's point."""
    dataset: str
    patterns: tuple[str, ...]
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    rows: str = ""
    """Which rows of the files this table holds (``""``: the main ones)."""
    keep_removed: bool = False
    """Whether rows of files no longer listed stay (``incremental: {deletes: ignore}``)."""

    @staticmethod
    def read_file(url: str, storage_options: dict[str, Any], rows: str) -> Iterator[pa.Table]:
        """One file's rows (a module-level function of the kind, so that it pickles)."""
        raise NotImplementedError

    def subtables(self) -> list[str]:
        """The second tables the files hold (a Darwin Core archive's measurements)."""
        return []

    def source_metadata(self) -> dict[str, Any]:
        """What the first file says of the dataset (title, licence, ...) as spec
        ``metadata`` fields, read before a build fills the spec's metadata where the spec
        says nothing."""
        return {}

    @functools.cached_property
    def first_file(self) -> str | None:
        """The first file listed, which describes the dataset (listed once per reader)."""
        found = list_sources(self.patterns, self.storage_options, key=self.kind)
        return next((url for url, info in found.items() if info is not None), None)

    @classmethod
    def from_spec(cls, dataset_id: str, table: TableSource) -> Any:
        keep = table.incremental is not None and table.incremental.deletes == "ignore"
        return cls(dataset_id, tuple(table.patterns), dict(table.storage_options), table.rows,
                   keep)  # fmt: skip

    @property
    def label(self) -> str:
        return f"{self.kind} files of {self.dataset}"

    def listing(self) -> dict[str, tuple[str, str | None, int]]:
        """Each feature file to read, by ``source_id``: (url, change key, size); of several
        versions of one Argo profile, the best mode's."""
        best: dict[str, tuple[int, str, str | None, int]] = {}
        found = list_sources(self.patterns, self.storage_options, key=self.kind)
        for url, info in found.items():
            ident, rank = source_id(redact(url))
            seen = listed(url, info)
            if ident not in best or rank > best[ident][0]:
                best[ident] = (rank, url, seen.key, seen.size or 0)
        return {ident: (url, key, size) for ident, (_, url, key, size) in best.items()}

    @contextlib.contextmanager
    def open(
        self, watermark: Any, workers: int, previous: dict[str, Any] | None = None
    ) -> Iterator[SourcePlan]:
        files = self.listing()
        published = (previous or {}).get("files")
        before: Mapping[str, str | None] = published if isinstance(published, dict) else {}
        read = [(url, ident, size) for ident, (url, key, size) in files.items()
                if key is None or before.get(ident) != key]  # fmt: skip
        gone = sorted(set(before) - set(files))
        summary = f"{len(files)} file(s)"
        if before:
            summary += f", {len(read)} new or changed, {len(gone)} removed"
        if self.keep_removed:  # their rows stay; the record forgets them
            summary += " (their rows kept)" if gone else ""
            gone = []
        yield SourcePlan(
            label=self.label,
            summary=summary,
            parts=_parts(read, workers),
            reader=FileRows(type(self).read_file, dict(self.storage_options), self.rows),
            key=["source_id"],
            record={"kind": self.kind, "files": {i: key for i, (_, key, _) in files.items()}},
            lon=self.point[0],
            lat=self.point[1],
            removed=pa.table({"source_id": pa.array(gone, pa.string())}),
        )
