"""Benchmark: writing the STAC catalogue of a table with many partitions.

A table manifest with N partitions (one file each) is generated (real GeoParquet files where
the catalogue reads them: the first file's schema and the thumbnail's sample), then:

- ``ours``: ``lake.stac.catalog.write_catalogue`` (items, stac-geoparquet mirror, thumbnail,
  collection, root) for 200,000, 100,000 and 10,000 items (peak memory should not grow
  with the count), and a second run with nothing changed;
- ``floor``: after ``ours``, as many files of the items' mean size written with plain
  ``open().write()`` (the disk's and the file system's share, nothing to build);
- ``pystac``: the same 10,000 items as ``pystac.Item`` objects added to a collection, then
  ``normalize_hrefs`` + ``save`` (the path pystac issue #1207 measured at ~106 s).

Each step runs in its own process; wall time and peak RSS of its process tree (the
writer's helper processes included).

    python benchmarks/catalogue.py
    python benchmarks/catalogue.py --against HEAD~1 --sizes 100000   # and that commit's writer
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from measure import run_measured, worktree

RESULTS = Path(__file__).resolve().parent / "results" / "catalogue.json"


def _spec(root: Path) -> Any:
    from lake.spec import parse_spec

    return parse_spec({
        "root": str(root),
        "datasets": [{
            "id": "occ",
            "table": {"postgres": {"table": "occ"}, "geometry": {"lon": "lon", "lat": "lat"},
                      "partition_by": ["grid(0.5)", "year(t)"]},
            "metadata": {"title": "Occurrences", "license": "CC-BY-4.0"},
        }],
    }, "bench", root)  # fmt: skip


def generate(root: Path, n: int) -> None:
    """A manifest of ``n`` partitions; real files where the catalogue opens them."""
    import numpy as np
    import pyarrow as pa

    from lake.tables.geometry import point_wkb
    from lake.tables.manifest import FORMAT, MANIFEST
    from lake.tables.partitions import item_name

    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    x = rng.uniform(-10, 10, 1000)
    y = rng.uniform(40, 60, 1000)
    valid = np.ones(1000, bool)
    table = pa.table({
        "id": pa.array(np.arange(1000)),
        "t": pa.array(np.datetime64("2020-01-01") + np.arange(1000).astype("timedelta64[D]")),
        "geometry": point_wkb(x, y, valid),
        "bbox": pa.StructArray.from_arrays([pa.array(x), pa.array(y), pa.array(x), pa.array(y)],
                                           names=["xmin", "ymin", "xmax", "ymax"]),
    })  # fmt: skip
    import pyarrow.parquet as pq

    sample = root / "sample.parquet"
    root.mkdir(parents=True)
    pq.write_table(table, sample)
    data = sample.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    files = []
    for i in range(n):
        lat, lon = divmod(i, 720)
        cell = f"N{lat * 0.5:05.1f}E{lon * 0.5:05.1f}".replace(".", "p")
        year = 2000 + i % 20
        x0, y0 = -180 + lon * 0.5, -90 + lat * 0.5
        files.append({
            "path": f"data/cell_0p5deg={cell}/year={year}/part-bench-00000.parquet",
            "partition": {"cell_0p5deg": cell, "year": str(year)},
            "rows": 1000, "bytes": len(data), "sha256": digest,
            "bbox": [x0, y0, x0 + 0.5, y0 + 0.5], "geometry_types": ["Point"],
            "time": [f"{year}-01-01T00:00:00Z", f"{year}-12-31T00:00:00Z"],
        })  # fmt: skip
    # Listed in the order the lake writes manifests; real files where the thumbnail
    # reads (it samples at power-of-two strides of at least 256 from this many files).
    files.sort(key=lambda f: (item_name(f["path"].rsplit("/", 1)[0][5:]), f["path"]))
    for i in range(0, n, 256):
        target = root / "occ" / files[i]["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    manifest = {"format": FORMAT, "dataset": "occ", "updated": "2026-01-01T00:00:00Z",
                "source": {"kind": "table", "table": "occ", "crs_srid": None},
                "partitioning": ["grid(0.5)", "year(t)"], "geometry_column": "geometry",
                "key": [], "watermark": None, "rows": 1000 * n, "files": files}  # fmt: skip
    (root / "occ" / MANIFEST).write_text(json.dumps(manifest))


def step_ours(root: Path) -> dict[str, Any]:
    from lake.stac.catalog import write_catalogue
    from lake.storage import Root

    started = time.perf_counter()
    result = write_catalogue(Root(str(root)), _spec(root))
    first = time.perf_counter() - started
    started = time.perf_counter()
    again = write_catalogue(Root(str(root)), _spec(root))
    return {"seconds_first": first, "items": result.items, "written": result.written,
            "seconds_unchanged": time.perf_counter() - started,
            "written_unchanged": again.written}  # fmt: skip


def step_pystac(root: Path) -> dict[str, Any]:
    import pystac

    from lake.stac.describe import describe
    from lake.storage import Root

    spec = _spec(root)
    d = describe(Root(str(root)), spec.datasets[0])
    items = [pystac.Item.from_dict(i) for i in d.items()]
    started = time.perf_counter()
    catalog = pystac.Catalog("lake", "bench")
    collection = pystac.Collection(
        "occ", "bench", pystac.Extent(pystac.SpatialExtent([[-180, -90, 180, 90]]),
                                      pystac.TemporalExtent([[None, None]])),
    )  # fmt: skip
    catalog.add_child(collection)
    collection.add_items(items)
    catalog.normalize_hrefs(str(root / "pystac"))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return {"seconds_first": time.perf_counter() - started, "items": len(items)}


def step_floor(root: Path) -> dict[str, Any]:
    """The hardware's share: as many files as items, of the items' mean size, written
    with nothing to build, serialise or compare (the documents are already bytes)."""
    items = sorted((root / "occ" / "items").glob("*.json"))
    size = sum(p.stat().st_size for p in items[:1000]) // max(1, len(items[:1000]))
    data = b"x" * size
    out = root / "floor"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    started = time.perf_counter()
    for i in range(len(items)):
        with open(out / f"{i}.json", "wb") as handle:
            handle.write(data)
    seconds = time.perf_counter() - started
    shutil.rmtree(out)
    return {"seconds_first": seconds, "items": len(items), "bytes_each": size}


STEPS = {"ours": step_ours, "floor": step_floor, "pystac": step_pystac}


def run(name: str, root: Path, tree: Path | None = None) -> dict[str, Any]:
    """One step in its own process; with ``tree``, ``lake`` imported from that tree's
    ``src`` (another commit's, checked out by ``--against``)."""
    out = root.parent / f"{root.name}-{name}.json"
    # Nothing of the previous step (100,000 files removed or written) left to write back
    # while this one runs: on this machine that slowed the next step down 2-3x.
    os.sync()
    cmd = [sys.executable, __file__, "--step", name, "--root", str(root), "--out", str(out)]
    env = None if tree is None else {**os.environ, "PYTHONPATH": str(tree / "src")}
    measured = run_measured(cmd, env=env)
    extra = json.loads(out.read_text()) if out.exists() else {}
    return {"step": name, **measured, **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/lake-bench-catalogue")
    parser.add_argument("--step", choices=sorted(STEPS))
    parser.add_argument("--root")
    parser.add_argument("--out")
    parser.add_argument("--against", help="also time this commit's writer, in the same run")
    parser.add_argument("--sizes", default="200000,100000,10000")
    args = parser.parse_args()
    if args.step:
        result = STEPS[args.step](Path(args.root))
        Path(args.out).write_text(json.dumps(result))
        return
    work = Path(args.workdir)
    machine = {"cpus": os.cpu_count(), "memory": psutil.virtual_memory().total,
               "python": platform.python_version()}  # fmt: skip
    report: dict[str, Any] = {"machine": machine, "runs": []}
    print(f"{'items':>8} {'step':<8} {'first run s':>12} {'unchanged s':>12} {'peak RSS':>10}")
    tree = worktree(work, args.against) if args.against else None
    wanted = {int(n) for n in args.sizes.split(",")}
    sizes = ((200_000, ["ours"]), (100_000, ["ours", "floor"]), (10_000, ["ours", "pystac"]))
    for n, steps in ((n, steps) for n, steps in sizes if n in wanted):
        root = work / f"items-{n}"
        runs = [(name, None) for name in steps]
        if tree is not None:
            runs.insert(0, ("ours", tree))
        for name, where in runs:
            if name == "ours":  # each writer starts from a lake with no catalogue
                generate(root, n)
            result = run(name, root, where)
            label = name if where is None else f"{args.against}"
            result["n"], result["label"] = n, label
            report["runs"].append(result)
            unchanged = result.get("seconds_unchanged")
            print(f"{n:>8} {label:<8} {result.get('seconds_first', float('nan')):>12.1f} "
                  f"{'-' if unchanged is None else f'{unchanged:.1f}':>12} "
                  f"{result['peak_rss'] / 2**20:>8.0f} MiB  {result['status']}")  # fmt: skip
    if tree is not None:
        report["against"] = args.against
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1))
    print(f"results written to {RESULTS}")


if __name__ == "__main__":
    main()
