"""A table cut to a request: the files whose manifest bbox and time range meet it, and a
filter on the GeoParquet ``bbox`` covering column and the time column that prunes row
groups by their statistics and then rows.

The manifest (``<dataset>/table.json``) lists every published file with its bbox and time
range, so a request opens the footers of the files that can hold its rows only; the
partitions come from the folder names (``year`` as an integer, ``year=none`` as null,
other keys as text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lake.errors import SpecError
from lake.read.published import LakeDataset, dataset_of_kind
from lake.read.request import Request, request
from lake.tables.manifest import stream_manifest
from lake.tables.partitions import NO_CELL

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    from lake.storage import Root
    from lake.tables.files import TableFile


@dataclass(frozen=True)
class TableSelection:
    """A request resolved against a table: the files to open and the row filter."""

    dataset: LakeDataset
    request: Request
    files: list[TableFile]
    """The files whose bbox and time range meet the request (of those the manifest lists)."""
    listed: int
    """How many files the manifest lists."""
    time_column: str | None
    geometry_column: str
    srid: int | None
    """The table's CRS (an EPSG code) when it is not longitude/latitude."""
    box: tuple[float, float, float, float] | None = None
    """The request's bbox in the table's CRS."""
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    """The request's time as UTC instants (a partial date covers its period)."""

    @property
    def rows(self) -> int:
        """Rows of the selected files: an upper bound of the rows the request returns."""
        return sum(f.rows for f in self.files)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)


def _bounds(req: Request) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """The request's time as UTC instants, a partial date covering its whole period
    (``2020`` is the year, ``2020-05`` the month)."""
    import pandas as pd

    def instant(value: Any, end: bool) -> pd.Timestamp | None:
        if value is None:
            return None
        if isinstance(value, str) and "T" not in value and len(value) <= 10:
            try:
                period = pd.Period(value)
                return (period.end_time if end else period.start_time).tz_localize("UTC")
            except ValueError:
                pass
        try:
            stamp = pd.Timestamp(value)
        except ValueError:
            fix = "give ISO 8601 dates, e.g. 2020-01-01/2020-12-31"
            raise SpecError(f"time {value!r}", "is not a date", fix) from None
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")

    if req.time is None:
        return None, None
    return instant(req.time[0], False), instant(req.time[1], True)


def _native_bbox(req: Request, srid: int | None) -> tuple[float, float, float, float] | None:
    """The request's bbox in the table's CRS (degrees unless the table says otherwise)."""
    if req.bbox is None or srid in (None, 4326):
        return req.bbox
    from pyproj import Transformer

    transformer = Transformer.from_crs("OGC:CRS84", f"EPSG:{srid}", always_xy=True)
    west, south, east, north = transformer.transform_bounds(*req.bbox)
    return float(west), float(south), float(east), float(north)


def _meets_box(info: TableFile, box: tuple[float, float, float, float] | None) -> bool:
    if box is None:
        return True
    if info.bbox is None:
        return False
    w, s, e, n = box
    xmin, ymin, xmax, ymax = info.bbox
    if ymax < s or ymin > n:
        return False
    if w <= e:
        return not (xmax < w or xmin > e)
    return xmax >= w or xmin <= e  # across the antimeridian


def _meets_time(info: TableFile, start: pd.Timestamp | None, end: pd.Timestamp | None) -> bool:
    import pandas as pd

    if start is None and end is None:
        return True
    low, high = [*info.time, None, None][:2] if info.time else (None, None)
    if low is None or high is None:
        return False
    if end is not None and pd.Timestamp(low).tz_convert("UTC") > end:
        return False
    return start is None or pd.Timestamp(high).tz_convert("UTC") >= start


def _time_column(header: Any) -> str | None:
    if header.time_column:
        return str(header.time_column)
    for spec in header.partitioning:  # manifests from before the time column was kept
        if spec.startswith("year(") and spec.endswith(")"):
            return str(spec[5:-1])
    return None


def select_table(root: Root | str, dataset: str | LakeDataset, req: Request,
                 storage_options: dict[str, Any] | None = None) -> TableSelection:  # fmt: skip
    """Resolve ``req`` against the table ``dataset``: the files that can hold its rows."""
    found = dataset_of_kind(root, dataset, "table", storage_options)
    if req.depth is not None:
        raise SpecError(f"the request on {found.id!r}", "asks for a depth, and a table is cut "
                        "by bbox and time", "filter the depth column after reading")  # fmt: skip
    manifest = stream_manifest(found.root, found.id)
    if manifest is None:
        raise SpecError(f"dataset {found.id!r}", "has no table manifest",
                        "run `lake build` again: the manifest is the table's commit")  # fmt: skip
    header = manifest.header
    srid = header.source.get("crs_srid")
    srid = int(srid) if srid not in (None, 4326) else None
    time_column = _time_column(header)
    if req.time is not None and time_column is None:
        raise SpecError(f"the request on {found.id!r}", "asks for a time, and the table has no "
                        "time column", "leave out the time")  # fmt: skip
    box = _native_bbox(req, srid)
    start, end = _bounds(req)
    listed, files = 0, []
    for info in manifest.files():
        listed += 1
        if _meets_box(info, box) and _meets_time(info, start, end):
            files.append(info)
    return TableSelection(found, req, files, listed, time_column, header.geometry_column, srid,
                          box, start, end)  # fmt: skip


def _partitioning(selection: TableSelection) -> pads.Partitioning:
    import pyarrow as pa
    import pyarrow.dataset as pads

    keys = list(dict.fromkeys(k for f in selection.files for k in f.partition))
    fields = [pa.field(k, pa.int32() if k == "year" else pa.string()) for k in keys]
    return pads.HivePartitioning(pa.schema(fields), null_fallback=NO_CELL)


def _filter(selection: TableSelection, schema: pa.Schema) -> pc.Expression | None:
    import pyarrow as pa
    import pyarrow.compute as pc

    expr: pc.Expression | None = None

    def both(more: pc.Expression) -> None:
        nonlocal expr
        expr = more if expr is None else expr & more

    box = selection.box
    geo = json.loads((schema.metadata or {}).get(b"geo", b"{}"))
    covering = geo.get("columns", {}).get(selection.geometry_column, {}).get("covering", {})
    bbox = covering.get("bbox")
    if box is not None and bbox:
        w, s, e, n = box

        def ref(key: str) -> pc.Expression:
            return pc.field(*bbox[key])

        both((ref("ymax") >= s) & (ref("ymin") <= n))
        if w <= e:
            both((ref("xmax") >= w) & (ref("xmin") <= e))
        else:  # across the antimeridian
            both((ref("xmax") >= w) | (ref("xmin") <= e))
    start, end = selection.start, selection.end
    column = selection.time_column
    if column and (start is not None or end is not None) and column in schema.names:
        kind = schema.field(column).type

        def scalar(stamp: pd.Timestamp) -> pa.Scalar:
            if pa.types.is_timestamp(kind):
                value = stamp if kind.tz else stamp.tz_convert("UTC").tz_localize(None)
                return pa.scalar(value.to_pydatetime(), type=kind)
            if pa.types.is_date(kind):
                return pa.scalar(stamp.date(), type=kind)
            raise SpecError(f"time column {column!r}", f"is {kind}, not a date or time",
                            "leave out the time, or filter the column after reading")  # fmt: skip

        if start is not None:
            both(pc.field(column) >= scalar(start))
        if end is not None:
            both(pc.field(column) <= scalar(end))
    return expr


def _unfiltered(selection: TableSelection) -> tuple[pads.Dataset, pc.Expression | None]:
    import pyarrow.dataset as pads

    root, folder = selection.dataset.root, selection.dataset.id
    if not selection.files:
        raise SpecError(f"the request on {selection.dataset.id!r}",
                        "selects nothing: no file of the table holds rows in it",
                        "widen the bbox or the time (`lake ls` shows the extent)")  # fmt: skip
    opened = pads.dataset(
        [root.path(folder, f.path) for f in selection.files], filesystem=root.fs(),
        format="parquet", partitioning=_partitioning(selection),
        partition_base_dir=root.path(folder, "data"),
    )  # fmt: skip
    return opened, _filter(selection, opened.schema)


def open_selection(selection: TableSelection) -> pads.Dataset:
    """The selected files as one pyarrow dataset, filtered (rows outside the request are
    dropped as they are read, row groups outside it are never read)."""
    opened, expr = _unfiltered(selection)
    return opened if expr is None else opened.filter(expr)


def row_groups(selection: TableSelection) -> tuple[int, int]:
    """The row groups the request reads, and their compressed bytes (from each selected
    file's footer)."""
    opened, expr = _unfiltered(selection)
    count = nbytes = 0
    for fragment in opened.get_fragments():
        pieces = fragment.split_by_row_group(expr) if expr is not None else [fragment]
        for piece in pieces:
            for group in piece.row_groups:
                meta = piece.metadata.row_group(group.id)
                count += 1
                nbytes += sum(meta.column(i).total_compressed_size
                              for i in range(meta.num_columns))  # fmt: skip
    return count, nbytes


def open_table(
    root: Root | str, dataset: str, *, bbox: Any = None, time: Any = None,
    columns: list[str] | None = None, geodataframe: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> pads.Dataset | gpd.GeoDataFrame:  # fmt: skip
    """A table of the lake at ``root`` (a folder or any fsspec URL), cut to ``bbox``
    (``(west, south, east, north)`` in degrees) and ``time`` (``(start, end)`` or
    ``"START/END"``; a partial date covers its period).

    Returns a filtered ``pyarrow.dataset.Dataset`` (lazy: ``.to_table(columns=...)``,
    ``.to_batches()``, DuckDB and polars read it), or with ``geodataframe=True`` a
    GeoDataFrame of ``columns`` (all when None). A second table is named
    ``<dataset>/<table>`` (``macrobenthos/measurements``).
    """
    selection = select_table(root, dataset, request(bbox, time), storage_options)
    opened = open_selection(selection)
    if not geodataframe:
        if columns is not None:
            raise SpecError("columns", "apply to the GeoDataFrame",
                            "pass them to the dataset's to_table(columns=...)")  # fmt: skip
        return opened
    return to_geodataframe(opened, selection, columns)


def to_geodataframe(opened: pads.Dataset, selection: TableSelection,
                    columns: list[str] | None) -> gpd.GeoDataFrame:  # fmt: skip
    try:
        import geopandas as gpd
    except ImportError:
        raise SpecError("geodataframe=True", "needs geopandas, which is not installed",
                        "pip install geopandas, or read the pyarrow dataset") from None  # fmt: skip
    geometry = selection.geometry_column
    if columns is not None and geometry not in columns:
        columns = [*columns, geometry]
    table = opened.to_table(columns=columns)
    crs = f"EPSG:{selection.srid}" if selection.srid else "OGC:CRS84"
    frame = table.drop_columns([c for c in ("bbox",) if c in table.column_names]).to_pandas()
    frame[geometry] = gpd.GeoSeries.from_wkb(frame[geometry], crs=crs)
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=crs)
