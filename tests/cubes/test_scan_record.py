"""The record of source scans: an append opens only new or changed files."""

from __future__ import annotations

import gzip
import logging
import os
from typing import TYPE_CHECKING

import numpy as np
import pytest
import xarray as xr

from helpers import assert_same, decoded_source, open_cube, spec_for
from lake.cubes import scans
from lake.cubes.netcdf import scan_file
from lake.cubes.scans import SCANS
from lake.cubes.source import SourceFile
from lake.flows.cubes import build_cube
from lake.samples import write_daily_product
from lake.sourcefiles import list_sources, listed
from lake.storage import Root

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client


def _round_trip(tmp_path: Path, info: SourceFile, variables: list[str] | None = None) -> SourceFile:
    root = Root(str(tmp_path / "lake"))
    file = listed(info.url, {"size": info.size, "mtime": 1.5})
    record = scans.read(root, "ds", variables)
    assert scans.write(root, "ds", record, [file], {info.url: info})
    again = scans.read(root, "ds", variables)
    reused, rescan = again.reuse([file])
    assert rescan == []
    # The same record again is not rewritten.
    assert not scans.write(root, "ds", again, [file], {info.url: info})
    return reused[info.url]


def _assert_same_info(a: SourceFile, b: SourceFile) -> None:
    assert a.url == b.url
    assert a.times.dtype == b.times.dtype
    assert list(a.times) == list(b.times)
    assert (a.time_units, a.calendar, a.size) == (b.time_units, b.calendar, b.size)
    assert a.variables == b.variables
    assert [v.source_name for v in a.variables.values()] == [
        v.source_name for v in b.variables.values()
    ]
    assert [v.direct for v in a.variables.values()] == [v.direct for v in b.variables.values()]
    assert a.statics == b.statics


def test_every_shared_file_scan_round_trips(tmp_path: Path, shared_data: Path) -> None:
    files = sorted((shared_data / "netcdf").glob("*.nc"))
    assert files
    for path in files:
        info = scan_file(str(path))
        _assert_same_info(_round_trip(tmp_path / path.stem, info), info)


def test_packed_and_cftime_scans_round_trip(tmp_path: Path) -> None:
    (packed,) = write_daily_product(tmp_path / "p", days=1, ny=8, nx=9, packed=True)
    info = scan_file(str(packed))
    assert any(v.packing for v in info.variables.values())
    _assert_same_info(_round_trip(tmp_path / "a", info), info)

    # A model calendar: times decode to cftime dates, which the record keeps exactly.
    times = xr.date_range("2001-02-27", periods=4, freq="12h", calendar="noleap",
                          use_cftime=True)  # fmt: skip
    ds = xr.Dataset(
        {"sst": (("time", "lat", "lon"), np.zeros((4, 2, 3), "f4"))},
        coords={"time": times, "lat": [1.0, 2.0], "lon": [3.0, 4.0, 5.0]},
    )
    path = tmp_path / "noleap.nc"
    ds.to_netcdf(path, encoding={"time": {"units": "hours since 2001-01-01"}})
    info = scan_file(str(path))
    assert info.times.dtype == object
    again = _round_trip(tmp_path / "b", info)
    _assert_same_info(again, info)
    assert all(t.calendar == "noleap" for t in again.times)


def test_a_record_made_otherwise_or_damaged_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (path,) = write_daily_product(tmp_path / "src", days=1, ny=8, nx=9)
    info = scan_file(str(path))
    root = Root(str(tmp_path / "lake"))
    file = listed(info.url, {"size": info.size, "mtime": 2.0})
    scans.write(root, "ds", scans.read(root, "ds", None), [file], {info.url: info})
    # Another `variables` selection scans other variables: nothing is reused.
    assert scans.read(root, "ds", ["thetao"]).infos == {}
    assert len(scans.read(root, "ds", None).infos) == 1
    # Another size or version of the same URL is another file.
    for changed in (listed(info.url, {"size": info.size + 1, "mtime": 2.0}),
                    listed(info.url, {"size": info.size, "mtime": 3.0})):  # fmt: skip
        assert scans.read(root, "ds", None).reuse([changed]) == ({}, [changed])
    # A listing without a version is never matched.
    bare = listed(info.url, {"size": info.size})
    assert bare.key is None
    assert scans.read(root, "ds", None).reuse([bare]) == ({}, [bare])
    # A damaged record costs a rescan, with a warning naming it, never the build.
    (tmp_path / "lake/ds" / SCANS).write_bytes(gzip.compress(b'{"format": "lake-source-sc'))
    with caplog.at_level(logging.WARNING, logger="lake.cubes.scans"):
        assert scans.read(root, "ds", None).infos == {}
    assert f"ds/{SCANS}: unreadable" in caplog.text


def test_listing_gives_sizes_and_versions(tmp_path: Path) -> None:
    files = write_daily_product(tmp_path / "src", days=2, ny=8, nx=9)
    found = list_sources([str(tmp_path / "src" / "*.nc")], {})
    assert list(found) == [str(f) for f in files]
    for f in files:
        file = listed(str(f), found[str(f)])
        assert file.size == f.stat().st_size
        assert file.version is not None
        assert file.key is not None
    # A named file that does not exist is listed without details; its scan says why.
    missing = str(tmp_path / "nope.nc")
    assert list_sources([missing], {}) == {missing: None}


@pytest.mark.distributed
def test_appends_scan_only_new_and_changed_files(tmp_path: Path, client: Client) -> None:
    src, staging = tmp_path / "src", tmp_path / "staging"
    files = write_daily_product(src, start="2024-01-01", days=9, ny=30, nx=40)
    staging.mkdir()
    spec = spec_for(str(tmp_path / "lake"), str(staging / "*.nc"), tmp_path)
    root, dataset = Root(spec.root), spec.datasets[0]
    record = tmp_path / "lake" / "cube" / SCANS

    def add(*paths: Path) -> None:
        for f in paths:
            os.link(f, staging / f.name)

    add(*files[:4])
    first = build_cube(client, root, dataset)
    assert (first.files_found, first.files_scanned) == (4, 4)
    assert record.exists()
    # Only hashes of the URLs are kept: no path (nor any credential in a URL) is written.
    assert str(staging).encode() not in gzip.decompress(record.read_bytes())

    add(*files[4:6])
    second = build_cube(client, root, dataset)
    assert (second.files_found, second.files_scanned, second.files_read) == (6, 2, 2)
    assert second.added == {"maps": 2, "timeseries": 2}

    # A rerun with nothing new opens no file and writes nothing, the record included.
    before = record.stat().st_mtime_ns
    rerun = build_cube(client, root, dataset)
    assert (rerun.files_scanned, rerun.added) == (0, {})
    assert record.stat().st_mtime_ns == before

    # A published file touched since (same times, new modification time) is opened again.
    stat = (staging / files[1].name).stat()
    os.utime(staging / files[1].name, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    add(files[6])
    third = build_cube(client, root, dataset)
    assert (third.files_scanned, third.added) == (2, {"maps": 1, "timeseries": 1})

    # A damaged record: every file is scanned again, and the build goes on.
    record.write_bytes(b"not gzip")
    add(*files[7:])
    fourth = build_cube(client, root, dataset)
    assert (fourth.files_found, fourth.files_scanned) == (9, 9)
    assert len(scans.read(root, "cube", None).infos) == 9

    expected = decoded_source(*files)
    for layout in ("maps", "timeseries"):
        assert_same(open_cube(str(tmp_path / "lake" / "cube" / f"{layout}.zarr")), expected)
