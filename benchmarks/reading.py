"""Benchmark: reading a lake cut to a request, over HTTP (`lake serve` on loopback), side by
side with what users write without the reading API.

A lake of one generated daily product (``--days`` × 1 depth × 480 × 720 cells on a 1/12°
grid, packed int16) with both layouts, and a table of ``--rows`` points from 12 yearly CF
point files (``table: {netcdf: ...}``).
Each request is read by:

- ``ours``: ``lake.open_cube`` / ``lake.open_table`` (the layout whose chunks the request
  touches least; files pruned by the manifest, row groups by bbox statistics);
- ``maps`` / ``timeseries``: ``xr.open_zarr`` of one layout, then ``.sel`` (a user who
  picked that layout);
- ``geopandas``: ``gpd.read_parquet(URL, bbox=...)`` of every file of the table (plain
  HTTP lists no folder: the file URLs come from the items), then the time filter in
  pandas;
- ``result`` (a column): what the reader got: the decoded bytes of the cells, the rows, or
  the file written; the floor of what any reader must fetch is the compressed size of
  those cells or rows.

The server counts requests and bytes sent; wall time is the median of ``--repeat`` runs,
each from a new ``open_*`` call (nothing cached between runs).

    python benchmarks/reading.py [--days 365] [--rows 2000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "reading.json"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


class Counter:
    requests = 0
    nbytes = 0


def _server(folder: Path) -> tuple[Any, str]:
    """`lake serve`'s handler, counting requests and bytes sent."""
    import functools
    from http.server import ThreadingHTTPServer

    from lake.serve import LakeHandler

    class Counting(LakeHandler):
        def send_response(self, code: int, message: str | None = None) -> None:
            Counter.requests += 1
            super().send_response(code, message)

        def copyfile(self, source: Any, outputfile: Any) -> None:
            class Tally:
                def write(self, data: bytes) -> int:
                    Counter.nbytes += len(data)
                    return int(outputfile.write(data))

            super().copyfile(source, Tally())

    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Counting, directory=str(folder))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def build(work: Path, days: int, rows: int) -> Path:
    import netCDF4
    import pandas as pd

    import lake
    from lake.samples import write_daily_product

    write_daily_product(work / "src", days=days, ny=480, nx=720, prefix="sst")
    rng = np.random.default_rng(0)
    points = work / "points"
    points.mkdir(exist_ok=True)

    per_year = rows // 12
    for year in range(2010, 2022):
        with netCDF4.Dataset(points / f"obs_{year}.nc", "w") as nc:
            nc.featureType = "point"
            nc.createDimension("obs", per_year)
            t = nc.createVariable("time", "f8", ("obs",))
            t.setncatts({"units": "days since 1970-01-01", "standard_name": "time"})
            start = (pd.Timestamp(f"{year}-01-01") - pd.Timestamp("1970-01-01")).days
            t[:] = np.sort(start + rng.random(per_year) * 365)
            for name, units, low, high in (("lat", "degrees_north", 30, 70),
                                           ("lon", "degrees_east", -30, 40)):  # fmt: skip
                v = nc.createVariable(name, "f8", ("obs",))
                v.setncatts({"units": units})
                v[:] = low + rng.random(per_year) * (high - low)
            nc.createVariable("value", "f4", ("obs",))[:] = rng.random(per_year)
    spec = lake.load_spec(_spec(work))
    lake.build(spec, progress=False)
    return work / "lake"


def _spec(work: Path) -> Path:
    import yaml

    path = work / "spec.yaml"
    path.write_text(yaml.safe_dump({
        "root": str(work / "lake"),
        "datasets": [
            {"id": "sst", "cube": {"netcdf": str(work / "src" / "*.nc")},
             "metadata": {"license": "CC-BY-4.0"}},
            {"id": "obs", "table": {"netcdf": str(work / "points" / "*.nc")},
             "metadata": {"license": "CC0-1.0"}},
        ],
    }))  # fmt: skip
    return path


def _measure(fn: Callable[[], Any], repeat: int) -> dict[str, Any]:
    """Median seconds of ``repeat`` runs after one untimed run (imports, first connections);
    the requests and bytes of the last run; ``fn`` returns what it got (bytes decoded,
    rows, or a file's size) as text."""
    fn()
    times, requests, nbytes, size = [], 0, 0, ""
    for _ in range(repeat):
        Counter.requests = Counter.nbytes = 0
        started = time.perf_counter()
        size = fn()
        times.append(time.perf_counter() - started)
        requests, nbytes = Counter.requests, Counter.nbytes
    return {"seconds": statistics.median(times), "requests": requests, "bytes": nbytes,
            "result": size}  # fmt: skip


def bench(lake_root: Path, repeat: int, days: int) -> dict[str, Any]:
    import warnings

    import geopandas as gpd
    import pandas as pd
    import xarray as xr

    import lake

    warnings.simplefilter("ignore")
    server, url = _server(lake_root)
    point = (-5.02, 52.51, -5.02, 52.51)
    box = (-15.0, 45.0, -5.0, 55.0)
    middle = pd.Timestamp("2024-01-01") + pd.Timedelta(days=days // 2)
    day, month = middle.strftime("%Y-%m-%d"), middle.strftime("%Y-%m")
    month_end = (middle + pd.offsets.MonthEnd(0)).strftime("%Y-%m-%d")
    results: dict[str, Any] = {}

    def cube(layout: str, **sel: Any) -> Callable[[], str]:
        def run() -> str:
            ds = xr.open_zarr(f"{url}/sst/{layout}.zarr")
            if "point" in sel:
                out = ds.thetao.sel(latitude=point[1], longitude=point[0], method="nearest")
            else:
                out = ds.thetao.sel(time=day, latitude=slice(box[1], box[3]),
                                    longitude=slice(box[0], box[2]))  # fmt: skip
            return _size(out.load().nbytes)

        return run

    def ours_cube(**kw: Any) -> Callable[[], str]:
        return lambda: _size(lake.open_cube(url, "sst", **kw).thetao.load().nbytes)

    results["point series"] = {
        "ours": _measure(ours_cube(bbox=point), repeat),
        "maps": _measure(cube("maps", point=True), repeat),
        "timeseries": _measure(cube("timeseries", point=True), repeat),
    }
    results["one day, 10°×10°"] = {
        "ours": _measure(ours_cube(bbox=box, time=day), repeat),
        "maps": _measure(cube("maps"), repeat),
        "timeseries": _measure(cube("timeseries"), repeat),
    }
    tbox, when = (0.0, 50.0, 10.0, 60.0), ("2015-01-01", "2015-06-30")

    def ours_table() -> str:
        rows = lake.open_table(url, "obs", bbox=tbox, time="2015-01/2015-06").to_table()
        return f"{rows.num_rows:,} rows"

    files = [f["path"] for f in json.loads((lake_root / "obs" / "table.json").read_text())["files"]]

    def plain_table() -> str:
        # Every file (from the items or the manifest; plain HTTP lists no folder), each read
        # with geopandas' bbox filter, then the time filter in pandas.
        frame = pd.concat([gpd.read_parquet(f"{url}/obs/{path}", bbox=tbox) for path in files])
        keep = (frame.time >= pd.Timestamp(when[0], tz="UTC")) & (
            frame.time < pd.Timestamp("2015-07-01", tz="UTC")
        )
        return f"{int(keep.sum()):,} rows"

    results["table: 10°×10°, six months"] = {
        "ours": _measure(ours_table, repeat),
        "geopandas": _measure(plain_table, repeat),
    }
    with tempfile.TemporaryDirectory() as tmp:

        def subset_ours() -> str:
            out = Path(tmp) / "ours.nc"
            lake.subset(url, "sst", str(out), bbox=box, time=month, overwrite=True)
            return f"{_size(out.stat().st_size)} file"

        def subset_plain() -> str:
            out = Path(tmp) / "plain.nc"
            ds = xr.open_zarr(f"{url}/sst/maps.zarr").sel(
                time=slice(f"{month}-01", month_end), latitude=slice(box[1], box[3]),
                longitude=slice(box[0], box[2]))  # fmt: skip
            for var in ds.variables.values():
                var.encoding = {k: v for k, v in var.encoding.items()
                                if k in ("dtype", "scale_factor", "add_offset", "_FillValue",
                                         "units", "calendar")}  # fmt: skip
            ds.to_netcdf(out)
            return f"{_size(out.stat().st_size)} file"

        results["subset to NetCDF: a month, 10°×10°"] = {
            "ours": _measure(subset_ours, repeat),
            "xarray": _measure(subset_plain, repeat),
        }
    server.shutdown()
    return results


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def print_table(results: dict[str, Any]) -> None:
    print(f"{'request':<36}{'reader':<12}{'seconds':>9}{'requests':>10}{'bytes':>11}"
          f"{'result':>16}")  # fmt: skip
    for request, readers in results.items():
        for reader, r in readers.items():
            print(f"{request:<36}{reader:<12}{r['seconds']:>9.2f}{r['requests']:>10}"
                  f"{_size(r['bytes']):>11}{r['result']:>16}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="lake-bench-reading-"))
    built = time.perf_counter()
    lake_root = build(work, args.days, args.rows)
    print(f"lake built in {time.perf_counter() - built:.0f} s at {lake_root}")
    results = bench(lake_root, args.repeat, args.days)
    print_table(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "days": args.days, "rows": args.rows, "repeat": args.repeat, "results": results,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
