"""The NetCDF table source: CF discrete-sampling-geometry files, one row per observation.

``table: {netcdf: GLOB}`` names files of in-situ observations (Argo profiles, CTD casts,
gliders, moorings, ragged arrays); :mod:`lake.tables.dsg` turns each into rows. A part is
a group of files of about :data:`PART_BYTES`, read on one worker; every row carries
``source_file`` (the file it came from) and ``source_id`` (its feature file's identity).

Incremental builds (``incremental: {}``) work per file, by the listing's change key (size
and ETag or modification time): new files add rows, a changed file replaces its rows, a
removed file removes them. Rows are keyed by ``source_id``: the file's path, except that
an Argo profile file's data-mode letter is dropped (``R4900590_097.nc``, ``A…`` and
``D4900590_097.nc`` are one profile, Argo User's Manual §4.1), so that a delayed-mode file
replaces its real-time version, and where both are listed only the best mode is read
(D, then A, then R).
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from lake.errors import LakeError, SourceError
from lake.sourcefiles import NETCDF_FIX, list_sources, listed, netcdf_engine_and_handle
from lake.storage import redact
from lake.tables.dsg import read_dsg
from lake.tables.source import SourcePlan

if TYPE_CHECKING:
    from collections.abc import Mapping

    from lake.spec import TableSource

PART_BYTES = 64 * 2**20
"""Source bytes per read task: thousands of small profile files make few tasks."""
_ARGO = re.compile(r"^(?P<kind>[BS]?)(?P<mode>[RAD])(?P<rest>\d{5,7}_\d{3,4}D?\.nc)$")
_MODE_RANK = {"R": 0, "A": 1, "D": 2}


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


@dataclass(frozen=True)
class FileRows:
    """Reads a part's files as rows (on a worker; picklable)."""

    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)

    def read(self, part: FilePart) -> Iterator[pa.RecordBatch]:
        tables = [self.read_file(url, ident) for url, ident in part.files]
        tables = [t for t in tables if t.num_rows]
        if not tables:
            return
        try:
            table = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SourceError(
                ", ".join(redact(u) for u, _ in part.files[:3]),
                f"have variables of one name with types that do not combine ({exc})",
                "build files of different formats as different datasets",
            ) from None
        yield from table.to_batches(max_chunksize=256 * 1024)

    def read_file(self, url: str, ident: str) -> pa.Table:
        import xarray as xr

        shown = redact(url)
        try:
            engine, target = netcdf_engine_and_handle(url, self.storage_options)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = xr.open_dataset(target, engine=engine, decode_cf=False,
                                     mask_and_scale=False, decode_times=False)  # fmt: skip
            with ds:
                table = read_dsg(ds.load(), shown)
        except LakeError:
            raise
        except FileNotFoundError:
            raise SourceError(shown, "does not exist", "check the path or glob") from None
        except Exception as exc:
            raise SourceError(
                shown,
                f"cannot be read as NetCDF, it may be truncated or corrupt "
                f"({type(exc).__name__}: {redact(str(exc))})",
                NETCDF_FIX,
            ) from None
        n = table.num_rows
        table = table.append_column(pa.field("source_file", pa.string()), pa.array([shown] * n))
        return table.append_column(pa.field("source_id", pa.string()), pa.array([ident] * n))


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
class NetcdfTableReader:
    """CF DSG NetCDF files (``table: {netcdf: ...}``); see the module's rules."""

    title: ClassVar[str] = "NetCDF files (CF discrete sampling geometries)"
    dataset: str
    patterns: tuple[str, ...]
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_spec(cls, dataset_id: str, table: TableSource) -> NetcdfTableReader:
        return cls(dataset_id, tuple(table.patterns), dict(table.storage_options))

    @property
    def label(self) -> str:
        return f"NetCDF files of {self.dataset}"

    def listing(self) -> dict[str, tuple[str, str | None, int]]:
        """Each feature file to read, by ``source_id``: (url, change key, size); of several
        versions of one Argo profile, the best mode's."""
        best: dict[str, tuple[int, str, str | None, int]] = {}
        for url, info in list_sources(self.patterns, self.storage_options).items():
            ident, rank = source_id(redact(url))
            seen = listed(url, info)
            size = seen.size or 0
            if ident not in best or rank > best[ident][0]:
                best[ident] = (rank, url, seen.key, size)
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
        record = {ident: key for ident, (_, key, _) in files.items()}
        summary = f"{len(files)} file(s)"
        if before:
            summary += f", {len(read)} new or changed, {len(gone)} removed"
        yield SourcePlan(
            label=self.label,
            summary=summary,
            parts=_parts(read, workers),
            reader=FileRows(dict(self.storage_options)),
            key=["source_id"],
            record={"kind": "netcdf", "files": record},
            lon="longitude",
            lat="latitude",
            removed=pa.table({"source_id": pa.array(gone, pa.string())}),
        )
