"""What was written, as STAC: one Collection per dataset and its Items.

Everything here reads the lake (cube groups, table manifests and Parquet footers), never the
sources; the spec contributes only descriptive metadata.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lake.errors import TargetError
from lake.tablestore import file_order, stream_manifest

if TYPE_CHECKING:
    import xarray as xr

    from lake.spec import Dataset
    from lake.stac.thumbnails import Picture
    from lake.storage import Root
    from lake.table import FileInfo

STAC_VERSION = "1.1.0"
EXT = {
    "datacube": "https://stac-extensions.github.io/datacube/v2.3.0/schema.json",
    "table": "https://stac-extensions.github.io/table/v1.2.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "scientific": "https://stac-extensions.github.io/scientific/v1.0.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    "projection": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "zarr": "https://stac-extensions.github.io/zarr/v1.1.0/schema.json",
}
MEDIA_ZARR = "application/vnd.zarr; version=3"
MEDIA_PARQUET = "application/vnd.apache.parquet"
LAYOUTS = ("maps", "timeseries")
SAMPLE_FILES = 32
"""A table's thumbnail reads the bbox columns of at most this many files (spread over all)."""


@dataclass
class Description:
    """A dataset's collection fields (without links) and a lazy stream of its items."""

    dataset: str
    kind: str
    extensions: list[str]
    bbox: list[float] | None
    interval: list[str | None]
    assets: dict[str, dict[str, Any]]
    fields: dict[str, Any] = field(default_factory=dict)
    summaries: dict[str, Any] = field(default_factory=dict)
    items: Any = None
    """A callable returning an iterator of item dicts (without links)."""
    thumbnail: Any = None
    """A callable returning a :class:`lake.stac.thumbnails.Picture`, or None."""
    version: str | None = None
    """The version of the table manifest described (None for cubes and older manifests)."""


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        return str(np.datetime_as_string(value, unit="s")) + "Z"
    if hasattr(value, "isoformat"):
        text = str(value.isoformat())
        if "T" not in text:
            text += "T00:00:00"
        text = text.replace("+00:00", "")
        return text if text.endswith("Z") else text + "Z"
    return str(value)


def _geometry(bbox: list[float] | None) -> dict[str, Any] | None:
    if bbox is None:
        return None
    xmin, ymin, xmax, ymax = bbox
    if xmin == xmax and ymin == ymax:
        return {"type": "Point", "coordinates": [xmin, ymin]}
    return {
        "type": "Polygon",
        "coordinates": [[[xmin, ymin], [xmax, ymin], [xmax, ymax], [xmin, ymax], [xmin, ymin]]],
    }


# --------------------------------------------------------------------------- cubes


def _open_layout(root: Root, dataset: str, layout: str) -> xr.Dataset | None:
    import xarray as xr

    fs = root.fs()
    if not fs.exists(root.path(dataset, f"{layout}.zarr", "zarr.json")):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        opened: xr.Dataset = xr.open_zarr(
            root.zarr_store(dataset, f"{layout}.zarr", read_only=True),
            consolidated=True,
            zarr_format=3,
            chunks=None,
        )
    return opened


def _step(values: np.ndarray) -> float | None:
    if values.size < 2:
        return None
    diffs = np.diff(values.astype(np.float64))
    return float(diffs[0]) if np.allclose(diffs, diffs[0], rtol=1e-6) else None


def _time_step(values: np.ndarray) -> str | None:
    if values.size < 2 or not np.issubdtype(values.dtype, np.datetime64):
        return None
    seconds = np.diff(values.astype("datetime64[s]").astype(np.int64))
    if not np.all(seconds == seconds[0]) or seconds[0] <= 0:
        return None
    step = int(seconds[0])
    if step % 86400 == 0:
        return f"P{step // 86400}D"
    return f"PT{step}S"


def _dimensions(ds: xr.Dataset) -> dict[str, Any]:
    dims: dict[str, Any] = {}
    for name in ds.dims:
        values = np.asarray(ds[name].values) if name in ds.coords else np.arange(ds.sizes[name])
        entry: dict[str, Any]
        if name == "time":
            entry = {"type": "temporal", "extent": [_iso(values.min()), _iso(values.max())]}
            step = _time_step(values)
            if step:
                entry["step"] = step
        elif name in ("latitude", "longitude"):
            entry = {
                "type": "spatial",
                "axis": "y" if name == "latitude" else "x",
                "extent": [float(values.min()), float(values.max())],
                "reference_system": 4326,
            }
            spacing = _step(values)
            if spacing is not None:
                entry["step"] = spacing
        elif name == "depth" and np.issubdtype(values.dtype, np.number):
            entry = {"type": "spatial", "axis": "z",
                     "extent": [float(values.min()), float(values.max())]}  # fmt: skip
            unit = ds[name].attrs.get("units")
            if unit:
                entry["unit"] = str(unit)
        else:
            entry = {"type": "other"}
            if values.size and np.issubdtype(values.dtype, np.number):
                entry["extent"] = [float(values.min()), float(values.max())]
        dims[str(name)] = entry
    return dims


def _chunking(root: Root, dataset: str, layout: str) -> dict[str, tuple[list[int], list[int]]]:
    """(inner chunk shape, shard shape) of each array, from the consolidated group document."""
    doc = root.read_json(dataset, f"{layout}.zarr", "zarr.json")
    out = {}
    for name, meta in doc.get("consolidated_metadata", {}).get("metadata", {}).items():
        if meta.get("node_type") != "array":
            continue
        outer = list(meta["chunk_grid"]["configuration"]["chunk_shape"])
        inner = outer
        for codec in meta.get("codecs", []):
            if codec.get("name") == "sharding_indexed":
                inner = list(codec["configuration"]["chunk_shape"])
        out[name] = (inner, outer)
    return out


def _variables(
    ds: xr.Dataset, chunking: dict[str, tuple[list[int], list[int]]] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, var in ds.data_vars.items():
        entry: dict[str, Any] = {
            "dimensions": [str(d) for d in var.dims],
            "type": "data" if "time" in var.dims else "auxiliary",
            "data_type": str(var.dtype) if var.dtype.kind in "iufb" else "other",
            "shape": [int(n) for n in var.shape],
        }
        if chunking and str(name) in chunking:
            entry["chunks"], entry["shards"] = chunking[str(name)]
        for attr, key in (("units", "unit"), ("long_name", "description")):
            if attr in var.attrs:
                entry[key] = str(var.attrs[attr])
        out[str(name)] = entry
    return out


def describe_cube(root: Root, dataset: Dataset) -> Description | None:
    layouts = {name: _open_layout(root, dataset.id, name) for name in LAYOUTS}
    opened = {k: v for k, v in layouts.items() if v is not None}
    if not opened:
        return None
    first = next(iter(opened.values()))
    dims = _dimensions(first)
    bbox = None
    if "latitude" in dims and "longitude" in dims:
        lon, lat = dims["longitude"]["extent"], dims["latitude"]["extent"]
        bbox = [lon[0], lat[0], lon[1], lat[1]]
    elif "latitude" in first.variables and "longitude" in first.variables:
        # A fixed station: position as scalar (or constant) variables.
        lat_values = np.asarray(first["latitude"].values, dtype=np.float64)
        lon_values = np.asarray(first["longitude"].values, dtype=np.float64)
        if np.isfinite(lat_values).any() and np.isfinite(lon_values).any():
            bbox = [float(np.nanmin(lon_values)), float(np.nanmin(lat_values)),
                    float(np.nanmax(lon_values)), float(np.nanmax(lat_values))]  # fmt: skip
    interval = list(dims.get("time", {}).get("extent", [None, None]))
    assets: dict[str, dict[str, Any]] = {}
    for name, ds in opened.items():
        assets[name] = {
            "href": f"./{name}.zarr",
            "type": MEDIA_ZARR,
            "title": f"{name} layout: chunks " + (
                "span space, short in time" if name == "maps" else "span time, small in space"
            ),
            "roles": ["data"],
            "zarr:consolidated": True,
            "zarr:node_type": "group",
            "zarr:zarr_format": 3,
            "cube:variables": _variables(ds, _chunking(root, dataset.id, name)),
        }  # fmt: skip
    variables = _variables(first)
    fields = {"cube:dimensions": dims, "cube:variables": variables}
    summaries = {"variables": sorted(variables)}

    def items() -> Iterator[dict[str, Any]]:
        yield {
            "type": "Feature",
            "stac_version": STAC_VERSION,
            "stac_extensions": [EXT["datacube"], EXT["zarr"]],
            "id": dataset.id,
            "geometry": _geometry(bbox),
            **({"bbox": bbox} if bbox else {}),
            "properties": {
                "datetime": None,
                "start_datetime": interval[0],
                "end_datetime": interval[1],
                "cube:dimensions": dims,
                "cube:variables": variables,
            },
            "assets": {
                name: {
                    **{k: v for k, v in asset.items() if k != "cube:variables"},
                    "href": f"../{name}.zarr",
                }
                for name, asset in assets.items()
            },
            "collection": dataset.id,
        }

    def thumbnail() -> Picture | None:
        from lake.stac.thumbnails import cube_thumbnail

        return cube_thumbnail(opened.get("maps", first))

    return Description(
        dataset.id, "cube", [EXT["datacube"], EXT["zarr"]], bbox, interval, assets,
        fields, summaries, items, thumbnail,
    )  # fmt: skip


# --------------------------------------------------------------------------- tables


def _columns(root: Root, dataset: str, first: FileInfo | None) -> list[dict[str, str]]:
    import pyarrow.parquet as pq

    if first is None:
        return []
    with root.fs().open(root.path(dataset, first.path), "rb") as handle:
        schema = pq.read_schema(handle)
    columns = [{"name": f.name, "type": str(f.type)} for f in schema]
    for name in first.partition:
        columns.append({"name": name, "type": "partition (from the folder name)"})
    return columns


@dataclass
class _Overview:
    """What the collection needs from every file of a manifest, gathered in one pass."""

    first: FileInfo | None = None
    bbox: list[float] | None = None
    start: str | None = None
    end: str | None = None
    types: set[str] = field(default_factory=set)
    with_bbox: int = 0
    sample: list[FileInfo] = field(default_factory=list)
    """Files with a bbox, evenly spread over all of them, for the thumbnail."""
    stride: int = 1
    ordered: bool = True
    """Files come grouped by partition in item-id order (manifests written since the
    order was fixed); older ones are sorted in memory."""

    def add(self, info: FileInfo, previous: FileInfo | None) -> None:
        if self.first is None:
            self.first = info
        if info.bbox:
            if self.with_bbox % self.stride == 0:  # keep every stride-th, halving as it fills
                self.sample.append(info)
                if len(self.sample) == 2 * SAMPLE_FILES:
                    self.sample, self.stride = self.sample[::2], self.stride * 2
            self.with_bbox += 1
            self.bbox = _union([self.bbox, info.bbox])
        if info.time and info.time[0]:
            self.start = min(self.start or info.time[0], info.time[0])
        if info.time and info.time[1]:
            self.end = max(self.end or info.time[1], info.time[1])
        self.types.update(info.geometry_types)
        if previous is not None and file_order(previous) > file_order(info):
            self.ordered = False


def _multihash(sha256_hex: str) -> str:
    return "1220" + sha256_hex


def _union(boxes: list[list[float] | None]) -> list[float] | None:
    real = [b for b in boxes if b]
    if not real:
        return None
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


def item_id(dataset: str, partition: str) -> str:
    """A path-safe item id from a partition path: ``year=2015/cell=x`` → ``ds.year-2015.cell-x``."""
    from lake.table import item_name

    return f"{dataset}.{item_name(partition)}" if partition else dataset


def describe_table(root: Root, dataset: Dataset) -> Description | None:
    """The table's collection and items, streamed from its manifest: one pass for the
    collection's extent and summaries, one more for the items, whatever the file count."""
    manifest = stream_manifest(root, dataset.id)
    if manifest is None:
        return None
    header = manifest.header
    srid = header.source.get("crs_srid")
    overview = _Overview()
    previous = None
    for info in manifest.files():
        overview.add(info, previous)
        previous = info
    columns = _columns(root, dataset.id, overview.first)
    bbox = _to_wgs84(overview.bbox, srid)
    interval = [_iso_text(overview.start) if overview.start else None,
                _iso_text(overview.end) if overview.end else None]  # fmt: skip
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
    summaries: dict[str, Any] = {"geometry_types": sorted(overview.types)}
    if srid:
        summaries["proj:code"] = [f"EPSG:{srid}"]

    def files() -> Iterator[FileInfo]:
        if overview.ordered:
            return manifest.files()
        return iter(sorted(manifest.files(), key=file_order))

    def item(key: str, group: list[FileInfo]) -> dict[str, Any]:
        box = _to_wgs84(_union([f.bbox for f in group]), srid)
        starts = [f.time[0] for f in group if f.time and f.time[0]]
        ends = [f.time[1] for f in group if f.time and f.time[1]]
        props: dict[str, Any] = {
            "table:columns": columns,
            "table:primary_geometry": primary,
            "table:row_count": sum(f.rows for f in group),
        }
        if starts and ends:
            props.update(datetime=None, start_datetime=_iso_text(min(starts)),
                         end_datetime=_iso_text(max(ends)))  # fmt: skip
        else:
            props["datetime"] = header.updated or None
        if srid:
            props["proj:code"] = f"EPSG:{srid}"
        return {
            "type": "Feature",
            "stac_version": STAC_VERSION,
            "stac_extensions": extensions,
            "id": item_id(dataset.id, key),
            "geometry": _geometry(box),
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
        return table_thumbnail(root, dataset.id, overview.sample[::step], manifest.rows)

    return Description(
        dataset.id, "table", extensions, bbox, interval, assets, fields, summaries, items,
        thumbnail, header.version or None,
    )  # fmt: skip


def _iso_text(value: str) -> str:
    if "T" not in value:
        value += "T00:00:00"
    return value if value.endswith("Z") or "+" in value[10:] else value + "Z"


def describe(root: Root, dataset: Dataset) -> Description:
    found = describe_table(root, dataset) if dataset.table else describe_cube(root, dataset)
    if found is None:
        raise TargetError(
            f"{root.display}/{dataset.id}",
            "holds nothing published to describe",
            "build the dataset first (`lake build SPEC --only ID`)",
        )
    return found
