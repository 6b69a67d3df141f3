"""Rows deleted in a PostgreSQL source leave the table at the next incremental build, found
by key; only the partitions that held them are rewritten; `deletes: ignore` keeps them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from pgdata import execute, fetch
from test_tables import _build, _lake, _manifest, _occurrence_table

from lake.errors import SourceError

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

pytestmark = pytest.mark.postgres


def _spec(**incremental: Any) -> dict[str, Any]:
    return {
        "postgres": {"dsn_env": "LAKE_TEST_SOURCE", "table": "occ", "parts": 3},
        "geometry": {"lon": "lon", "lat": "lat"},
        "partition_by": ["year(eventdate)"],
        "incremental": {"column": "modified", **incremental},
        "file_mb": 0.04,
    }


def test_deleted_rows_leave_the_table(client: Client, pg_dsn: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    _occurrence_table(pg_dsn, 20_000)
    monkeypatch.setenv("LAKE_TEST_SOURCE", pg_dsn)
    lake = tmp_path / "lake"
    _build(client, str(lake), _spec(), tmp_path)
    before = {f["path"]: f for f in _manifest(lake)["files"]}
    years = dict(fetch(pg_dsn, "SELECT id, extract(year FROM eventdate)::int FROM occ "
                                "WHERE id IN (7, 8, 9)"))  # fmt: skip
    # Deletions alone (no new row past the watermark) in two partitions.
    execute(pg_dsn, "DELETE FROM occ WHERE id IN (7, 8, 9)")
    second = _build(client, str(lake), _spec(), tmp_path)
    assert second.rows_read == 0 and second.counts["deleted"] == 3
    assert second.rows == 19_997
    ids = set(_lake(lake).column("id").to_pylist())
    assert not ids & {7, 8, 9} and ids == {i for (i,) in fetch(pg_dsn, "SELECT id FROM occ")}
    after = {f["path"]: f for f in _manifest(lake)["files"]}
    touched = {f"year={y}" for y in years.values()}
    untouched = [p for p in before if not any(t in p for t in touched)]
    assert untouched and all(after[p] == before[p] for p in untouched)
    assert second.partitions_written == len(touched)
    # Deletions and updates together; then nothing: nothing is written.
    execute(
        pg_dsn,
        "DELETE FROM occ WHERE id = 100",
        "UPDATE occ SET name = 'renamed', modified = clock_timestamp() WHERE id = 101",
    )
    third = _build(client, str(lake), _spec(), tmp_path)
    assert third.rows_read == 1 and third.counts["deleted"] == 1 and third.rows == 19_996
    stamp = (lake / "occ" / "table.json").stat().st_mtime_ns
    fourth = _build(client, str(lake), _spec(), tmp_path)
    assert fourth.files_written == 0 and fourth.counts.get("deleted", 0) == 0
    assert (lake / "occ" / "table.json").stat().st_mtime_ns == stamp


def test_deletes_ignore_keeps_them(client: Client, pg_dsn: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    _occurrence_table(pg_dsn, 5_000)
    monkeypatch.setenv("LAKE_TEST_SOURCE", pg_dsn)
    lake = tmp_path / "lake"
    spec = _spec(deletes="ignore")
    _build(client, str(lake), spec, tmp_path)
    execute(pg_dsn, "DELETE FROM occ WHERE id < 100")
    result = _build(client, str(lake), spec, tmp_path)
    assert result.files_written == 0 and "deleted" not in result.counts
    assert len(_lake(lake)) == 5_000


def test_a_key_that_matches_nothing_published_is_refused(
    client: Client, pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every published key missing while the source has rows: not 5,000 deletions, but a
    key whose values changed (here: renumbered); the build stops, nothing is published."""
    _occurrence_table(pg_dsn, 5_000)
    monkeypatch.setenv("LAKE_TEST_SOURCE", pg_dsn)
    lake = tmp_path / "lake"
    _build(client, str(lake), _spec(), tmp_path)
    stamp = (lake / "occ" / "table.json").stat().st_mtime_ns
    execute(pg_dsn, "UPDATE occ SET id = id + 1000000")
    with pytest.raises(SourceError, match="matches none of the 5,000 published rows"):
        _build(client, str(lake), _spec(), tmp_path)
    assert (lake / "occ" / "table.json").stat().st_mtime_ns == stamp


def _point_file(path: Path, year: int, n: int) -> None:
    import netCDF4
    import numpy as np

    with netCDF4.Dataset(path, "w") as nc:
        nc.featureType = "point"
        nc.createDimension("obs", n)
        t = nc.createVariable("time", "f8", ("obs",))
        t.setncatts({"units": f"days since {year}-01-01", "standard_name": "time"})
        t[:] = np.arange(n)
        for name, units in (("lat", "degrees_north"), ("lon", "degrees_east")):
            v = nc.createVariable(name, "f8", ("obs",))
            v.units = units
            v[:] = np.linspace(40, 50, n)
        nc.createVariable("value", "f4", ("obs",))[:] = np.arange(n)


@pytest.mark.parametrize("deletes", ["remove", "ignore"])
def test_a_removed_file_with_deletes_ignore(client: Client, tmp_path: Path, deletes: str) -> None:
    """A file source: a file no longer listed takes its rows along, unless `deletes: ignore`."""
    from helpers import build_on, file_table_spec

    for year in (2020, 2021):
        _point_file(tmp_path / f"obs_{year}.nc", year, 50)
    spec = file_table_spec(tmp_path, "obs", "CC0-1.0", netcdf=str(tmp_path / "obs_*.nc"),
                           incremental={"deletes": deletes})  # fmt: skip
    build_on(client, spec)
    (tmp_path / "obs_2020.nc").unlink()
    build_on(client, spec)
    import pyarrow.dataset as pads

    rows = pads.dataset(tmp_path / "lake" / "obs" / "data", partitioning="hive").count_rows()
    assert rows == (100 if deletes == "ignore" else 50)
