"""The mirror's conversion of items to Arrow equals stac-geoparquet's, value for value."""

from __future__ import annotations

import copy
from typing import Any

import pyarrow as pa
from stac_geoparquet.arrow._api import stac_items_to_arrow

from lake.stac.mirror import items_to_arrow


def _item(i: int, geometry: dict[str, Any], **properties: Any) -> dict[str, Any]:
    x, y = -10 + i * 0.01, 40 + i * 0.005
    return {
        "type": "Feature", "stac_version": "1.1.0", "id": f"occ.part-{i}",
        "stac_extensions": ["https://stac-extensions.github.io/table/v1.2.0/schema.json"],
        "geometry": geometry, "bbox": [x, y, x + 0.5, y + 0.5],
        "properties": {"datetime": None, "start_datetime": "2020-01-01T00:00:00Z",
                       "end_datetime": f"2020-12-{1 + i % 28:02d}T12:30:00Z",
                       "table:row_count": i, **properties},
        "assets": {f"part-{i % 3:05d}": {"href": f"../data/part-{i}.parquet",
                                          "roles": ["data"], "file:size": 100 + i}},
        "links": [], "collection": "occ",
    }  # fmt: skip


def _polygon(i: int) -> dict[str, Any]:
    x, y = -10 + i * 0.01, 40 + i * 0.005
    ring = [[x, y], [x + 0.5, y], [x + 0.5, y + 0.5], [x, y + 0.5], [x, y]]
    return {"type": "Polygon", "coordinates": [ring]}


def _items() -> list[dict[str, Any]]:
    items = [_item(i, _polygon(i)) for i in range(200)]
    items += [_item(i, {"type": "Point", "coordinates": [1.0 * i, 2.0]}, note="a point")
              for i in range(200, 220)]  # fmt: skip
    items.append(
        _item(
            220,
            {"type": "MultiPoint", "coordinates": [[0, 0], [1, 1]]},
            **{"cube:variables": {"t": {"dimensions": ["time"], "type": "data"}}},
        )
    )
    return items


def _same(ours: pa.RecordBatch, theirs: pa.RecordBatch) -> None:
    assert ours.schema == theirs.schema
    assert ours.schema.metadata == theirs.schema.metadata
    assert ours.equals(theirs)


def test_items_to_arrow_equals_stac_geoparquet() -> None:
    items = _items()
    _same(items_to_arrow(copy.deepcopy(items)), stac_items_to_arrow(copy.deepcopy(items)))


def test_items_with_proj_geometry_go_through_stac_geoparquet() -> None:
    items = _items()[:10]
    items[3]["properties"]["proj:geometry"] = _polygon(3)
    _same(items_to_arrow(copy.deepcopy(items)), stac_items_to_arrow(copy.deepcopy(items)))


def test_the_collector_is_paused_only_while_the_mirror_converts(tmp_path: Any) -> None:
    """The mirror is written whole from its documents, the cycle collector is off while
    chunks are converted, and afterwards it is as it was, even when a document is bad."""
    import gc

    import orjson
    import pyarrow.parquet as pq
    import pytest

    from lake.stac import mirror

    seen: list[bool] = []
    real = mirror.items_to_arrow

    def spying(items: list[dict[str, Any]]) -> Any:
        seen.append(gc.isenabled())
        return real(items)

    documents = [orjson.dumps(item) for item in _items()]
    mp = pytest.MonkeyPatch()
    mp.setattr(mirror, "items_to_arrow", spying)
    try:
        assert gc.isenabled()
        (tmp_path / "t1").mkdir()
        out = str(tmp_path / "items.parquet")
        assert mirror.convert_mirror(iter(documents), str(tmp_path / "t1"), out)
        assert seen == [False] and gc.isenabled()
        assert pq.read_table(out).num_rows == len(documents)
        (tmp_path / "t2").mkdir()
        with pytest.raises(orjson.JSONDecodeError):
            mirror.convert_mirror(iter([documents[0], b"{not json"]), str(tmp_path / "t2"),
                                  str(tmp_path / "bad.parquet"))  # fmt: skip
        assert gc.isenabled()
        gc.disable()
        (tmp_path / "t3").mkdir()
        mirror.convert_mirror(iter(documents), str(tmp_path / "t3"), out)
        assert not gc.isenabled()
    finally:
        gc.enable()
        mp.undo()


def test_documents_read_by_arrow_equal_stac_geoparquet() -> None:
    """Chunks after the first are read by Arrow's JSON reader with the first one's
    schema: the same batch as stac-geoparquet's, for each kind of geometry; None (the
    slow path) when a document brings a field or a type the schema lacks, or geometries
    of several kinds."""
    import orjson

    from lake.stac.mirror import _Geometries, _json_schema, documents_to_arrow

    items = _items()
    lines = [[_item(i, {"type": "LineString", "coordinates": [[i, 0.5], [i + 1, 1.5]]})
              for i in range(5)]]  # fmt: skip
    multipolygons = [[_item(i, {"type": "MultiPolygon",
                                "coordinates": [_polygon(i)["coordinates"]] * 2})
                      for i in range(5)]]  # fmt: skip
    for group in [items[:200], items[200:220], items[220:], *lines, *multipolygons]:
        docs = [orjson.dumps(item) for item in group]
        seen = _Geometries()
        ours = documents_to_arrow(docs, _json_schema(docs[:3]), seen)
        assert ours is not None
        _same(ours, stac_items_to_arrow(copy.deepcopy(group)))
        assert seen.types == {group[0]["geometry"]["type"]}
        assert seen.bbox == [
            min(i["bbox"][0] for i in group),
            min(i["bbox"][1] for i in group),
            max(i["bbox"][2] for i in group),
            max(i["bbox"][3] for i in group),
        ]

    raw = _json_schema([orjson.dumps(item) for item in items[:3]])
    extra = copy.deepcopy(items[:3])
    extra[1]["properties"]["new"] = "a field the schema lacks"
    mixed = [orjson.dumps(item) for item in items[195:205]]  # polygons and points
    for docs in ([orjson.dumps(item) for item in extra], mixed):
        assert documents_to_arrow(docs, raw, _Geometries()) is None


def test_the_mirror_is_the_same_whatever_path_each_chunk_takes(tmp_path: Any) -> None:
    """Converted 50 items at a time (chunks read by Arrow, a chunk of several kinds of
    geometry the slow way), the mirror equals the one converted in one chunk."""
    import orjson
    import pyarrow.parquet as pq

    from lake.stac import mirror

    docs = [orjson.dumps(item) for item in _items()]
    for name, chunk in (("one", 10_000), ("many", 50)):
        (tmp_path / name).mkdir()
        out = str(tmp_path / f"{name}.parquet")
        assert mirror.convert_mirror(iter(docs), str(tmp_path / name), out, chunk)
    one, many = pq.read_table(tmp_path / "one.parquet"), pq.read_table(tmp_path / "many.parquet")
    assert one.schema == many.schema and one.schema.metadata == many.schema.metadata
    assert one.equals(many) and one.num_rows == len(docs)
