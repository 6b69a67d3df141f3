"""Benchmark: NetCDF -> Zarr v3 cubes, ours against the floor and what users write today.

    python benchmarks/cubes.py                 # 2 GB and 4 GB source sets, 3 runs per step
    python benchmarks/cubes.py --sizes 2 --repeat 1   # quicker: one 2 GB run per step
    python benchmarks/cubes.py --depths 4      # only the products with four depth levels
    python benchmarks/cubes.py --against HEAD~1   # and that commit's build, each round
    python benchmarks/cubes.py --suite stations       # station series only (a minute)

Each size is generated as a product with one depth level (one map a day) and as one with
several (``--depths``, four by default: the same bytes in a quarter of the days). For each
product, in the same run and on the same machine:

* ``floor``: read and decode every source value once and compress it once with the codec
  the cubes use, no write, on all cores: work no converter can avoid.
* ``floor_write``: the floor, plus writing the compressed bytes twice (one file per day
  and copy) with plain file writes: what storing two copies costs on this machine's disk.
* ``floor_h5py``: the floor with the fastest reading found (h5py into a reused buffer, as
  the build reads NetCDF-4), the same decoding and the same compressed bytes.
* ``ours``: ``lake build`` writing both layouts (maps and timeseries).
* ``mfdataset``: ``xr.open_mfdataset(files).to_zarr(...)``.
* ``mfdataset_ts``: ``xr.open_mfdataset(files).chunk(<time-series chunks>).to_zarr(...)``.

Station series (``--suite stations``): a decade of hourly data at 5 depths, at 1 station and
at 10 (one OceanSITES-like file each), ``lake build`` (``ours``) against the plain script
``xr.open_mfdataset(files).chunk({"TIME": -1}).to_zarr(...)`` (``plain``) and against
reading every value once (``read``: ``xr.open_dataset(file).load()``, the floor), each
with its interpreter's start and imports; objects written are counted. Written to
``benchmarks/results/cubes-stations.json``.

Each step runs in its own process tree; peak RSS is the sum over that tree (client,
scheduler and workers), sampled every 0.1 s. Reads count the GET requests (whole or ranged)
and bytes the Zarr store serves for (i) one point's full time series and (ii) one day's map.
Results are printed as a table and written to ``benchmarks/results/cubes.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from measure import run_measured, worktree
from zarr.storage import WrapperStore

HERE = Path(__file__).resolve().parent
NY, NX = 1024, 1440  # 1/12 degree over 85 x 120 degrees: a regional Copernicus product
DAYS_PER_GB = 365 / 2.15  # one float32 map is 5.9 MB
TS_CHUNKS = {"time": 256, "depth": 1, "latitude": 32, "longitude": 64}


# --- steps (each runs in a child process) ----------------------------------------------------


_BUFFERS: dict[tuple[tuple[int, ...], str], np.ndarray] = {}
"""Per worker process: one read buffer per shape and dtype, reused from file to file."""


def _decoded_h5py(path: str) -> np.ndarray:
    """One file's map through h5py into a reused buffer, then CF-decoded (fill values to
    NaN): the least reading and decoding found here."""
    import h5py

    with h5py.File(path, "r") as f:
        dataset = f["thetao"]
        key = (dataset.shape, dataset.dtype.str)
        if key not in _BUFFERS:
            _BUFFERS[key] = np.empty(dataset.shape, dataset.dtype)
        buffer = _BUFFERS[key]
        dataset.read_direct(buffer)
        fill = dataset.attrs["_FillValue"]
    return np.where(buffer == fill, np.float32(np.nan), buffer)


def _floor_file(job: tuple[str, str | None, str]) -> tuple[int, int]:
    """Decode one file (through xarray, or h5py) and compress it once; with an output
    folder, also write the compressed bytes once per copy."""
    import numcodecs
    import xarray as xr

    path, out, reader = job
    codec = numcodecs.Blosc(cname="zstd", clevel=1, shuffle=numcodecs.Blosc.SHUFFLE)
    if reader == "h5py":
        values = _decoded_h5py(path)
    else:
        with xr.open_dataset(path) as ds:
            values = ds["thetao"].values  # decoded: fill values masked to NaN
    data = codec.encode(values)
    if out is not None:
        for copy in ("maps", "timeseries"):
            with open(Path(out) / copy / Path(path).with_suffix(".bin").name, "wb") as f:
                f.write(data)
    return values.nbytes, len(data)


def step_floor(src: Path, out: Path, write: bool = False, reader: str = "xarray") -> dict[str, Any]:
    from multiprocessing import Pool

    if write:
        for copy in ("maps", "timeseries"):
            (out / copy).mkdir(parents=True)
    jobs = [(f, str(out) if write else None, reader) for f in sorted(map(str, src.glob("*.nc")))]
    with Pool(os.cpu_count() or 1) as pool:
        results = pool.map(_floor_file, jobs, chunksize=4)
    return {"bytes": sum(r[0] for r in results), "compressed": sum(r[1] for r in results)}


def step_floor_write(src: Path, out: Path) -> dict[str, Any]:
    """The floor, plus writing its compressed bytes twice (one file per day and copy) with
    plain file writes: what storing two copies costs on this machine's disk."""
    return step_floor(src, out, write=True)


def step_floor_h5py(src: Path, out: Path) -> dict[str, Any]:
    """The floor with the fastest reading found here (h5py into a reused buffer, as the
    cube build reads NetCDF-4), the same decoding and compression: same bytes out."""
    return step_floor(src, out, reader="h5py")


def step_ours(src: Path, out: Path) -> dict[str, Any]:
    spec = out.parent / "spec.yaml"
    spec.write_text(
        f"root: {out}\ndatasets:\n  - id: bench\n    metadata: {{license: CC-BY-4.0}}\n"
        f"    cube:\n      netcdf: '{src}/*.nc'\n"
    )
    lake = Path(sys.executable).parent / "lake"
    subprocess.run([str(lake), "build", str(spec)], check=True, stdout=subprocess.DEVNULL)
    return {}


def step_mfdataset(src: Path, out: Path, rechunk: bool = False) -> dict[str, Any]:
    """The script users write today, as written: ``open_mfdataset`` with its defaults and
    Dask's default (threaded) scheduler. (``parallel=True`` opens files from several threads
    and failed here with ``RuntimeError: NetCDF: HDF error``.)"""
    import xarray as xr

    ds = xr.open_mfdataset(sorted(src.glob("*.nc")))
    if rechunk:
        ds = ds.chunk(TS_CHUNKS)
    for var in ds.variables.values():
        var.encoding.pop("chunks", None)
        var.encoding.pop("preferred_chunks", None)
    ds.to_zarr(out, mode="w", zarr_format=3, consolidated=True)
    return {}


def step_mfdataset_ts(src: Path, out: Path) -> dict[str, Any]:
    return step_mfdataset(src, out, rechunk=True)


def step_station_plain(src: Path, out: Path) -> dict[str, Any]:
    """The plain script for a station series: one chunk along time, Zarr v3."""
    import warnings

    import xarray as xr

    warnings.simplefilter("ignore")
    ds = xr.open_mfdataset(sorted(src.glob("*.nc")))
    ds.chunk({"TIME": -1}).to_zarr(out, mode="w", zarr_format=3, consolidated=True)
    return {}


def step_station_read(src: Path, out: Path) -> dict[str, Any]:
    """The floor: every value read and decoded once, nothing written."""
    import xarray as xr

    for path in sorted(src.glob("*.nc")):
        with xr.open_dataset(path) as ds:
            ds.load()
    return {}


STEPS = {
    "station_plain": step_station_plain,
    "station_read": step_station_read,
    "floor": step_floor,
    "floor_write": step_floor_write,
    "floor_h5py": step_floor_h5py,
    "ours": step_ours,
    "mfdataset": step_mfdataset,
    "mfdataset_ts": step_mfdataset_ts,
}


# --- measuring -------------------------------------------------------------------------------


def run_step(name: str, src: Path, out: Path, tree: Path | None = None) -> dict[str, Any]:
    """Run one step in a child process; wall time and peak RSS of its whole process tree.
    With ``tree``, ``lake`` is imported from that tree's ``src`` (``--against``)."""
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    result_file = out.parent / f"{out.name}.result.json"
    cmd = [sys.executable, __file__, "--step", name, "--src", str(src), "--out", str(out),
           "--result", str(result_file)]  # fmt: skip
    env = None if tree is None else {**os.environ, "PYTHONPATH": str(tree / "src")}
    measured = run_measured(cmd, env=env)
    extra = json.loads(result_file.read_text()) if result_file.exists() else {}
    return {"step": name, **measured, **extra}


class CountingStore(WrapperStore):  # type: ignore[type-arg]
    """Wraps a Zarr store and counts the GET requests (whole or ranged) and bytes it serves.

    Counters live on the class: zarr may make new wrappers of a store (e.g. read-only copies).
    """

    gets = 0
    nbytes = 0

    @classmethod
    def reset(cls) -> None:
        cls.gets = cls.nbytes = 0

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        buf = await self._store.get(key, prototype, byte_range)
        CountingStore.gets += 1
        CountingStore.nbytes += len(buf) if buf is not None else 0
        return buf

    async def get_partial_values(self, prototype: Any, key_ranges: Any) -> Any:
        key_ranges = list(key_ranges)
        bufs = await self._store.get_partial_values(prototype, key_ranges)
        CountingStore.gets += len(key_ranges)
        CountingStore.nbytes += sum(len(b) for b in bufs if b is not None)
        return bufs


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure_reads(store_path: Path, ntime: int) -> dict[str, Any]:
    """GETs and bytes to read one point's full series and one day's full map."""
    import zarr
    from zarr.storage import LocalStore

    total = _tree_bytes(store_path / "thetao")
    out: dict[str, Any] = {"stored_bytes": total}
    for what in ("point_series", "day_map"):
        store = CountingStore(LocalStore(store_path, read_only=True))
        array = zarr.open_group(store, mode="r")["thetao"]
        CountingStore.reset()
        if what == "point_series":
            array[:, 0, NY // 2, NX // 2]
        else:
            array[ntime // 2, 0, :, :]
        out[what] = {
            "gets": CountingStore.gets,
            "bytes": CountingStore.nbytes,
            "fraction": CountingStore.nbytes / total,
        }
    return out


def _fmt(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return str(n)


def bench_size(
    gb: float, work: Path, repeat: int, depths: int = 1, against: tuple[str, Path] | None = None
) -> dict[str, Any]:
    """One product of ``gb`` uncompressed at ``depths`` levels (so fewer days with more);
    ``against``: a commit and its checkout, whose build runs beside ours each round."""
    from lake.samples import write_daily_product

    days = round(gb * DAYS_PER_GB / depths)
    src = work / (f"src-{days}d" if depths == 1 else f"src-{days}d-{depths}z")
    if len(list(src.glob("*.nc"))) != days:
        shutil.rmtree(src, ignore_errors=True)
        t = time.perf_counter()
        write_daily_product(src, start="2020-01-01", days=days, ny=NY, nx=NX, depths=depths,
                            packed=False)  # fmt: skip
        print(f"generated {days} daily files in {time.perf_counter() - t:.0f} s", flush=True)
    source_bytes = days * depths * NY * NX * 4
    on_disk = _tree_bytes(src)
    rows = []
    outs = {
        "floor": work / "out" / "floor",
        "floor_write": work / "out" / "floor_write",
        "floor_h5py": work / "out" / "floor_h5py",
        "ours": work / "out" / "ours",
        **({f"ours@{against[0]}": work / "out" / "against"} if against else {}),
        "mfdataset": work / "out" / "mfdataset.zarr",
        "mfdataset_ts": work / "out" / "mfdataset_ts.zarr",
    }
    # Steps take turns, round after round, so a machine that slows down or speeds up
    # during the run weighs on every step alike. Each output is deleted right after its
    # run (its reads measured first, in the last round), so no step runs with another's
    # output in the page cache.
    all_runs: dict[str, list[dict[str, Any]]] = {name: [] for name in outs}
    reads: dict[str, dict[str, Any]] = {}
    stored: dict[str, int] = {}
    for round_ in range(repeat):
        for name, out in outs.items():
            tree = against[1] if against and name.startswith("ours@") else None
            run = run_step("ours" if tree else name, src, out, tree)
            run["step"] = name
            all_runs[name].append(run)
            if round_ == repeat - 1 and run["status"] == "ok" and not name.startswith("floor"):
                if name.startswith("ours"):
                    reads[name] = {
                        layout: measure_reads(out / "bench" / f"{layout}.zarr", days)
                        for layout in ("maps", "timeseries")
                    }
                else:
                    reads[name] = {"zarr": measure_reads(out, days)}
                stored[name] = _tree_bytes(out)
            shutil.rmtree(out, ignore_errors=True)
    for name in outs:
        runs = sorted(all_runs[name], key=lambda r: r["seconds"])
        row = runs[len(runs) // 2]  # the median run
        row["all_seconds"] = [r["seconds"] for r in all_runs[name]]
        row["peak_rss"] = max(r["peak_rss"] for r in runs)
        row["mb_per_s"] = source_bytes / 1e6 / row["seconds"]
        if name in reads:
            row["reads"], row["stored_bytes"] = reads[name], stored[name]
        print(json.dumps({k: v for k, v in row.items() if k != "reads"}), flush=True)
        if row["status"] != "ok":
            print(f"{name}: {row['status']}", flush=True)
        rows.append(row)
    return {"gb": gb, "days": days, "depths": depths, "grid": [NY, NX],
            "source_bytes": source_bytes,
            "source_on_disk": on_disk, "rows": rows}  # fmt: skip


def bench_stations(work: Path, repeat: int, counts: list[int]) -> list[dict[str, Any]]:
    """Station series at each number of stations: ours, the plain script, the read floor."""
    from lake.samples import write_mooring

    results = []
    for stations in counts:
        src = work / f"stations-{stations}"
        if not list(src.glob("*.nc")):
            write_mooring(src, start="2014-01-01", months=120, months_per_file=120,
                          depths=(5.0, 10.0, 50.0, 100.0, 200.0), stations=stations)  # fmt: skip
        outs = {"ours": work / "out" / "station-ours", "plain": work / "out" / "station.zarr",
                "read": work / "out" / "station-read"}  # fmt: skip
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in outs}
        objects: dict[str, int] = {}
        for _ in range(repeat):
            for name, out in outs.items():
                run = run_step(name if name == "ours" else f"station_{name}", src, out)
                runs[name].append(run)
                if out.exists():
                    objects[name] = sum(1 for p in out.rglob("*") if p.is_file())
                shutil.rmtree(out, ignore_errors=True)
        rows = []
        for name in outs:
            ordered = sorted(runs[name], key=lambda r: r["seconds"])
            row = {**ordered[len(ordered) // 2], "step": name,
                   "all_seconds": [r["seconds"] for r in runs[name]],
                   "objects": objects.get(name, 0)}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
        results.append({"stations": stations, "source_on_disk": _tree_bytes(src), "rows": rows})
    return results


def print_stations(results: list[dict[str, Any]]) -> None:
    for result in results:
        plain = next(r for r in result["rows"] if r["step"] == "plain")["seconds"]
        read = next(r for r in result["rows"] if r["step"] == "read")["seconds"]
        print(f"\n== a decade of hourly data at 5 depths, {result['stations']} station(s), "
              f"{_fmt(result['source_on_disk'])} NetCDF4 ==")  # fmt: skip
        print(f"{'step':<8}{'status':<10}{'wall s':>8}{'x plain':>9}{'x read':>8}"
              f"{'objects':>9}{'peak RSS':>11}")  # fmt: skip
        for r in result["rows"]:
            print(f"{r['step']:<8}{r['status'][:9]:<10}{r['seconds']:>8.1f}"
                  f"{r['seconds'] / plain:>9.2f}{r['seconds'] / read:>8.2f}"
                  f"{r['objects']:>9}{_fmt(r['peak_rss']):>11}")  # fmt: skip


def print_table(result: dict[str, Any]) -> None:
    floor = next(r for r in result["rows"] if r["step"] == "floor")["seconds"]
    written = next(r for r in result["rows"] if r["step"] == "floor_write")["seconds"]
    tight = next(r for r in result["rows"] if r["step"] == "floor_h5py")["seconds"]
    levels = result.get("depths", 1)
    print(f"\n== {result['days']} daily files of {levels} depth level(s), "
          f"{_fmt(result['source_bytes'])} uncompressed "
          f"({_fmt(result['source_on_disk'])} zlib NetCDF4) ==")  # fmt: skip
    print(f"{'step':<14}{'status':<10}{'wall s':>8}{'x floor':>9}{'x f+write':>10}"
          f"{'x f_h5py':>10}{'MB/s':>8}{'peak RSS':>11}{'stored':>11}")  # fmt: skip
    for r in result["rows"]:
        ratio, stored = r["seconds"] / floor, _fmt(r.get("stored_bytes", 0))
        print(f"{r['step']:<14}{r['status'][:9]:<10}{r['seconds']:>8.1f}{ratio:>9.2f}"
              f"{r['seconds'] / written:>10.2f}{r['seconds'] / tight:>10.2f}"
              f"{r['mb_per_s']:>8.0f}{_fmt(r['peak_rss']):>11}{stored:>11}")  # fmt: skip
    print(f"\n{'reads':<26}{'point series: GETs':>19}{'bytes':>11}{'% cube':>8}"
          f"{'day map: GETs':>15}{'bytes':>11}{'% cube':>8}")  # fmt: skip
    for r in result["rows"]:
        for layout, m in r.get("reads", {}).items():
            p, d = m["point_series"], m["day_map"]
            print(f"{r['step'] + ' ' + layout:<26}{p['gets']:>19}{_fmt(p['bytes']):>11}"
                  f"{100 * p['fraction']:>7.2f}%{d['gets']:>15}{_fmt(d['bytes']):>11}"
                  f"{100 * d['fraction']:>7.2f}%")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2,4", help="source sizes in GB, comma-separated")
    parser.add_argument(
        "--depths", default="1,4", help="depth levels of each product, comma-separated"
    )
    parser.add_argument("--suite", choices=["all", "grids", "stations"], default="all")
    parser.add_argument("--stations", default="1,10", help="station counts, comma-separated")
    parser.add_argument("--workdir", default="/tmp/lake-bench-cubes")
    parser.add_argument("--repeat", type=int, default=3, help="runs per step (median kept)")
    parser.add_argument("--against", help="also build with this commit's code, in the same run")
    parser.add_argument("--step", choices=sorted(STEPS))
    parser.add_argument("--src")
    parser.add_argument("--out")
    parser.add_argument("--result")
    args = parser.parse_args()
    if args.step:
        extra = STEPS[args.step](Path(args.src), Path(args.out))
        Path(args.result).write_text(json.dumps(extra))
        return
    work = Path(args.workdir)
    machine = {
        "cpus": os.cpu_count(),
        "memory": psutil.virtual_memory().total,
        "python": platform.python_version(),
    }
    if args.suite in ("all", "stations"):
        counts = [int(n) for n in args.stations.split(",")]
        stations = bench_stations(work, args.repeat, counts)
        print_stations(stations)
        dest = HERE / "results" / "cubes-stations.json"
        dest.write_text(json.dumps({"machine": machine, "stations": stations}, indent=1))
        print(f"\nresults written to {dest}")
    if args.suite in ("all", "grids"):
        against = (args.against, worktree(work, args.against)) if args.against else None
        sizes = [bench_size(float(gb), work, args.repeat, int(depths), against)
                 for gb in args.sizes.split(",") for depths in args.depths.split(",")]  # fmt: skip
        for size in sizes:
            print_table(size)
        dest = HERE / "results" / "cubes.json"
        dest.write_text(json.dumps({"machine": machine, "sizes": sizes}, indent=1))
        print(f"\nresults written to {dest}")


if __name__ == "__main__":
    main()
