"""Real clients on a built lake: tensorstore reads every layout as the catalogue describes
it (stored type, scale, offset, nodata) and equals xarray; every GeoParquet file (table
files, the items mirror, a subset) passes the GeoParquet validator's conformance tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.postgres


def _decode(raw: np.ndarray, entry: dict[str, Any]) -> np.ndarray:
    """CF decoding from the catalogue's `cube:variables` entry alone."""
    values = raw.astype(np.float64)
    nodata = entry.get("nodata")
    if nodata is not None:
        missing = np.isnan(values) if nodata == "nan" else values == float(nodata)
        values[missing] = np.nan
    return values * entry.get("scale", 1.0) + entry.get("offset", 0.0)


def test_tensorstore_reads_each_layout_as_the_catalogue_says(lake: Path) -> None:
    ts = pytest.importorskip("tensorstore")
    import xarray as xr

    collection = json.loads((lake / "sst" / "collection.json").read_text())
    checked = 0
    for layout in ("maps", "timeseries"):
        asset = collection["assets"][layout]
        decoded = xr.open_zarr(lake / "sst" / f"{layout}.zarr")
        for name, entry in asset["cube:variables"].items():
            store = ts.open(
                {
                    "driver": "zarr3",
                    "kvstore": {
                        "driver": "file",
                        "path": str(lake / "sst" / f"{layout}.zarr" / name),
                    },
                }
            ).result()
            assert str(store.dtype.numpy_dtype) == entry["data_type"]
            assert list(store.shape) == entry["shape"]
            assert list(store.chunk_layout.read_chunk.shape) == entry["chunks"]
            assert list(store.chunk_layout.write_chunk.shape) == entry["shards"]
            values = _decode(store.read().result(), entry)
            expected = decoded[name].values.astype(np.float64)
            np.testing.assert_allclose(values, expected, rtol=0, atol=1e-9, equal_nan=True)
            checked += 1
    assert checked == 2


def test_geoparquet_files_pass_the_validator(lake: Path, tmp_path: Path) -> None:
    gpv = pytest.importorskip("geoparquet_validator")
    import lake as api

    cut = tmp_path / "cut.parquet"
    api.subset(lake, "occ", str(cut), bbox=(-20, 30, 0, 60))
    files = [*sorted((lake / "occ" / "data").rglob("*.parquet")), lake / "occ" / "items.parquet",
             lake / "sst" / "items.parquet", cut]  # fmt: skip
    assert len(files) > 4
    for path in files:
        report = gpv.check(str(path))
        assert gpv.failed(report) == [], (path, report["outcomes"])
        assert gpv.conformant(report, "core") and gpv.conformant(report, "covering")
