"""Benchmark: daily appends to a long cube, with and without the record of source scans.

    python benchmarks/appends.py                  # 730 daily files (2 years), local and S3
    python benchmarks/appends.py --days 365 --repeat 2   # quicker

A cube of ``--days`` daily files is built once on local disk and once on a real S3 API
(moto in server mode, on this machine, through s3fs). Then, on one Dask cluster of worker
processes, each round times:

* ``noop``: a rerun with no new file;
* ``append``: one more daily file.

each twice, taking turns: ``rescan`` deletes the dataset's scan record first, so every
source file is opened again (what every build did before the record existed); ``record``
keeps it, so only new or changed files are opened. Times are of ``build_cube`` alone, the
cluster already running, medians over ``--repeat`` rounds. Results are printed as a table
and written to ``benchmarks/results/appends.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NY, NX = 64, 96  # small maps: the cost measured is opening files, not converting them


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spec(root: str, pattern: str, work: Path, options: dict[str, Any]) -> Any:
    from lake.spec import parse_spec

    cube: dict[str, Any] = {"netcdf": pattern}
    data: dict[str, Any] = {"root": root, "datasets": [{"id": "cube", "cube": cube}]}
    if options:  # the lake's and the sources'
        data["storage_options"] = cube["storage_options"] = options
    return parse_spec(data, "appends.yaml", work)


def run_place(
    name: str, client: Any, files: list[Path], days: int, repeat: int, work: Path,
    s3: tuple[str, str] | None,
) -> list[dict[str, Any]]:  # fmt: skip
    from lake.cubes.scans import SCANS
    from lake.flows.cubes import build_cube
    from lake.storage import Root

    if s3 is None:
        options: dict[str, Any] = {}
        incoming = work / "incoming"
        shutil.rmtree(incoming, ignore_errors=True)
        incoming.mkdir(parents=True)
        root_url, pattern = str(work / "lake"), str(incoming / "*.nc")
        shutil.rmtree(root_url, ignore_errors=True)

        def add(path: Path) -> None:
            os.link(path, incoming / path.name)
    else:
        import s3fs

        endpoint, bucket = s3
        options = {"endpoint_url": endpoint}
        fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
        fs.mkdir(bucket)
        root_url, pattern = f"s3://{bucket}/lake", f"s3://{bucket}/incoming/*.nc"

        def add(path: Path) -> None:
            fs.put_file(str(path), f"{bucket}/incoming/{path.name}")

    spec = _spec(root_url, pattern, work, options)
    root, dataset = Root(spec.root, options), spec.datasets[0]
    for path in files[:days]:
        add(path)
    started = time.perf_counter()
    first = build_cube(client, root, dataset)
    print(f"{name}: first build of {days} files in {time.perf_counter() - started:.1f} s",
          flush=True)  # fmt: skip
    assert first.files_scanned == days

    times: dict[tuple[str, str], list[float]] = {}
    scanned: dict[tuple[str, str], int] = {}
    following = iter(files[days:])

    def timed(action: str, variant: str) -> None:
        record = root.path("cube", SCANS)
        if variant == "rescan" and root.fs().exists(record):
            root.fs().rm(record)
        if action == "append":
            add(next(following))
        started = time.perf_counter()
        result = build_cube(client, root, dataset)
        times.setdefault((action, variant), []).append(time.perf_counter() - started)
        scanned[(action, variant)] = result.files_scanned
        assert result.added == ({} if action == "noop" else {"maps": 1, "timeseries": 1})

    for _ in range(repeat):
        # The no-op with a full rescan writes nothing, the record included: append with
        # the record first, then rescan, so each variant finds what it should.
        for action, variant in (("append", "record"), ("noop", "record"),
                                ("noop", "rescan"), ("append", "rescan")):  # fmt: skip
            timed(action, variant)
    rows = []
    for action in ("noop", "append"):
        rescan = statistics.median(times[(action, "rescan")])
        record = statistics.median(times[(action, "record")])
        rows.append({
            "storage": name, "files": days, "action": action,
            "rescan_s": round(rescan, 2), "record_s": round(record, 2),
            "speedup": round(rescan / record, 1),
            "scanned_rescan": scanned[(action, "rescan")],
            "scanned_record": scanned[(action, "record")],
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", default="/tmp/lake-bench-appends")
    parser.add_argument("--places", default="local,s3")
    args = parser.parse_args()

    import logging

    from moto.server import ThreadedMotoServer

    from lake.flows.cluster import dask_client
    from lake.samples import write_daily_product

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    work = Path(args.work)
    total = args.days + 2 * args.repeat
    src = work / f"src-{total}d"
    if not src.is_dir() or len(list(src.glob("*.nc"))) != total:
        shutil.rmtree(src, ignore_errors=True)
        print(f"writing {total} daily files of {NY} x {NX} to {src}", flush=True)
        write_daily_product(src, start="2015-01-01", days=total, ny=NY, nx=NX, packed=True)
    files = sorted(src.glob("*.nc"))

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the S3 server's request log
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    rows: list[dict[str, Any]] = []
    try:
        with dask_client() as client:
            for place in args.places.split(","):
                s3 = (f"http://127.0.0.1:{port}", f"appends-{int(time.time())}")
                rows += run_place(place, client, files, args.days, args.repeat,
                                  work / place, s3 if place == "s3" else None)  # fmt: skip
    finally:
        server.stop()

    header = ("storage", "files", "action", "rescan_s", "record_s", "speedup",
              "scanned_rescan", "scanned_record")  # fmt: skip
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(row[k]) for k in header))
    dest = HERE / "results" / "appends.json"
    dest.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "days": args.days, "repeat": args.repeat, "rows": rows,
    }, indent=1))  # fmt: skip
    print(f"written to {dest}")


if __name__ == "__main__":
    main()
