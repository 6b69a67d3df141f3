"""What the scans of a cube's source files found, kept so that a build rescans only files
that are new or have changed.

Scanning opens every source file for its time axis, variable schema and grid digests:
5 ms a file on local disk, a few round trips each on object storage. A daily product
with ten years of files would rescan 3,650 files to append one day. Instead each build
records its scans in ``<dataset>/.source-scans.jsonl.gz``, gzipped JSON Lines::

    {"format": "lake-source-scans/1", "variables": null}
    {"key": "<sha256 of url, size and version>", "info": {...what the scan found}}

A file's listing (one LIST, not one request per file) gives its size and a version: the
ETag on object storage, the modification time on local disk. A file whose URL, size and
version match an entry is not opened again; any other file is. The URL is hashed, so
credentials in it never reach the lake. A build that scans with another ``variables``
selection, or a record in another format, ignores the record and rescans; so does a
record that cannot be read (it is a cache: nothing depends on it but speed). The record
is replaced after a build that published new time steps, and only when its entries
changed; a build that publishes nothing writes nothing, the record included.
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
from typing import TYPE_CHECKING, Literal

import numpy as np
import orjson
from pydantic import BaseModel

from lake.cubes.source import SourceFile, VariableSchema
from lake.sourcefiles import Listed

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from lake.storage import Root

log = logging.getLogger(__name__)

SCANS = ".source-scans.jsonl.gz"
FORMAT = "lake-source-scans/1"
"""Change it whenever :func:`lake.cubes.netcdf.scan_file` learns something new."""


SchemaDoc = tuple[list[str], list[int], str, list[tuple[str, str]], str, bool]
"""A variable's schema in the record: (dims, shape, dtype, packing, source name, read
directly)."""


class ScanHeader(BaseModel):
    """The record's first line: its format and the ``variables`` selection scanned."""

    format: Literal["lake-source-scans/1"]
    variables: list[str] | None = None
    time: str | None = None
    """The time axis scanned along (records from before it was chosen: None)."""


class DatetimeTimes(BaseModel):
    """Times as integers in their own ``datetime64`` unit."""

    datetime64: str
    values: list[int]


class CftimeTimes(BaseModel):
    """Times of a non-standard calendar: each date's fields."""

    cftime: list[list[int]]
    calendar: str = "standard"
    has_year_zero: bool = False


class ScannedFile(BaseModel):
    """What the scan of one file found (its URL is the entry's hashed key, never kept)."""

    times: DatetimeTimes | CftimeTimes
    time_units: str
    calendar: str
    variables: dict[str, SchemaDoc]
    statics: dict[str, str]
    size: int
    dropped: list[str] = []
    """Variables along other time axes, left out of the cube."""


class ScanEntry(BaseModel):
    """One line after the header: a file's key (sha256 of URL, size, version), its scan."""

    key: str
    info: ScannedFile


# Listing fields that change whenever an object's or a file's content does, best first.
@dataclasses.dataclass
class ScanRecord:
    """The scans a build may reuse, by :attr:`Listed.key`."""

    variables: list[str] | None
    infos: dict[str, SourceFile]
    time: str | None = None

    def reuse(self, files: Sequence[Listed]) -> tuple[dict[str, SourceFile], list[Listed]]:
        """The scans to reuse, by URL, and the files to scan."""
        reused: dict[str, SourceFile] = {}
        rescan: list[Listed] = []
        for file in files:
            info = self.infos.get(file.key) if file.key else None
            if info is None:
                rescan.append(file)
            else:
                reused[file.url] = dataclasses.replace(info, url=file.url)
        return reused, rescan


def read(
    root: Root, dataset: str, variables: Sequence[str] | None, time: str | None = None
) -> ScanRecord:
    """The record of ``dataset``'s scans; empty if absent, unreadable or made otherwise
    (another ``variables`` selection, another time axis)."""
    wanted = sorted(variables) if variables else None
    empty = ScanRecord(wanted, {}, time)
    path = root.path(dataset, SCANS)
    try:
        lines = gzip.decompress(root.fs().cat_file(path)).splitlines()
        if orjson.loads(lines[0]).get("format") != FORMAT:
            return empty  # another version's record: rescan
        header = ScanHeader.model_validate_json(lines[0])
        if header.variables != wanted or header.time != time:
            return empty
        infos = {}
        for line in lines[1:]:
            entry = ScanEntry.model_validate_json(line)
            infos[entry.key] = _info_from(entry.info)
    except FileNotFoundError:
        return empty
    except Exception as exc:  # a damaged cache costs a rescan, never a build
        log.warning("%s/%s: unreadable (%s: %s); rescanning every source file",
                    root.display, f"{dataset}/{SCANS}", type(exc).__name__, exc)  # fmt: skip
        return empty
    return ScanRecord(wanted, infos, time)


def write(root: Root, dataset: str, record: ScanRecord, files: Iterable[Listed],
          infos: Mapping[str, SourceFile]) -> bool:  # fmt: skip
    """Record the scans of ``files`` (``infos`` by URL) unless the record already holds
    exactly these; True if it was written."""
    entries = {f.key: infos[f.url] for f in files if f.key and f.url in infos}
    if entries.keys() == record.infos.keys():
        return False
    header = ScanHeader(format=FORMAT, variables=record.variables, time=record.time)
    lines = [header.model_dump_json(exclude={"time"} if record.time is None else None).encode()]
    lines += [ScanEntry(key=key, info=_info_doc(info)).model_dump_json().encode()
              for key, info in sorted(entries.items())]  # fmt: skip
    root.put(root.path(dataset, SCANS), gzip.compress(b"\n".join(lines) + b"\n", mtime=0))
    return True


def _info_doc(info: SourceFile) -> ScannedFile:
    return ScannedFile(
        times=_times_doc(info.times),
        time_units=info.time_units,
        calendar=info.calendar,
        variables={name: _schema_doc(v) for name, v in info.variables.items()},
        statics=info.statics,
        size=info.size,
        dropped=list(info.dropped),
    )


def _info_from(doc: ScannedFile) -> SourceFile:
    return SourceFile(
        url="",
        times=_times_from(doc.times),
        time_units=doc.time_units,
        calendar=doc.calendar,
        variables={name: _schema_from(v) for name, v in doc.variables.items()},
        statics=doc.statics,
        size=doc.size,
        dropped=tuple(doc.dropped),
    )


def _schema_doc(v: VariableSchema) -> SchemaDoc:
    packing = [(k, value) for k, value in v.packing]
    return list(v.dims), list(v.shape), v.dtype, packing, v.source_name, v.direct


def _schema_from(doc: SchemaDoc) -> VariableSchema:
    dims, shape, dtype, packing, source_name, direct = doc
    return VariableSchema(tuple(dims), tuple(shape), dtype, tuple(packing), source_name, direct)


def _times_doc(times: np.ndarray) -> DatetimeTimes | CftimeTimes:
    """Times exactly: integers in their own datetime64 unit, or each cftime date's fields."""
    if times.dtype.kind == "M":
        unit = np.datetime_data(times.dtype)[0]
        return DatetimeTimes(datetime64=unit, values=times.astype(np.int64).tolist())
    first = times[0] if len(times) else None
    fields = [[t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond] for t in times]
    return CftimeTimes(
        cftime=fields,
        calendar=getattr(first, "calendar", "standard"),
        has_year_zero=bool(getattr(first, "has_year_zero", False)),
    )


def _times_from(doc: DatetimeTimes | CftimeTimes) -> np.ndarray:
    if isinstance(doc, DatetimeTimes):
        return np.asarray(doc.values, dtype=np.int64).astype(f"datetime64[{doc.datetime64}]")
    import cftime

    dates = [cftime.datetime(*fields, calendar=doc.calendar, has_year_zero=doc.has_year_zero)
             for fields in doc.cftime]  # fmt: skip
    out = np.empty(len(dates), dtype=object)
    out[:] = dates
    return out
