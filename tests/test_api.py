"""The public Python API, as a notebook or a pipeline uses it: no command line involved."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pgdata import cube_and_table_spec

import lake
from lake.cubes.source import CubeReader
from lake.registry import cube_reader, table_reader
from lake.tables.source import TableReader

if TYPE_CHECKING:
    from distributed import Client

pytestmark = [pytest.mark.postgres, pytest.mark.distributed]


@pytest.fixture
def spec(tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LAKE_TEST_SOURCE", pg_dsn)
    return cube_and_table_spec(tmp_path, pg_dsn, str(tmp_path / "lake"), {}, days=3, rows=500)


def test_build_then_verify_validate_and_list(spec: Path, client: Client) -> None:
    stages: list[tuple[str, int, int]] = []
    report = lake.build(spec, scheduler=client.scheduler.address,
                        progress=lambda *a: stages.append(a))  # fmt: skip
    assert isinstance(report, lake.BuildReport)
    cube, table = report.datasets
    assert (cube.id, cube.kind, cube.read, cube.holds) == ("sst", "cube", 3, 3)
    assert cube.added == {"maps": 3, "timeseries": 3} and cube.changed
    assert (table.id, table.kind, table.read, table.holds) == ("occ", "table", 500, 500)
    assert cube.bytes_in > 0 and cube.bytes_out > 0 and table.bytes_out > 0
    assert report.catalogue.collections == 2 and report.seconds > 0
    assert {"sst: write", "occ: read", "occ: write"} <= {s for s, _, _ in stages}
    assert all(done <= total for _, done, total in stages)

    checked = lake.verify(report.root)
    assert checked.ok and checked.objects > 10, checked.problems
    listed = {d.id: d for d in lake.ls(report.root)}
    assert listed["occ"].rows == 500 and listed["sst"].kind == "cube"

    again = lake.build(spec, scheduler=client.scheduler.address, progress=False)
    assert not again.datasets[0].changed  # no new file: nothing written
    assert again.datasets[1].detail.full  # a table without `incremental` is rebuilt whole


def test_validate_against_the_official_schemas(
    spec: Path, client: Client, schema_registry: object
) -> None:
    from helpers import SHARED

    report = lake.build(spec, scheduler=client.scheduler.address, progress=False)
    valid = lake.validate(report.root, schemas=SHARED / "schemas")
    assert valid.ok and valid.objects >= 4, valid.problems


def test_plan_is_data_and_writes_nothing(spec: Path, client: Client, tmp_path: Path) -> None:
    plans = lake.plan(spec, scheduler=client.scheduler.address, only="sst")
    assert [(p.id, p.kind) for p in plans] == [("sst", "cube")]
    assert "3 files" in plans[0].read and "maps" in plans[0].write
    assert not (tmp_path / "lake" / "sst").exists()


def test_errors_are_exceptions_not_exits(tmp_path: Path) -> None:
    bad = tmp_path / "spec.yaml"
    bad.write_text("root: ./lake\ndatasets: []\n")
    with pytest.raises(lake.SpecError, match="invalid spec") as info:
        lake.build(bad, progress=False)
    assert info.value.exit_code == lake.ExitCode.SPEC
    with pytest.raises(lake.SpecError, match="cannot be read"):
        lake.load_spec(tmp_path / "missing.yaml")
    spec = lake.load_spec(_write(tmp_path, "datasets:\n  - id: a\n    cube: {netcdf: x.nc}\n"))
    with pytest.raises(lake.SpecError, match="no licence"):
        lake.plan(spec)
    licensed = _write(tmp_path, "datasets:\n  - id: a\n    cube: {netcdf: x.nc}\n"
                      "    metadata: {license: CC0-1.0}\n")  # fmt: skip
    with pytest.raises(lake.SpecError, match="no dataset has this id"):
        lake.build(licensed, only="b", progress=False)


def test_the_registry_gives_each_source_its_reader(spec: Path) -> None:
    parsed = lake.load_spec(spec)
    cube, table = parsed.datasets
    assert (cube.kind, cube.cube.kind if cube.cube else None) == ("cube", "netcdf")
    assert isinstance(cube_reader(cube), CubeReader)
    assert isinstance(table_reader(table), TableReader)
    assert table_reader(table).label == "table occ"


def test_a_section_with_no_source_or_two_is_refused(tmp_path: Path) -> None:
    with pytest.raises(lake.SpecError, match="exactly one source of the cube: one of `netcdf`"):
        lake.load_spec(_write(tmp_path, "datasets:\n  - id: a\n    cube: {layouts: [maps]}\n"))
    text = "datasets:\n  - id: a\n    table: {geometry: {lon: x, lat: y}}\n"
    with pytest.raises(lake.SpecError, match="exactly one source of the table"):
        lake.load_spec(_write(tmp_path, text))


def test_import_lake_stays_light() -> None:
    import subprocess
    import sys

    code = "import sys, lake; print(sorted(m for m in ('xarray', 'zarr', 'dask', 'pyarrow', " \
        "'distributed') if m in sys.modules)); print(callable(lake.verify))"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    assert out == ["[]", "True"]


def _write(tmp_path: Path, datasets: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(f"root: {tmp_path / 'lake'}\n{datasets}")
    return path


def test_a_failure_after_publishing_says_what_was_published(
    spec: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lake.stac.catalog

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the catalogue broke")

    monkeypatch.setattr(lake.stac.catalog, "write_catalogue", broken)
    with pytest.raises(RuntimeError, match="the catalogue broke") as info:
        lake.build(spec, scheduler=client.scheduler.address, progress=False)
    (note,) = info.value.__notes__
    assert note.startswith("published before the failure: sst, occ;")


def test_small_cube_builds_run_without_worker_processes(
    spec: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lake.api import _prepare

    assert _prepare(spec, "sst", None, None).small
    assert not _prepare(spec, "sst", None, 2).small  # workers asked for
    assert not _prepare(spec, "sst", "tcp://127.0.0.1:1", None).small  # a cluster given
    assert not _prepare(spec, None, None, None).small  # a table's size is not known

    def no_processes(*args: object, **kwargs: object) -> None:
        raise AssertionError("a small build started worker processes")

    monkeypatch.setattr("lake.flows.cluster._local_cluster", no_processes)
    report = lake.build(spec, only="sst", progress=False)
    assert report.datasets[0].added == {"maps": 3, "timeseries": 3}
    assert lake.verify(report.root).ok

    monkeypatch.setattr("lake.api.SMALL_BUILD_BYTES", 0)
    assert not _prepare(spec, "sst", None, None).small
