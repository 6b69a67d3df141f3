"""The Darwin Core archive table source (``table: {dwca: PATH_OR_URL}``): IPT exports of
occurrences or sampling events, one row per occurrence.

The archive's ``meta.xml`` is read with python-dwca-reader; its data files are then
streamed with Arrow's CSV reader, as ``meta.xml`` declares them (delimiter, quotes,
encoding, header lines, default values). Columns are named by term (``occurrenceID``,
``scientificName``, ``eventDate``, ``decimalLatitude``...) and hold the archive's text,
except the coordinate, depth and elevation terms, which are numbers (a text that is not
one is a null, and a row without valid coordinates gets a null geometry). Each row also
gets ``time`` and ``time_end``: the start and end of its ``eventDate`` (an ISO 8601 date,
partial date or interval), else of its ``year``/``month``/``day``; a date that does not
parse stays as text, is counted, and leaves ``time`` empty.

An event core with an occurrence extension gives the occurrences, each with its event's
terms; date, coordinates and depth come from the nearest event up the ``parentEventID``
chain that has them. An occurrence core gives its rows; an event core alone, its events.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from lake.errors import SourceError
from lake.sourcefiles import read_errors
from lake.storage import is_local, redact
from lake.tables.byfile import ByFileReader
from lake.tables.eml import eml_metadata
from lake.tables.isodates import STAMP, parse_column
from lake.tables.source import COUNTED

if TYPE_CHECKING:
    from dwca.descriptors import DataFileDescriptor
    from dwca.read import DwCAReader

OCCURRENCE = "http://rs.tdwg.org/dwc/terms/Occurrence"
MEASUREMENTS = ("http://rs.iobis.org/obis/terms/ExtendedMeasurementOrFact",
                "http://rs.tdwg.org/dwc/terms/MeasurementOrFact")  # fmt: skip
MEASUREMENTS_TABLE = "measurements"
"""The second table of an archive with measurements or facts (eMoF, MoF)."""
EVENT = "http://rs.tdwg.org/dwc/terms/Event"
NUMBERS = (
    "decimalLatitude", "decimalLongitude", "coordinateUncertaintyInMeters",
    "coordinatePrecision", "minimumDepthInMeters", "maximumDepthInMeters",
    "minimumElevationInMeters", "maximumElevationInMeters",
    "minimumDistanceAboveSurfaceInMeters", "maximumDistanceAboveSurfaceInMeters",
)  # fmt: skip
"""Terms stored as numbers (float64); every other term keeps the archive's text."""
INHERITED = (
    ("eventDate", "year", "month", "day", "eventTime", "startDayOfYear", "endDayOfYear"),
    ("decimalLatitude", "decimalLongitude", "geodeticDatum", "coordinateUncertaintyInMeters"),
    ("minimumDepthInMeters", "maximumDepthInMeters"),
)
"""Groups of terms an occurrence takes, together, from its nearest event that has them."""
_NUMBER = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"
ARCHIVE_FIX = "re-download the archive or export it again from the IPT"
BLOCK_BYTES = 16 * 2**20


def term_name(term: str) -> str:
    """``http://rs.tdwg.org/dwc/terms/eventDate`` → ``eventDate``."""
    return term.rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1]


@contextlib.contextmanager
def _local(url: str, storage_options: dict[str, Any]) -> Iterator[str]:
    """A local path of the archive (a remote one is downloaded to a temporary file)."""
    if is_local(url):
        yield url.removeprefix("file://")
        return
    with tempfile.TemporaryDirectory(prefix="lake-dwca-") as tmp:
        target = os.path.join(tmp, url.rsplit("/", 1)[-1] or "archive.zip")
        with fsspec.open(url, "rb", **storage_options) as src, open(target, "wb") as dst:
            while chunk := src.read(BLOCK_BYTES):
                dst.write(chunk)
        yield target


@contextlib.contextmanager
def open_archive(path: str, shown: str) -> Iterator[DwCAReader]:
    from dwca.read import DwCAReader

    try:
        archive = DwCAReader(path)
    except FileNotFoundError as exc:
        if not os.path.exists(path):
            raise SourceError(shown, "does not exist", "check the `dwca` path or URL") from None
        inside = os.path.basename(str(exc.filename or "")) or "a data file"
        raise SourceError(
            f"{shown}: {inside}", "is named by meta.xml but is not in the archive", ARCHIVE_FIX
        ) from None
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        raise SourceError(
            f"{shown}: meta.xml",
            f"does not describe the archive as the Darwin Core text guide requires "
            f"({type(exc).__name__}: {redact(str(exc))})",
            "give each core and extension its `encoding`, `fieldsTerminatedBy`, `rowType` and "
            "files (export the archive again from the IPT)",
        ) from None
    except Exception as exc:
        raise SourceError(
            shown,
            f"cannot be read as a Darwin Core archive, it may be truncated or corrupt "
            f"({type(exc).__name__}: {redact(str(exc))})",
            ARCHIVE_FIX,
        ) from None
    try:
        yield archive
    finally:
        archive.close()


LINK = "__id"
"""The id column of the core (and the core id column of an extension) while reading."""


def _columns(desc: DataFileDescriptor) -> tuple[dict[int, str], dict[str, str]]:
    """Column index → name (the id or core id column named :data:`LINK`), and the default
    value of each term that declares one (for a term without a column, or its empty cells)."""
    names: dict[int, str] = {}
    defaults: dict[str, str] = {}
    for entry in desc.fields:
        name = term_name(str(entry["term"]))
        if entry.get("index") is not None:
            names[int(entry["index"])] = name
        if entry.get("default") is not None:
            defaults[name] = str(entry["default"])
    own = desc.id_index if desc.represents_corefile else desc.coreid_index
    if own is not None:
        if int(own) in names:  # the id is also a term's column: read it twice
            names[-1 - int(own)] = LINK
        else:
            names[int(own)] = LINK
    return names, defaults


def read_data_file(archive: DwCAReader, desc: DataFileDescriptor, shown: str) -> Iterator[pa.Table]:
    """One data file of the archive, as ``meta.xml`` declares it, in blocks of text
    columns named by term."""
    location = str(desc.file_location)
    label = f"{shown}: {location}"
    path = archive.absolute_temporary_path(location)
    if not os.path.exists(path):
        raise SourceError(label, "is named by meta.xml but is not in the archive", ARCHIVE_FIX)
    names, defaults = _columns(desc)
    delimiter = desc.fields_terminated_by or "\t"
    with open(path, encoding=desc.file_encoding or "utf-8", errors="replace") as handle:
        for _ in range(desc.lines_to_ignore or 0):
            handle.readline()
        first = handle.readline().rstrip("\r\n")
    indexes = {i if i >= 0 else -1 - i for i in names}
    quote = desc.fields_enclosed_by or None
    split = csv.reader([first], delimiter=delimiter, quotechar=quote,
                       quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE)  # fmt: skip
    width = max(len(next(split)) if first else 0, max(indexes, default=-1) + 1)
    column_names = [f"f{i}" for i in range(width)]
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(
                skip_rows=desc.lines_to_ignore or 0, column_names=column_names,
                encoding=desc.file_encoding or "utf8", block_size=BLOCK_BYTES,
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, quote_char=desc.fields_enclosed_by or False,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(column_names, pa.string()),
                strings_can_be_null=False, include_columns=[f"f{i}" for i in sorted(indexes)],
            ),
        )  # fmt: skip
        for batch in reader:
            table = pa.Table.from_batches([batch]).rename_columns(
                [names[int(n[1:])] for n in batch.schema.names]
            )
            twice = [i for i in names if i < 0]
            for i in twice:
                table = table.append_column(LINK, table.column(names[-1 - i]))
            for name, value in defaults.items():
                if name in table.column_names:  # a column with a default: for its empty cells
                    column = table.column(name)
                    filled = pc.if_else(pc.equal(column, ""), value, column)
                    table = table.set_column(table.column_names.index(name), name, filled)
                else:
                    table = table.append_column(
                        name, pa.array([value] * table.num_rows, pa.string())
                    )
            yield table
    except pa.ArrowInvalid as exc:
        raise SourceError(
            label,
            f"does not match its description in meta.xml ({exc})",
            "fix the line, or the delimiter and quote declared in meta.xml",
        ) from None


def _named_id(table: pa.Table, term: str, keep: bool = False) -> pa.Table:
    """The id column as ``term`` when no field declares that term (else dropped, unless
    ``keep``: the join of extension rows needs it)."""
    if LINK not in table.column_names:
        return table
    if term not in table.column_names:
        table = table.append_column(term, table.column(LINK))
    return table if keep else table.drop_columns([LINK])


def _resolve_events(events: pa.Table) -> pa.Table:
    """Events whose date, coordinates and depth come from the nearest event up their
    ``parentEventID`` chain that has them."""
    if "parentEventID" not in events.column_names or "eventID" not in events.column_names:
        return events
    ids = events.column("eventID").to_pylist()
    parents = dict(zip(ids, events.column("parentEventID").to_pylist(), strict=True))
    columns = {name: events.column(name).to_pylist() for name in events.column_names}
    position = {ident: i for i, ident in enumerate(ids)}
    for group in INHERITED:
        present = [name for name in group if name in columns]
        if not present:
            continue
        own = [any(columns[n][i] for n in present) for i in range(len(ids))]
        source = list(range(len(ids)))
        for i, ident in enumerate(ids):
            seen, at = {ident}, i
            while not own[at]:
                parent = parents.get(ids[at])
                if not parent or parent in seen or parent not in position:
                    break
                seen.add(parent)
                at = position[parent]
            source[i] = at
        for name in present:
            columns[name] = [columns[name][j] for j in source]
    return pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})


def _with_events(occurrences: pa.Table, events: pa.Table) -> pa.Table:
    """Occurrences with their event's terms; an occurrence's own value of a group wins."""
    joined = occurrences.join(events, keys=LINK, join_type="left outer",
                              right_suffix="__event", use_threads=False)  # fmt: skip
    for group in INHERITED:
        both = [n for n in group if f"{n}__event" in joined.column_names]
        if not both:
            continue
        # Decided once per group, on the occurrence's own values: the group comes whole
        # from the occurrence if it gives any of it, else whole from the event.
        has_own = functools.reduce(pc.or_, [pc.not_equal(joined.column(n), "") for n in group
                                            if n in occurrences.column_names])  # fmt: skip
        for name in both:
            merged = pc.if_else(has_own, joined.column(name), joined.column(f"{name}__event"))
            joined = joined.set_column(joined.column_names.index(name), name, merged)
    drop = [n for n in joined.column_names if n.endswith("__event")]
    return joined.drop_columns(drop)


def typed(table: pa.Table) -> pa.Table:
    """Numbers for the coordinate, depth and elevation terms; ``time`` and ``time_end``
    from the dates; the count of dates that do not parse in the schema metadata."""
    bad_numbers = 0
    for name in NUMBERS:
        if name not in table.column_names:
            if name in ("decimalLatitude", "decimalLongitude"):
                table = table.append_column(name, pa.nulls(table.num_rows, pa.float64()))
            continue
        text = table.column(name)
        valid = pc.match_substring_regex(text, _NUMBER)
        bad_numbers += pc.sum(pc.and_(pc.invert(valid), pc.not_equal(text, ""))).as_py() or 0
        number = pc.if_else(valid, pc.utf8_trim_whitespace(text), None).cast(pa.float64())
        table = table.set_column(table.column_names.index(name), name, number)
    dates = _date_texts(table)
    start, end, unparsed = parse_column(dates)
    table = table.append_column("time", start.cast(STAMP))
    table = table.append_column("time_end", end.cast(STAMP))
    return table.replace_schema_metadata({
        f"{COUNTED}unparsed_dates".encode(): str(unparsed).encode(),
        f"{COUNTED}unparsed_numbers".encode(): str(bad_numbers).encode(),
    })  # fmt: skip


def _date_texts(table: pa.Table) -> pa.ChunkedArray:
    """Each row's date as text: its ``eventDate``, else ``year[-month[-day]]``."""
    n = table.num_rows
    empty = pa.chunked_array([pa.array([""] * n, pa.string())])
    event = table.column("eventDate") if "eventDate" in table.column_names else empty
    if "year" not in table.column_names:
        return event
    year = pc.utf8_trim_whitespace(table.column("year"))
    parts = year
    for name in ("month", "day"):
        if name not in table.column_names:
            break
        value = pc.utf8_trim_whitespace(table.column(name))
        value = pc.utf8_lpad(value, 2, "0")
        joined = pc.binary_join_element_wise(parts, value, "-")
        parts = pc.if_else(pc.equal(value, "00"), parts, joined)
    return pc.if_else(pc.equal(event, ""), parts, event)


def _measurements(archive: DwCAReader, shown: str) -> Iterator[pa.Table]:
    """The archive's measurements or facts, each with the id, date, coordinates and depth
    of its core record (an event's as resolved up its hierarchy)."""
    core = archive.descriptor.core
    extension = next((e for e in archive.descriptor.extensions if e.type in MEASUREMENTS), None)
    if extension is None:
        return
    own = "eventID" if core.type == EVENT else "occurrenceID"
    blocks = list(read_data_file(archive, core, shown))
    if not blocks:
        return
    records = _named_id(pa.concat_tables(blocks), own, keep=True)
    if core.type == EVENT:
        records = _resolve_events(records)
    wanted = [LINK, own, *(n for group in INHERITED for n in group)]
    records = records.select([n for n in dict.fromkeys(wanted) if n in records.column_names])
    for block in read_data_file(archive, extension, shown):
        joined = block.join(records, keys=LINK, join_type="left outer", right_suffix="__core",
                            use_threads=False)  # fmt: skip
        theirs = [n for n in joined.column_names if n.endswith("__core")]  # the row's own win
        yield typed(joined.drop_columns([LINK, *theirs]))


@dataclass(frozen=True)
class ArchiveHead:
    """What an archive's ``meta.xml`` and EML say, read without unpacking its data files."""

    extensions: list[str]
    """The row types of its extensions."""
    eml: Any = None
    """Its EML document (an ElementTree element), or None."""


def archive_head(url: str, storage_options: dict[str, Any]) -> ArchiveHead:
    """The ``meta.xml`` and EML of an archive (of a remote zip, only its directory and these
    two members are read); empty when they cannot be read (the build's read says why)."""
    import xml.etree.ElementTree as ET
    import zipfile

    def parsed(data: bytes | None) -> Any:
        try:
            return ET.fromstring(data) if data else None
        except ET.ParseError:
            return None

    def eml_name(meta: Any) -> str:
        return str(meta.get("metadata") or "eml.xml") if meta is not None else "eml.xml"

    try:
        with fsspec.open(url, "rb", **storage_options) as handle, zipfile.ZipFile(handle) as zf:
            meta = parsed(zf.read("meta.xml"))
            name = eml_name(meta)
            eml = parsed(zf.read(name)) if name in zf.namelist() else None
    except (IsADirectoryError, zipfile.BadZipFile, KeyError, OSError):
        folder = url.rstrip("/")
        try:
            with fsspec.open(f"{folder}/meta.xml", "rb", **storage_options) as handle:
                meta = parsed(handle.read())
        except OSError:
            return ArchiveHead([])
        try:
            with fsspec.open(f"{folder}/{eml_name(meta)}", "rb", **storage_options) as handle:
                eml = parsed(handle.read())
        except OSError:
            eml = None
    if meta is None:
        return ArchiveHead([], eml)
    types = [str(e.get("rowType")) for e in meta.iter() if e.tag.endswith("extension")]
    return ArchiveHead(types, eml)


def read_dwca_rows(url: str, storage_options: dict[str, Any], rows: str = "") -> Iterator[pa.Table]:
    """The rows of one archive, in blocks: its occurrences (or events), or with ``rows``
    ``measurements``, its measurements or facts."""
    shown = redact(url)
    with (
        read_errors(url, "a Darwin Core archive", ARCHIVE_FIX, "check the `dwca` path or URL"),
        _local(url, storage_options) as path,
        open_archive(path, shown) as archive,
    ):
        if rows == MEASUREMENTS_TABLE:
            yield from _measurements(archive, shown)
            return
        core = archive.descriptor.core
        extension = next((e for e in archive.descriptor.extensions
                          if e.type == OCCURRENCE), None)  # fmt: skip
        if core.type == EVENT and extension is not None:
            blocks = list(read_data_file(archive, core, shown))
            events = _named_id(pa.concat_tables(blocks), "eventID", keep=True) if blocks \
                else None  # fmt: skip
            if events is not None:
                events = _resolve_events(events)
            for block in read_data_file(archive, extension, shown):
                joined = _with_events(block, events) if events is not None else block
                yield typed(joined.drop_columns([LINK]))
            return
        own = "eventID" if core.type == EVENT else "occurrenceID"
        for block in read_data_file(archive, core, shown):
            yield typed(_named_id(block, own))


class DwcaReader(ByFileReader):
    """Darwin Core archives (``table: {dwca: ...}``)."""

    kind: ClassVar[str] = "dwca"
    title: ClassVar[str] = "Darwin Core archive"
    point: ClassVar[tuple[str, str]] = ("decimalLongitude", "decimalLatitude")
    read_file = staticmethod(read_dwca_rows)

    @functools.cached_property
    def head(self) -> ArchiveHead:
        """The first archive's ``meta.xml`` and EML (read once per reader)."""
        first = self.first_file
        return archive_head(first, self.storage_options) if first else ArchiveHead([])

    def source_metadata(self) -> dict[str, Any]:
        return eml_metadata(self.head.eml)

    def subtables(self) -> list[str]:
        """``measurements`` when the first archive has a (extended) measurement or fact
        extension: its rows become the collection's second table."""
        return [MEASUREMENTS_TABLE] if set(self.head.extensions) & set(MEASUREMENTS) else []
