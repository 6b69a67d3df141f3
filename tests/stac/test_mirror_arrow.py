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
