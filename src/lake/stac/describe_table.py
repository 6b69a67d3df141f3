"""A table's collection and its items (one per partition), streamed from its manifest."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from lake.stac.describe import (
    EXT,
    MEDIA_PARQUET,
    SAMPLE_FILES,
    STAC_VERSION,
    Description,
    geometry_of,
    iso_text,
)
from lake.tables.files import MAX_PLATFORMS, TableFile
from lake.tables.manifest import file_order, stream_manifest
from lake.tables.partitions import item_name

if TYPE_CHECKING:
    from lake.spec import Dataset
    from lake.stac.thumbnails import Picture
    from lake.storage import Root


COLUMN_METADATA = {"long_name": "description", "units": "unit", "standard_name": "standard_name",
                   "flag_values": "flag_values", "flag_meanings": "flag_meanings",
                   "source_name": "source_name"}  # fmt: skip
"""Column metadata in the files (a NetCDF variable's attributes) → keys of its entry in
``table:columns``."""


def _column(field: Any) -> dict[str, str]:
    out = {"name": field.name, "type": str(field.type)}
    meta = {k.decode(): v.decode("utf-8", "replace") for k, v in (field.metadata or {}).items()}
    for key, name in COLUMN_METADATA.items():
        if meta.get(key):
            out[name] = meta[key]
    return out


def _columns(root: Root, dataset: str, first: TableFile | None) -> list[dict[str, str]]:
    import pyarrow.parquet as pq

    if first is None:
        return []
    with root.fs().open(root.path(dataset, first.path), "rb") as handle:
        schema = pq.read_schema(handle)
    columns = [_column(f) for f in schema]
    for name in first.partition:
        columns.append({"name": name, "type": "partition (from the folder name)"})
    return columns


@dataclass
class _Overview:
    """What the collection needs from every file of a manifest, gathered in one pass."""

    first: TableFile | None = None
    bbox: list[float] | None = None
    start: str | None = None
    end: str | None = None
    types: set[str] = field(default_factory=set)
    platforms: set[str] = field(default_factory=set)
    """The platforms of the rows (up to :data:`MAX_PLATFORMS`), for the summaries."""
    with_bbox: int = 0
    sample: list[TableFile] = field(default_factory=list)
    """Files with a bbox, evenly spread over all of them, for the thumbnail."""
    stride: int = 1
    ordered: bool = True
    """Files come grouped by partition in item-id order (manifests written since the
    order was fixed); older ones are sorted in memory."""

    def add(self, info: TableFile, previous: TableFile | None) -> None:
        if self.first is None:
            self.first = info
        if info.bbox:
            if self.with_bbox % self.stride == 0:  # keep every stride-th, halving as it fills
                self.sample.append(info)
                if len(self.sample) == 2 * SAMPLE_FILES:
                    self.sample, self.stride = self.sample[::2], self.stride * 2
            self.with_bbox += 1
            box = info.bbox
            if self.bbox is None:
                self.bbox = [float(v) for v in box]
            else:  # in place: this runs once per file
                bbox = self.bbox
                bbox[0], bbox[1] = min(bbox[0], box[0]), min(bbox[1], box[1])
                bbox[2], bbox[3] = max(bbox[2], box[2]), max(bbox[3], box[3])
        if info.time and info.time[0]:
            self.start = min(self.start or info.time[0], info.time[0])
        if info.time and info.time[1]:
            self.end = max(self.end or info.time[1], info.time[1])
        self.types.update(info.geometry_types)
        if len(self.platforms) < MAX_PLATFORMS:
            self.platforms.update(info.platforms)
        if previous is not None and file_order(previous) > file_order(info):
            self.ordered = False


def _read_back(read: IO[bytes]) -> Iterator[TableFile]:
    """The files the first pass kept (see :func:`describe_table`)."""
    import orjson

    with read:
        read.seek(0)
        for line in read:
            yield TableFile(**orjson.loads(line))


def _multihash(sha256_hex: str) -> str:
    return "1220" + sha256_hex


def _union(boxes: list[list[float] | None]) -> list[float] | None:
    real = [b for b in boxes if b]
    if not real:
        return None
    if len(real) == 1:
        return [float(v) for v in real[0]]
    return [float(min(b[0] for b in real)), float(min(b[1] for b in real)),
            float(max(b[2] for b in real)), float(max(b[3] for b in real))]  # fmt: skip


def _to_wgs84(bbox: list[float] | None, srid: int | None) -> list[float] | None:
    if bbox is None or srid in (None, 4326, 4258):
        return bbox
    from pyproj import Transformer

    transformer = Transformer.from_crs(f"EPSG:{srid}", "OGC:CRS84", always_xy=True)
    out = transformer.transform_bounds(bbox[0], bbox[1], bbox[2], bbox[3])
    if not all(math.isfinite(v) for v in out):
        return None
    return [float(v) for v in out]


SECOND_TABLES = {"measurements": "Measurements or facts of the rows (Darwin Core eMoF), "
                                  "with their records' date and position"}  # fmt: skip
"""Second tables a dataset's folder may hold, by folder name (see
:func:`lake.flows.tables.with_subtables`)."""


def _second_tables(root: Root, dataset: str) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """The data and manifest assets of each second table published below the dataset."""
    out = {}
    for name, title in SECOND_TABLES.items():
        manifest = stream_manifest(root, f"{dataset}/{name}")
        if manifest is None:
            continue
        first = next(iter(manifest.files()), None)
        data = {
            "href": f"./{name}/data/", "type": MEDIA_PARQUET, "title": title,
            "roles": ["data"], "table:primary_geometry": manifest.header.geometry_column,
            "table:row_count": manifest.rows,
            "table:columns": _columns(root, f"{dataset}/{name}", first),
        }  # fmt: skip
        listed = {"href": f"./{name}/table.json", "type": "application/json",
                  "title": f"Files of the {name} table", "roles": ["metadata"]}  # fmt: skip
        out[name] = (data, listed)
    return out


def item_id(dataset: str, partition: str) -> str:
    """A path-safe item id from a partition path: ``year=2015/cell=x`` → ``ds.year-2015.cell-x``."""
    return f"{dataset}.{item_name(partition)}" if partition else dataset


def describe_table(root: Root, dataset: Dataset) -> Description | None:
    """The table's collection and items, streamed from its manifest: one pass for the
    collection's extent and summaries, one more for the items, whatever the file count.

    The first pass keeps the files it read in a local temporary file, one JSON line each,
    for the items' first pass: reading them back costs less than half of parsing and
    validating the manifest again."""
    import tempfile

    import orjson

    manifest = stream_manifest(root, dataset.id)
    if manifest is None:
        return None
    header = manifest.header
    srid = header.source.get("crs_srid")
    overview = _Overview()
    previous = None
    cache = tempfile.TemporaryFile()  # noqa: SIM115 - closed when read back
    for info in manifest.files():
        overview.add(info, previous)
        previous = info
        cache.write(orjson.dumps(info) + b"\n")
    read: IO[bytes] | None = cache
    if not overview.ordered:  # sorted from the manifest instead
        cache.close()
        read = None
    columns = _columns(root, dataset.id, overview.first)
    bbox = _to_wgs84(overview.bbox, srid)
    interval = [iso_text(overview.start) if overview.start else None,
                iso_text(overview.end) if overview.end else None]  # fmt: skip
    if interval == [None, None]:
        interval = [header.updated or None, None]
    extensions = [EXT["table"], EXT["file"]] + ([EXT["projection"]] if srid else [])
    primary = header.geometry_column
    assets: dict[str, dict[str, Any]] = {
        "data": {
            "href": "./data/",
            "type": MEDIA_PARQUET,
            "title": "GeoParquet dataset (hive partitions)",
            "roles": ["data"],
            "table:primary_geometry": primary,
            "table:row_count": manifest.rows,
        },
        "manifest": {
            "href": "./table.json",
            "type": "application/json",
            "title": "Files with sizes, checksums, bboxes and time ranges",
            "roles": ["metadata"],
        },
    }
    fields = {"table:columns": columns, "table:primary_geometry": primary,
              "table:row_count": manifest.rows}  # fmt: skip
    tables = _second_tables(root, dataset.id)
    if tables:
        described = [{"name": dataset.id, "description": "the rows of the items"}]
        for name, (asset, listed) in tables.items():
            assets[name] = asset
            assets[f"{name}-manifest"] = listed
            described.append({"name": name, "description": asset["title"]})
        fields["table:tables"] = described
    summaries: dict[str, Any] = {"geometry_types": sorted(overview.types)}
    if overview.platforms:
        summaries["lake:platforms"] = sorted(overview.platforms)[:MAX_PLATFORMS]
    if srid:
        summaries["proj:code"] = [f"EPSG:{srid}"]

    def files() -> Iterator[TableFile]:
        nonlocal read
        if not overview.ordered:
            return iter(sorted(manifest.files(), key=file_order))
        if read is None:  # taken by an earlier pass
            return manifest.files()
        taken, read = read, None
        return _read_back(taken)

    def item(key: str, group: list[TableFile]) -> dict[str, Any]:
        box = _to_wgs84(_union([f.bbox for f in group]), srid)
        starts = [f.time[0] for f in group if f.time and f.time[0]]
        ends = [f.time[1] for f in group if f.time and f.time[1]]
        props: dict[str, Any] = {
            "table:columns": columns,
            "table:primary_geometry": primary,
            "table:row_count": sum(f.rows for f in group),
        }
        platforms = sorted({p for f in group for p in f.platforms})
        if platforms:
            props["lake:platforms"] = platforms
        if starts and ends:
            props.update(datetime=None, start_datetime=iso_text(min(starts)),
                         end_datetime=iso_text(max(ends)))  # fmt: skip
        else:
            props["datetime"] = header.updated or None
        if srid:
            props["proj:code"] = f"EPSG:{srid}"
        return {
            "type": "Feature",
            "stac_version": STAC_VERSION,
            "stac_extensions": extensions,
            "id": item_id(dataset.id, key),
            "geometry": geometry_of(box),
            **({"bbox": box} if box else {}),
            "properties": props,
            # Keys by position, not file name (names carry the build run): the same few
            # keys in every item, so the stac-geoparquet mirror has a few asset columns.
            "assets": {
                f"part-{n:05d}": {
                    "href": f"../{f.path}",
                    "type": MEDIA_PARQUET,
                    "roles": ["data"],
                    "file:size": f.bytes,
                    "file:checksum": _multihash(f.sha256),
                    "table:row_count": f.rows,
                }
                for n, f in enumerate(group)
            },
            "collection": dataset.id,
        }

    def items() -> Iterator[dict[str, Any]]:
        """One item per partition, in id order (the manifest's order)."""
        for key, group in itertools.groupby(files(), key=lambda f: f.key):
            yield item(key, list(group))

    def thumbnail() -> Picture | None:
        from lake.stac.thumbnails import table_thumbnail

        step = max(1, -(-len(overview.sample) // SAMPLE_FILES))
        # An overview over the bbox in degrees: of tables in longitude/latitude only.
        return table_thumbnail(root, dataset.id, overview.sample[::step], manifest.rows,
                               None if srid else bbox)  # fmt: skip

    return Description(
        dataset.id, "table", extensions, bbox, interval, assets, fields, summaries, items,
        thumbnail, header.version or None,
    )  # fmt: skip
