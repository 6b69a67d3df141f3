"""Benchmark: in-situ NetCDF (CF discrete sampling geometries) → partitioned GeoParquet.

Two generated sources, each built by, in its own process tree (wall time, peak RSS):

- ``floor``: netCDF4 reads and decodes every variable of every file once, nothing written;
- ``ours``: ``lake build`` (``table: {netcdf: ...}``: year partitions, Hilbert order,
  manifest, catalogue);
- ``plain``: the script users write: xarray ``to_dataframe()`` per file (profile variables
  repeated over their levels, padding dropped), ``pandas.concat``, geopandas
  ``to_parquet`` of one unsorted file.

Sources: ``--profiles`` Argo-like profile files (``N_PROF`` 1 × ``N_LEVELS`` 120, 100
levels used, PRES/TEMP/PSAL with ``_QC`` characters and ``_ADJUSTED``), and one contiguous
ragged file of ``--ragged-profiles`` profiles of 100 observations each.

    python benchmarks/insitu.py [--profiles 2000] [--ragged-profiles 20000]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from measure import run_measured

RESULTS = Path(__file__).resolve().parent / "results" / "insitu.json"
LEVELS, USED = 120, 100
FILL = np.float32(99999.0)


def _write_profile(path: Path, cycle: int, rng: np.random.Generator) -> None:
    import netCDF4

    with netCDF4.Dataset(path, "w") as nc:
        nc.featureType = "trajectoryProfile"
        for dim, size in (("N_PROF", 1), ("N_LEVELS", LEVELS), ("STRING8", 8)):
            nc.createDimension(dim, size)
        platform_number = nc.createVariable("PLATFORM_NUMBER", "S1", ("N_PROF", "STRING8"))
        platform_number[:] = np.array([list(f"{1900000 + cycle // 200:<8d}")], "S1")
        nc.createVariable("CYCLE_NUMBER", "i4", ("N_PROF",))[:] = [cycle % 200]
        juld = nc.createVariable("JULD", "f8", ("N_PROF",))
        juld.setncatts({"units": "days since 1950-01-01 00:00:00 UTC", "standard_name": "time"})
        juld[:] = [18000 + cycle * 3.0]
        for name, attrs, value in (
            ("LATITUDE", {"units": "degree_north", "standard_name": "latitude"}, -60 + cycle % 120),
            (
                "LONGITUDE",
                {"units": "degree_east", "standard_name": "longitude"},
                -179 + cycle % 358,
            ),
        ):
            var = nc.createVariable(name, "f8", ("N_PROF",))
            var.setncatts(attrs)
            var[:] = [value + rng.random()]
        pres = np.full((1, LEVELS), FILL, "f4")
        pres[0, :USED] = np.linspace(5, 2000, USED)
        for name, values in (
            ("PRES", pres),
            ("TEMP", np.where(pres < FILL, 20 - pres / 150 + rng.normal(0, 0.1, pres.shape), FILL)),
            ("PSAL", np.where(pres < FILL, 35 + rng.normal(0, 0.05, pres.shape), FILL)),
        ):
            for suffix in ("", "_ADJUSTED"):
                var = nc.createVariable(name + suffix, "f4", ("N_PROF", "N_LEVELS"),
                                        fill_value=FILL)  # fmt: skip
                var.units = "decibar" if name == "PRES" else "degree_Celsius"
                if name == "PRES" and not suffix:
                    var.axis = "Z"
                var[:] = values
                qc = nc.createVariable(name + suffix + "_QC", "S1", ("N_PROF", "N_LEVELS"),
                                       fill_value=b" ")  # fmt: skip
                qc[:] = np.where(pres < FILL, b"1", b" ")


def _write_ragged(path: Path, profiles: int, rng: np.random.Generator) -> None:
    import netCDF4

    obs = profiles * USED
    with netCDF4.Dataset(path, "w") as nc:
        nc.featureType = "profile"
        nc.createDimension("profile", profiles)
        nc.createDimension("obs", obs)
        for name, attrs, values in (
            ("time", {"units": "days since 2000-01-01", "standard_name": "time"},
             np.arange(profiles) * 0.5),
            ("lat", {"units": "degrees_north", "standard_name": "latitude"},
             -60 + rng.random(profiles) * 120),
            ("lon", {"units": "degrees_east", "standard_name": "longitude"},
             -180 + rng.random(profiles) * 360),
        ):  # fmt: skip
            var = nc.createVariable(name, "f8", ("profile",))
            var.setncatts(attrs)
            var[:] = values
        nc.createVariable("profile_id", "i4", ("profile",))[:] = np.arange(profiles)
        row_size = nc.createVariable("row_size", "i4", ("profile",))
        row_size.sample_dimension = "obs"
        row_size[:] = np.full(profiles, USED)
        z = nc.createVariable("z", "f4", ("obs",))
        z.setncatts({"axis": "Z", "units": "m", "positive": "down"})
        z[:] = np.tile(np.linspace(1, 1000, USED), profiles)
        for name in ("temperature", "salinity", "oxygen"):
            var = nc.createVariable(name, "f4", ("obs",), fill_value=FILL)
            var[:] = rng.normal(10, 2, obs).astype("f4")


def generate(work: Path, profiles: int, ragged: int) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    argo = work / f"argo-{profiles}"
    if not (argo / ".done").exists():
        shutil.rmtree(argo, ignore_errors=True)
        argo.mkdir(parents=True)
        for i in range(profiles):
            _write_profile(argo / f"R{1900000 + i // 200}_{i % 200:03d}.nc", i, rng)
        (argo / ".done").touch()
    big = work / f"ragged-{ragged}" / "ragged.nc"
    if not big.exists():
        big.parent.mkdir(parents=True, exist_ok=True)
        _write_ragged(big, ragged, rng)
    return {"argo profiles": argo, "ragged file": big.parent}


# --- steps (each runs in a child process) ------------------------------------------------


def _files(source: Path) -> list[str]:
    return sorted(glob.glob(str(source / "*.nc")))


def step_floor(source: Path, out: Path) -> dict[str, Any]:
    import netCDF4

    values = 0
    for path in _files(source):
        with netCDF4.Dataset(path) as nc:
            for var in nc.variables.values():
                values += np.ma.count(var[:])
    return {"values": int(values)}


def step_ours(source: Path, out: Path) -> dict[str, Any]:
    spec = out.parent / f"{out.name}-spec.yaml"
    spec.write_text(json.dumps({
        "root": str(out),
        "datasets": [{"id": "obs", "table": {"netcdf": str(source / "*.nc")},
                      "metadata": {"license": "CC-BY-4.0"}}],
    }))  # fmt: skip
    lake = shutil.which("lake") or str(Path(sys.executable).parent / "lake")
    subprocess.run([lake, "build", str(spec)], check=True, stdout=subprocess.DEVNULL)
    return {}


def _plain_frame(path: str) -> Any:
    import pandas as pd
    import xarray as xr

    with xr.open_dataset(path) as ds:
        if "row_size" in ds:  # a contiguous ragged array: repeat profile variables by hand
            frame = ds[[n for n in ds.data_vars if ds[n].dims == ("obs",)]].to_dataframe()
            counts = ds["row_size"].values
            for name in ("time", "lat", "lon", "profile_id"):
                frame[name] = np.repeat(ds[name].values, counts)
            return frame.rename(columns={"lat": "latitude", "lon": "longitude"})
        obs = [n for n in ds.data_vars if ds[n].dims == ("N_PROF", "N_LEVELS")]
        frame = ds[obs].to_dataframe().reset_index()
        frame = frame.dropna(subset=["PRES"])
        for name in ("JULD", "LATITUDE", "LONGITUDE", "CYCLE_NUMBER", "PLATFORM_NUMBER"):
            frame[name] = ds[name].values[frame["N_PROF"].to_numpy()]
        return pd.DataFrame(frame).rename(columns={"LATITUDE": "latitude",
                                                   "LONGITUDE": "longitude"})  # fmt: skip


def step_plain(source: Path, out: Path) -> dict[str, Any]:
    import geopandas as gpd
    import pandas as pd

    frame = pd.concat([_plain_frame(p) for p in _files(source)], ignore_index=True)
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].astype(str)
    geometry = gpd.points_from_xy(frame["longitude"], frame["latitude"])
    out.mkdir(parents=True, exist_ok=True)
    gpd.GeoDataFrame(frame, geometry=geometry, crs="OGC:CRS84").to_parquet(out / "obs.parquet")
    return {"rows": len(frame)}


STEPS = {"floor": step_floor, "ours": step_ours, "plain": step_plain}


def _rows(out: Path) -> int:
    import pyarrow.dataset as pads

    files = list(out.rglob("*.parquet")) if out.exists() else []
    data = [f for f in files if "items" not in f.name]
    return pads.dataset([str(f) for f in data], format="parquet").count_rows() if data else 0


def bench(name: str, source: Path, work: Path) -> dict[str, Any]:
    files = _files(source)
    size = sum(os.path.getsize(f) for f in files)
    result: dict[str, Any] = {"source": name, "files": len(files), "bytes": size, "steps": {}}
    for step in STEPS:
        out = work / "out" / step
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, __file__, "--step", step, "--source", str(source),
               "--out", str(out)]  # fmt: skip
        measured = run_measured(cmd)
        measured["rows"] = _rows(out / "obs" / "data") if step == "ours" else _rows(out)
        result["steps"][step] = measured
        shutil.rmtree(out, ignore_errors=True)
    return result


def _fmt(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=2000)
    parser.add_argument("--ragged-profiles", type=int, default=20000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/lake-bench-insitu"))
    parser.add_argument("--step", choices=sorted(STEPS))
    parser.add_argument("--source", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(STEPS[args.step](args.source, args.out)))
        return
    sources = generate(args.work, args.profiles, args.ragged_profiles)
    results = [bench(name, path, args.work) for name, path in sources.items()]
    print(f"{'source':<15} {'step':<6} {'seconds':>8} {'rows/s':>10} {'peak RSS':>10}  status")
    for res in results:
        rows = res["steps"]["ours"]["rows"]
        for step, m in res["steps"].items():
            rate = rows / m["seconds"] if m["seconds"] else 0
            print(f"{res['source']:<15} {step:<6} {m['seconds']:>8.1f} {rate:>10,.0f} "
                  f"{_fmt(m['peak_rss']):>10}  {m['status']} ({m['rows']:,} rows)")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "memory": psutil.virtual_memory().total,
                    "python": platform.python_version()},
        "results": results,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
