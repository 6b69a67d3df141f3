"""A table dataset on storage: its manifest, the files it lists, and the commit.

Layout below the root::

    <dataset>/table.json                      the manifest: the commit point
    <dataset>/data/year=2015/part-<run>-<n>.parquet
    <dataset>/.staging/<run>/...              work in progress (ignored by readers)

The manifest lists every published file with its partition, rows, size, sha256, bbox and
time range, and keeps the source's watermark. Files are listed last, in the order of their
item's id (then path), so that a reader can stream them partition by partition with
`stream_manifest` instead of holding them all. A build writes new files under
``.staging``, then commits: move the new files into ``data/``, write the manifest (one
atomic PUT or rename), delete the staging folder. Files the manifest no longer lists are
deleted only once the published catalogue no longer points at them either (after the
catalogue is rewritten, or at the start of the next build), so a build killed between the
manifest and the catalogue leaves both readable. A build killed before the manifest write
leaves the old manifest valid; files in ``data/`` that nothing lists are removed later.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lake.errors import TargetError
from lake.tables.files import TableFile
from lake.tables.partitions import item_name

if TYPE_CHECKING:
    from collections.abc import Set

    from lake.storage import Root

MANIFEST = "table.json"
FORMAT = "lake-table/1"


class _Document(BaseModel):
    # Fields added by later versions are ignored by this one; missing ones take defaults.
    model_config = ConfigDict(extra="ignore")


class FileEntry(_Document):
    """One published file, as the manifest lists it."""

    path: str
    partition: dict[str, str | None]
    rows: int
    bytes: int
    sha256: str
    bbox: list[float] | None
    geometry_types: list[str]
    time: list[str | None]
    null_geometries: int = 0
    """Rows without a geometry (absent in manifests from before it was kept)."""
    platforms: list[str] = Field(default_factory=list)
    """The platform ids of the file's rows (tables with a platform column)."""

    @classmethod
    def of(cls, info: TableFile) -> FileEntry:
        return cls(path=info.path, partition=info.partition, rows=info.rows, bytes=info.bytes,
                   sha256=info.sha256, bbox=info.bbox, geometry_types=info.geometry_types,
                   time=info.time, null_geometries=info.invalid,
                   platforms=info.platforms)  # fmt: skip

    def info(self) -> TableFile:
        return TableFile(
            self.path, self.partition, self.rows, self.bytes, self.sha256, self.bbox,
            self.geometry_types, self.time, self.null_geometries, list(self.platforms),
        )  # fmt: skip


class WatermarkEntry(_Document):
    """The largest watermark value read, with its type (so that it reads back exactly)."""

    column: str
    value: Any = None
    type: str = "null"


class ManifestDocument(_Document):
    """``<dataset>/table.json``, format ``lake-table/1`` (every manifest published so far).

    ``files`` comes last, in item order, so that readers can stream it.
    """

    format: Literal["lake-table/1"]
    dataset: str
    updated: str = ""
    version: str = ""
    """A new random id at every commit (empty in manifests from before it was kept)."""
    source: dict[str, Any] = Field(default_factory=dict)
    partitioning: list[str] = Field(default_factory=list)
    geometry_column: str = "geometry"
    time_column: str | None = None
    """The column that dates a row (absent in manifests from before it was kept)."""
    key: list[str] = Field(default_factory=list)
    watermark: WatermarkEntry | None = None
    rows: int = 0
    bytes: int | None = None
    """Total size of the files (None in manifests from before it was recorded)."""
    files: list[FileEntry] = Field(default_factory=list)


@dataclass
class Manifest:
    dataset: str
    files: list[TableFile] = field(default_factory=list)
    watermark: Any = None
    watermark_column: str | None = None
    key: list[str] = field(default_factory=list)
    partitioning: list[str] = field(default_factory=list)
    geometry_column: str = "geometry"
    source: dict[str, Any] = field(default_factory=dict)
    time_column: str | None = None
    updated: str = ""
    version: str = ""
    """A new random id at every commit (empty in manifests from before it was kept)."""

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    def document(self) -> ManifestDocument:
        mark = None
        if self.watermark_column is not None:
            mark = WatermarkEntry(column=self.watermark_column, **encode_value(self.watermark))
        return ManifestDocument(
            format=FORMAT,
            dataset=self.dataset,
            updated=self.updated,
            version=self.version,
            source=self.source,
            partitioning=self.partitioning,
            geometry_column=self.geometry_column,
            time_column=self.time_column,
            key=self.key,
            watermark=mark,
            rows=self.rows,
            bytes=sum(f.bytes for f in self.files),
            files=[FileEntry.of(f) for f in sorted(self.files, key=file_order)],
        )

    def to_json(self) -> dict[str, Any]:
        """The manifest document as JSON values."""
        return self.document().model_dump(mode="json")

    @classmethod
    def of(cls, doc: ManifestDocument) -> Manifest:
        mark = doc.watermark
        return cls(
            dataset=doc.dataset,
            files=[f.info() for f in doc.files],
            watermark=decode_value(mark.model_dump()) if mark else None,
            watermark_column=mark.column if mark else None,
            key=list(doc.key),
            partitioning=list(doc.partitioning),
            geometry_column=doc.geometry_column,
            source=dict(doc.source),
            time_column=doc.time_column,
            updated=doc.updated,
            version=doc.version,
        )


def file_order(info: TableFile) -> tuple[str, str]:
    """The order of a manifest's files: by item (partition) id, then path."""
    return item_name(info.key), info.path


@dataclass
class ManifestStream:
    """A manifest read without holding its files: the header, and the files on demand."""

    header: Manifest
    """Every field but ``files`` (empty here)."""
    rows: int
    bytes: int | None
    """Total size of the files (None in manifests from before it was recorded)."""
    root: Root
    dataset: str

    def files(self) -> Iterator[TableFile]:
        """The files, one at a time, in the order they are listed (one more read)."""
        import ijson

        with self.root.fs().open(self.root.path(self.dataset, MANIFEST), "rb") as handle:
            for doc in ijson.items(handle, "files.item", use_float=True):
                yield FileEntry.model_validate(doc).info()


def stream_manifest(root: Root, dataset: str) -> ManifestStream | None:
    """The manifest's header, read up to its file list; `ManifestStream.files` streams the
    rest. Memory does not grow with the number of files."""
    import ijson

    doc: dict[str, Any] = {}
    try:
        with root.fs().open(root.path(dataset, MANIFEST), "rb") as handle:
            key, builder = "", None
            for prefix, event, value in ijson.parse(handle, use_float=True):
                if prefix == "" and event == "map_key":
                    if value == "files":
                        break
                    key, builder = value, ijson.ObjectBuilder()
                elif builder is not None:
                    builder.event(event, value)
                    # The key's value is complete at its own end (a map or a list) or, for
                    # a scalar, at once; keys inside a nested map share its prefix.
                    if prefix == key and event not in ("start_map", "start_array", "map_key"):
                        doc[key], builder = builder.value, None
    except FileNotFoundError:
        return None
    except ijson.JSONError:
        doc = {}
    parsed = _parse(root, dataset, {**doc, "files": []})
    return ManifestStream(Manifest.of(parsed), parsed.rows, parsed.bytes, root, dataset)


def _parse(root: Root, dataset: str, doc: Any) -> ManifestDocument:
    try:
        return ManifestDocument.model_validate(doc)
    except ValidationError:
        raise TargetError(
            f"{root.display}/{dataset}/{MANIFEST}",
            "is not a table manifest this version can extend",
            "move the dataset folder away or pick another dataset id",
        ) from None


def encode_value(value: Any) -> dict[str, Any]:
    if value is None:
        return {"value": None, "type": "null"}
    if isinstance(value, datetime):
        return {"value": value.isoformat(), "type": "timestamp"}
    if isinstance(value, date):
        return {"value": value.isoformat(), "type": "date"}
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return {"value": str(value), "type": "text"}
    return {"value": value, "type": type(value).__name__}


def decode_value(doc: dict[str, Any]) -> Any:
    kind, value = doc.get("type"), doc.get("value")
    if value is None:
        return None
    if kind == "timestamp":
        return datetime.fromisoformat(value)
    if kind == "date":
        return date.fromisoformat(value)
    return value


def read_manifest(root: Root, dataset: str) -> Manifest | None:
    try:
        doc = root.read_json(dataset, MANIFEST)
    except FileNotFoundError:
        return None
    return Manifest.of(_parse(root, dataset, doc))


def clean(
    root: Root, dataset: str, manifest: Manifest | None, keep: Set[str] = frozenset()
) -> list[str]:
    """Remove staging folders and data files listed neither in ``manifest`` nor in ``keep``
    (paths relative to the dataset folder: the files the published catalogue points at)."""
    fs = root.fs()
    removed: list[str] = []
    staging = root.path(dataset, ".staging")
    if fs.exists(staging):
        fs.rm(staging, recursive=True)
        removed.append(staging)
    data = root.path(dataset, "data")
    listed = {root.path(dataset, p) for p in keep}
    listed |= {root.path(dataset, f.path) for f in (manifest.files if manifest else [])}
    if fs.exists(data):
        orphans = [p for p in fs.find(data) if p.endswith(".parquet") and p not in listed]
        if orphans:
            fs.rm(orphans)
            removed.extend(orphans)
    if root.local:
        _remove_empty_dirs(root, dataset)
    return removed


def commit(
    root: Root, staging: str, new: Manifest, old: Manifest | None, keep: Set[str] = frozenset()
) -> None:
    """Move staged files into place and write the manifest; drop replaced files that the
    published catalogue does not list in ``keep`` (the rest go once it is rewritten)."""
    fs = root.fs()
    kept = {f.path for f in new.files} | set(keep)
    published = {f.path for f in old.files} if old is not None else set()
    for info in new.files:
        if info.path in published:
            continue  # kept from the previous version; files of this run have new names
        target = root.path(new.dataset, info.path)
        if root.local:
            fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        fs.mv(root.path(staging, info.path), target)
    new.updated = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    new.version = uuid.uuid4().hex
    root.put(root.path(new.dataset, MANIFEST), json.dumps(new.to_json(), indent=1).encode())
    if old is not None:
        gone = [root.path(old.dataset, f.path) for f in old.files if f.path not in kept]
        if gone:
            fs.rm(gone)
    if fs.exists(root.path(staging)):
        fs.rm(root.path(staging), recursive=True)
    if root.local:
        _remove_empty_dirs(root, new.dataset)


def _remove_empty_dirs(root: Root, dataset: str) -> None:
    import os

    data = root.path(dataset, "data")
    folders = [folder for folder, _, _ in os.walk(data, topdown=False) if folder != data]
    for folder in [*folders, root.path(dataset, ".staging")]:
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # only succeeds on an empty folder
