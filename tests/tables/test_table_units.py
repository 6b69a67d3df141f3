"""Table logic that needs no database: types, geometry, Hilbert order, partitions, file
ranges, ``geo`` metadata and the manifest's document."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from lake.errors import SourceError
from lake.storage import Root
from lake.tables.files import TableFile
from lake.tables.geometry import (
    WORLD,
    build_geometry,
    crs_projjson,
    geo_metadata,
    geometry_type_names,
)
from lake.tables.hilbert import HILBERT_NULL, HIST_BINS, HIST_SHIFT, hilbert_index, split_ranges
from lake.tables.job import TableJob
from lake.tables.manifest import MANIFEST, Manifest, read_manifest, stream_manifest
from lake.tables.partitions import item_name, partition_keys, partition_values
from lake.tables.types import convert_types, numeric_plan


class _NoReader:
    def read(self, part: Any) -> Any:
        raise AssertionError("unit tests read no source")


def _job(tmp_path: Path, **changes: Any) -> TableJob:
    fields: dict[str, Any] = dict(
        dataset="occ", label="table occ", reader=_NoReader(), root=Root(str(tmp_path)),
        staging="occ/.staging/r", run="r", geometry_column="geometry", lon="lon", lat="lat",
        source_geometry=None, geography=False, srid=None, invalid="keep", partitions=[],
        time_column=None, watermark=None, key=[], bounds=WORLD,
        crs=crs_projjson(None),
    )  # fmt: skip
    fields.update(changes)
    return TableJob(**fields)


def _points(lon: list[float | None], lat: list[float | None], **columns: Any) -> pa.Table:
    return pa.table({"lon": pa.array(lon, pa.float64()), "lat": pa.array(lat, pa.float64()),
                     **columns})  # fmt: skip


# --------------------------------------------------------------------------- types


@pytest.mark.parametrize(
    ("typmod", "plan"),
    [(-1, None), ((10 << 16 | 2) + 4, (10, 2)), ((38 << 16) + 4, (38, 0)),
     ((39 << 16 | 2) + 4, None), ((5 << 16 | 6) + 4, None)],
)  # fmt: skip
def test_numeric_plan(typmod: int, plan: tuple[int, int] | None) -> None:
    assert numeric_plan(typmod) == plan


def test_uuid_extension_becomes_canonical_text(tmp_path: Path) -> None:
    import uuid

    values = [uuid.UUID(int=i * 0x1234567890ABCDEF) for i in range(4)]
    storage = pa.array([v.bytes for v in values] + [None], pa.binary(16))
    batch = pa.RecordBatch.from_arrays([pa.ExtensionArray.from_storage(pa.uuid(), storage)],
                                       names=["id"])  # fmt: skip
    table = convert_types(batch, _job(tmp_path))
    assert table.column("id").to_pylist() == [str(v) for v in values] + [None]


def test_unstorable_type_names_the_column(tmp_path: Path) -> None:
    batch = pa.RecordBatch.from_arrays([pa.array([1], pa.duration("s"))], names=["span"])
    with pytest.raises(SourceError, match=r"'span'.*cast it"):
        convert_types(batch, _job(tmp_path))


# --------------------------------------------------------------------------- geometry


def test_points_from_lon_lat_and_invalid_ones(tmp_path: Path) -> None:
    table = _points([10.0, 200.0, None, -5.5], [50.0, 0.0, 1.0, -33.0])
    geoms = build_geometry(table, _job(tmp_path))
    assert geoms.valid.tolist() == [True, False, False, True]
    assert geoms.bbox.to_pylist()[0] == {"xmin": 10.0, "ymin": 50.0, "xmax": 10.0, "ymax": 50.0}
    assert geoms.bbox.to_pylist()[1] is None
    assert geometry_type_names(geoms.gtype.tolist()) == ["Point"]
    assert geometry_type_names([0, 1003, -1]) == ["Point", "Polygon Z"]


def test_geo_metadata_follows_geoparquet(tmp_path: Path, geoparquet_validator: Any) -> None:
    job = _job(tmp_path)
    meta = geo_metadata(job, ["Point"], [1.0, 2.0, 3.0, 4.0])
    geoparquet_validator.validate(meta)
    column = meta["columns"]["geometry"]
    assert meta["version"] == "1.1.0" and meta["primary_column"] == "geometry"
    assert column["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    assert column["bbox"] == [1.0, 2.0, 3.0, 4.0] and "edges" not in column
    spherical = geo_metadata(_job(tmp_path, geography=True), [], None)
    geoparquet_validator.validate(spherical)
    assert spherical["columns"]["geometry"]["edges"] == "spherical"
    assert "bbox" not in spherical["columns"]["geometry"]


# --------------------------------------------------------------------------- Hilbert order


def test_split_ranges_hold_near_equal_rows() -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, HILBERT_NULL, 100_000) >> HIST_SHIFT
    histogram = np.bincount(codes, minlength=HIST_BINS)
    ranges = split_ranges(histogram, 4)
    assert len(ranges) == 4
    assert ranges[0][0] == 0 and ranges[-1][1] == HIST_BINS << HIST_SHIFT
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    counts = [int(histogram[lo >> HIST_SHIFT : hi >> HIST_SHIFT].sum()) for lo, hi in ranges]
    assert sum(counts) == 100_000 and max(counts) < 1.05 * min(counts)


def test_split_ranges_of_one_crowded_bin_stay_whole() -> None:
    histogram = np.zeros(HIST_BINS, np.int64)
    histogram[7] = 1000
    assert len(split_ranges(histogram, 5)) <= 2  # rows of one bin cannot be split further


# --------------------------------------------------------------------------- partitions


def test_partition_keys_nest_year_column_and_grid(tmp_path: Path) -> None:
    import datetime as dt

    table = _points(
        [4.5, 4.5, -12.0, None], [52.0, 52.0, -33.0, 0.0],
        when=pa.array([dt.date(2015, 3, 1), dt.date(2016, 1, 1), dt.date(2015, 6, 1),
                       dt.date(2015, 7, 1)]),
        dataset=pa.array(["a/b c", "x", "a/b c", "x"]),
    )  # fmt: skip
    job = _job(tmp_path, partitions=[("year", "when"), ("column", "dataset"), ("grid", "10")])
    codes, paths = partition_keys(table, build_geometry(table, job), job)
    rows = [paths[c] for c in codes]
    assert rows == [
        "year=2015/dataset=a%2Fb%20c/cell_10deg=N50p0E000p0",
        "year=2016/dataset=x/cell_10deg=N50p0E000p0",
        "year=2015/dataset=a%2Fb%20c/cell_10deg=S40p0W020p0",
        "year=2015/dataset=x/cell_10deg=none",
    ]
    assert partition_values(rows[0]) == {"year": "2015", "dataset": "a/b c",
                                         "cell_10deg": "N50p0E000p0"}  # fmt: skip
    assert item_name(rows[0]) == "year-2015.dataset-a_2Fb_20c.cell_10deg-N50p0E000p0"


@pytest.mark.parametrize("bound", [7, 3_000_000])
def test_distinct_partition_codes_match_a_sort(bound: int) -> None:
    from lake.tables.partitions import _distinct

    codes = np.random.default_rng(5).integers(0, bound, 1000) // 3 * 3
    uniques, inverse = _distinct(codes, bound)
    expected, expected_inverse = np.unique(codes, return_inverse=True)
    assert uniques.tolist() == expected.tolist()
    assert inverse.tolist() == expected_inverse.tolist()
    assert inverse.dtype == np.int64


def test_null_partition_value_stops_naming_the_column(tmp_path: Path) -> None:
    table = _points([1.0, 2.0], [1.0, 2.0], platform=pa.array(["a", None]))
    job = _job(tmp_path, partitions=[("column", "platform")])
    with pytest.raises(SourceError, match=r"'platform'.*null in 1 row"):
        partition_keys(table, build_geometry(table, job), job)


# --------------------------------------------------------------------------- manifest


def _file(path: str) -> TableFile:
    key = path.split("/", 1)[1].rsplit("/", 1)[0]
    return TableFile(path, partition_values(key), 10, 100, "ab" * 32, [1.0, 2.0, 3.0, 4.0],
                     ["Point"], ["2015-01-01", None], 2)  # fmt: skip


def test_manifest_round_trip_and_streamed_header(tmp_path: Path) -> None:
    import datetime as dt

    manifest = Manifest(
        dataset="occ",
        files=[_file("data/year=2016/part-r-00000.parquet"),
               _file("data/year=2015/part-r-00000.parquet")],
        watermark=dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC), watermark_column="modified",
        key=["id"], partitioning=["year(when)"],
        source={"kind": "table", "table": "occ", "crs_srid": 3035}, updated="u", version="v",
    )  # fmt: skip
    root = Root(str(tmp_path))
    root.put(root.path("occ", MANIFEST), json.dumps(manifest.to_json(), indent=1).encode())
    again = read_manifest(root, "occ")
    assert again is not None
    assert [f.path for f in again.files] == sorted(f.path for f in manifest.files)
    assert again.watermark == manifest.watermark and again.files[0].invalid == 2
    stream = stream_manifest(root, "occ")
    assert stream is not None
    # The header keeps its nested maps (the source's SRID, the watermark) while the files
    # are left for the stream.
    assert stream.header.source == manifest.source
    assert stream.header.watermark == manifest.watermark and stream.header.files == []
    assert (stream.rows, stream.bytes) == (20, 200)
    assert [f.path for f in stream.files()] == [f.path for f in again.files]


def test_manifests_of_earlier_builds_still_read(tmp_path: Path) -> None:
    """Before ``version``, ``bytes`` and ``null_geometries`` were kept."""
    doc = {"format": "lake-table/1", "dataset": "occ", "updated": "2024-01-01T00:00:00Z",
           "source": {}, "partitioning": [], "geometry_column": "geometry", "key": [],
           "watermark": None, "rows": 10,
           "files": [{"path": "data/part-a-00000.parquet", "partition": {}, "rows": 10,
                      "bytes": 100, "sha256": "00" * 32, "bbox": None,
                      "geometry_types": [], "time": [None, None]}]}  # fmt: skip
    root = Root(str(tmp_path))
    root.put(root.path("occ", MANIFEST), json.dumps(doc).encode())
    manifest = read_manifest(root, "occ")
    assert manifest is not None and manifest.version == "" and manifest.files[0].invalid == 0
    stream = stream_manifest(root, "occ")
    assert stream is not None and stream.bytes is None and stream.rows == 10


def test_manifest_of_another_format_is_refused(tmp_path: Path) -> None:
    from lake.errors import TargetError

    root = Root(str(tmp_path))
    root.put(root.path("occ", MANIFEST), b'{"format": "lake-table/9", "dataset": "occ"}')
    with pytest.raises(TargetError, match="not a table manifest this version can extend"):
        read_manifest(root, "occ")
    with pytest.raises(TargetError):
        stream_manifest(root, "occ")


def test_hilbert_index_is_a_curve() -> None:
    """Every cell of a coarse grid gets its own index, and neighbours on the curve touch."""
    side = 1 << 16
    step = side // 8
    xs, ys = np.meshgrid(np.arange(8) * step, np.arange(8) * step)
    x = (xs.ravel() + 0.5) / side * 360 - 180
    y = (ys.ravel() + 0.5) / side * 180 - 90
    order = hilbert_index(x, y, np.ones(64, bool), WORLD)
    assert len(set((order // (step * step)).tolist())) == 64
    cells = np.argsort(order)
    path = np.stack([xs.ravel()[cells], ys.ravel()[cells]], axis=1) // step
    assert np.all(np.abs(np.diff(path, axis=0)).sum(axis=1) == 1)
    invalid = hilbert_index(np.array([0.0]), np.array([0.0]), np.array([False]), WORLD)
    assert invalid[0] == HILBERT_NULL


def _xy2d(x: int, y: int, side: int) -> int:
    """The Hilbert index of cell (x, y), bit by bit (the classic ``xy2d``)."""
    d, s = 0, side >> 1
    while s:
        rx, ry = int(x & s > 0), int(y & s > 0)
        d += s * s * ((3 * rx) ^ ry)
        if not ry:
            if rx:
                x, y = side - 1 - x, side - 1 - y
            x, y = y, x
        s >>= 1
    return d


def test_hilbert_index_matches_the_bit_by_bit_curve() -> None:
    """The table-driven index equals the classic construction, at random points and at the
    edges and corners of the grid."""
    side = 1 << 16
    rng = np.random.default_rng(7)
    cells = rng.integers(0, side, size=(2000, 2))
    edges = np.array([[0, 0], [side - 1, 0], [0, side - 1], [side - 1, side - 1],
                      [side // 2, side // 2 - 1], [1, side - 2]])  # fmt: skip
    cells = np.concatenate([cells, edges])
    x = (cells[:, 0] + 0.5) / side * 360 - 180
    y = (cells[:, 1] + 0.5) / side * 180 - 90
    got = hilbert_index(x, y, np.ones(len(x), bool), WORLD)
    want = [_xy2d(int(cx), int(cy), side) for cx, cy in cells]
    assert got.tolist() == want


def test_point_wkb_matches_shapely() -> None:
    import shapely

    from lake.tables.geometry import point_wkb

    x = np.array([1.5, -180.0, 0.0])
    y = np.array([2.5, 90.0, 0.0])
    valid = np.array([True, True, False])
    got = point_wkb(x, y, valid).to_pylist()
    assert got[:2] == [shapely.to_wkb(shapely.Point(a, b), flavor="iso") for a, b in
                       zip(x[:2], y[:2], strict=True)]  # fmt: skip
    assert got[2] is None


def test_only_repeating_columns_get_a_dictionary() -> None:
    """Names and flags repeat and get a dictionary; keys and coordinates do not, nor do
    lists; a struct's fields are judged one by one, by their Parquet paths."""
    import pyarrow.parquet as pq

    from lake.tables.files import repeated_columns

    n = 50_000
    table = pa.table({
        "id": np.arange(n),
        "name": pa.array([f"species {i % 40}" for i in range(n)]),
        "lon": np.linspace(-10, 10, n),
        "bbox": pa.StructArray.from_arrays(
            [pa.array(np.arange(n) % 3, pa.float64()), pa.array(np.arange(n, dtype=float))],
            names=["xmin", "ymin"],
        ),
        "tags": pa.array([[1, 2]] * n),
    })  # fmt: skip
    chosen = repeated_columns(table)
    assert chosen == ["name", "bbox.xmin"]
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, use_dictionary=chosen)
    group = pq.ParquetFile(pa.BufferReader(sink.getvalue())).metadata.row_group(0)
    encodings = {group.column(j).path_in_schema: group.column(j).encodings
                 for j in range(group.num_columns)}  # fmt: skip
    assert "RLE_DICTIONARY" in encodings["name"] and "RLE_DICTIONARY" in encodings["bbox.xmin"]
    assert "RLE_DICTIONARY" not in encodings["id"] and "RLE_DICTIONARY" not in encodings["lon"]


def test_parts_fill_the_last_round_of_reads() -> None:
    from lake.tables.postgres import _balanced

    assert _balanced(13, 2) == 14
    assert _balanced(1, 2) == 1 and _balanced(2, 4) == 2
    assert _balanced(15, 4) == 16
    assert _balanced(600, 2) == 512


def test_file_tasks_come_largest_first(tmp_path: Path) -> None:
    """Files are written largest first, each staging file with only the record batches that
    hold rows of the file's range."""
    from lake.tables.plan import Rewrite
    from lake.tables.staging import StagedPartition

    small = StagedPartition("year=2001", "s.arrow", rows=10, bytes=10)
    small.histogram[0] = 10
    small.ranges = [(0, 5)]
    large = StagedPartition("year=2002", "l.arrow", rows=300, bytes=300)
    large.histogram[[1, HIST_BINS - 2]] = 150
    low_bin, high_bin = 1 << HIST_SHIFT, (HIST_BINS - 2) << HIST_SHIFT
    large.ranges = [(low_bin, low_bin + 9), (high_bin, high_bin + 9)]
    rewrite = Rewrite()
    for piece in (small, large):
        rewrite.histograms[piece.key] = piece.histogram
        rewrite.sizes[piece.key] = piece.bytes
        rewrite.staged[piece.key] = [piece]
    tasks = rewrite.tasks(Root(str(tmp_path)), "occ", file_mb=200 / 2**20)
    assert [(t.key, t.index) for t in tasks] == [("year=2002", 0), ("year=2002", 1),
                                                 ("year=2001", 0)]  # fmt: skip
    assert [t.staged for t in tasks] == [[("l.arrow", [0])], [("l.arrow", [1])],
                                         [("s.arrow", [0])]]  # fmt: skip


def test_freed_arrow_memory_is_kept_only_below_half_the_worker_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A task's freed Arrow pages stay for the next task while the worker is below half its
    memory limit; above it, or outside a worker, they are handed back when the task ends,
    also when it fails."""
    from lake.tables import staging

    released: list[int] = []

    class Pool:
        def release_unused(self) -> None:
            released.append(1)

    monkeypatch.setattr(staging.pa, "default_memory_pool", Pool)

    @staging.releasing_memory
    def task(fail: bool = False) -> int:
        if fail:
            raise ValueError("boom")
        return 7

    assert task() == 7 and len(released) == 1  # no worker here: always released
    monkeypatch.setattr(staging, "_memory_limit", lambda: 1000)
    monkeypatch.setattr(staging, "_rss", lambda: 400)
    assert task() == 7 and len(released) == 1  # below half: kept
    monkeypatch.setattr(staging, "_rss", lambda: 600)
    with pytest.raises(ValueError):
        task(fail=True)
    assert len(released) == 2
