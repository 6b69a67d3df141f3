"""Benchmark: a daily re-issue of an analysis-forecast product (``updates: replace``).

    python benchmarks/reissue.py                 # 365 daily files of 1024 x 1440 cells
    python benchmarks/reissue.py --days 120 --ny 256 --nx 384   # quicker

Copernicus Marine's analysis-forecast products re-issue their latest days every day (the
forecast replaced by the analysis) and add a new one. A cube of ``--days`` daily files is
built with ``cube: {updates: replace}``; then, on one running cluster of two worker
processes, each round times ``build_cube`` alone for:

* ``append``: one new day (the cube's usual daily growth);
* ``reissue``: the last ``--reissued`` days re-issued with other values, and one new day;
* ``rebuild``: the same sources built into a new cube: what a user had to do before
  published steps could be replaced (delete the cube and rebuild it from every file).

Also counted: the shard objects each build rewrote (by modification time) of those in the
cube, and whether the cube's values equal the files' afterwards. Medians over
``--repeat`` rounds; results in ``benchmarks/results/reissue.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _spec(root: Path, src: Path) -> Any:
    from lake.spec import parse_spec

    return parse_spec({"root": str(root), "datasets": [{
        "id": "cube", "metadata": {"license": "CC-BY-4.0"},
        "cube": {"netcdf": f"{src}/*.nc", "updates": "replace"},
    }]}, "reissue.yaml", root.parent)  # fmt: skip


def _shards(root: Path) -> dict[str, int]:
    """Every shard object of the cube's data arrays, with its modification time."""
    return {str(p): p.stat().st_mtime_ns for p in root.glob("cube/*.zarr/thetao/c/**/*")
            if p.is_file()}  # fmt: skip


def _reissue(src: Path, days: list[str]) -> None:
    import netCDF4

    for day in days:
        path = src / f"thetao_{day}.nc"
        with netCDF4.Dataset(path, "a") as nc:
            nc["thetao"][:] = nc["thetao"][:] + 0.25
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def _equal(root: Path, src: Path) -> bool:
    import numpy as np
    import xarray as xr

    cube = xr.open_zarr(root / "cube" / "maps.zarr")
    files = sorted(src.glob("*.nc"))
    for path in (files[0], *files[-4:]):
        with xr.open_dataset(path) as ds:
            one = cube["thetao"].sel(time=ds["time"].values).values
            if not np.array_equal(one, ds["thetao"].values, equal_nan=True):
                return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--reissued", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", default="/tmp/lake-bench-reissue")
    parser.add_argument("--ny", type=int, default=1024)
    parser.add_argument("--nx", type=int, default=1440)
    args = parser.parse_args()

    import pandas as pd
    from distributed import Client, LocalCluster

    from lake.flows.cubes import build_cube
    from lake.samples import write_daily_product
    from lake.storage import Root

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    src, lake = work / "src", work / "lake"
    write_daily_product(src, start="2023-01-01", days=args.days, ny=args.ny, nx=args.nx)
    rows: dict[str, list[dict[str, Any]]] = {"append": [], "reissue": [], "rebuild": []}
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
        build_cube(client, Root(str(lake)), _spec(lake, src).datasets[0])
        next_day = pd.Timestamp("2023-01-01") + pd.Timedelta(days=args.days)
        for _ in range(args.repeat):
            for action in ("append", "reissue", "rebuild"):
                if action in ("append", "reissue"):
                    write_daily_product(src, start=f"{next_day:%Y-%m-%d}", days=1, ny=args.ny,
                                        nx=args.nx, seed=int(next_day.day_of_year))  # fmt: skip
                    next_day += pd.Timedelta(days=1)
                if action == "reissue":
                    last = sorted(p.stem.split("_")[1] for p in src.glob("*.nc"))
                    _reissue(src, last[-1 - args.reissued : -1])
                target = work / "rebuilt" if action == "rebuild" else lake
                shutil.rmtree(work / "rebuilt", ignore_errors=True)
                before = _shards(target) if target.exists() else {}
                started = time.perf_counter()
                result = build_cube(client, Root(str(target)), _spec(target, src).datasets[0])
                seconds = time.perf_counter() - started
                after = _shards(target)
                rewritten = sum(1 for k, v in after.items() if before.get(k) != v)
                rows[action].append({
                    "seconds": seconds, "shards_rewritten": rewritten, "shards": len(after),
                    "replaced": result.replaced, "added": result.added,
                    "equal": _equal(target, src),
                })  # fmt: skip
    table = []
    print(f"{'action':<10} {'seconds':>8} {'shards rewritten':>18} {'equal':>6}")
    for action, runs in rows.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        shards = f"{runs[-1]['shards_rewritten']} / {runs[-1]['shards']}"
        equal = all(r["equal"] for r in runs)
        table.append({"action": action, "seconds": seconds, "runs": runs})
        print(f"{action:<10} {seconds:>8.2f} {shards:>18} {equal!s:>6}")
    out = HERE / "results" / "reissue.json"
    out.parent.mkdir(exist_ok=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
    out.write_text(json.dumps({"machine": machine, "days": args.days,
                               "reissued": args.reissued, "table": table}, indent=1))  # fmt: skip
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
