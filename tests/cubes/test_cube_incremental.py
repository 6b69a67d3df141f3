"""Daily files appended over several runs: only new steps are written, reruns write nothing."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import numpy as np
import pytest

from helpers import assert_same, decoded_source, open_cube, spec_for
from lake.cubes.publish import publish
from lake.flows.cubes import build_cube
from lake.samples import write_daily_product
from lake.storage import Root

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in folder.rglob("*")
        if p.is_file()
    }


@pytest.mark.distributed
def test_appends_in_several_runs(tmp_path: Path, client: Client) -> None:
    src = tmp_path / "src"
    files = write_daily_product(src, start="2024-01-01", days=12, ny=60, nx=80)
    chunking = {"maps_time_per_shard": 4, "timeseries_time": 8, "inner_chunk_mb": 0.06}
    spec = spec_for(str(tmp_path / "lake"), str(src / "*.nc"), tmp_path, chunking=chunking)
    root, dataset = Root(spec.root), spec.datasets[0]
    staging = tmp_path / "staging"
    staging.mkdir()

    # Run 1: 5 days; run 2: +4 days (crossing shard boundaries); run 3: +3 days.
    for batch in (files[:5], files[5:9], files[9:]):
        for f in batch:
            os.link(f, staging / f.name)
        spec_run = spec_for(spec.root, str(staging / "*.nc"), tmp_path, chunking=chunking)
        before = _snapshot(tmp_path / "lake")
        result = build_cube(client, root, spec_run.datasets[0])
        assert result.added == {"maps": len(batch), "timeseries": len(batch)}
        assert result.files_read == len(batch)
        assert result.bytes_in == sum(f.stat().st_size for f in batch)
        after = _snapshot(tmp_path / "lake")
        # Only shards holding new steps were (re)written: at most the last partial one before.
        first_new = result.ntime - len(batch)
        for layout in ("maps", "timeseries"):
            meta = json.loads((tmp_path / f"lake/cube/{layout}.zarr/thetao/zarr.json").read_text())
            steps = meta["chunk_grid"]["configuration"]["chunk_shape"][0]
            prefix = f"cube/{layout}.zarr/thetao/c/"
            kept = [
                k
                for k in before
                if k.startswith(prefix) and int(k.split("/")[4]) < first_new // steps
            ]
            for key in kept:
                assert after[key] == before[key], f"{key} was rewritten"
            if layout == "maps" and first_new >= 4:
                assert kept, "the test should cover shards that must stay untouched"
        expected = decoded_source(*sorted(staging.glob("*.nc")))
        for layout in ("maps", "timeseries"):
            assert_same(open_cube(str(tmp_path / "lake" / "cube" / f"{layout}.zarr")), expected)

    # Run 4: no new file: nothing is written at all.
    before = _snapshot(tmp_path / "lake")
    result = build_cube(client, root, dataset)
    assert result.added == {}
    assert _snapshot(tmp_path / "lake") == before


@pytest.mark.distributed
def test_interrupted_layout_is_completed(tmp_path: Path, client: Client) -> None:
    """A build that published maps but died before timeseries is completed by the next run."""
    import shutil

    src = tmp_path / "src"
    write_daily_product(src, days=6, ny=30, nx=40)
    spec = spec_for(str(tmp_path / "lake"), str(src / "*.nc"), tmp_path)
    build_cube(client, Root(spec.root), spec.datasets[0])
    # Simulate: timeseries published with 3 steps only (an older publish), maps with 6.
    only3 = spec_for(str(tmp_path / "old"), sorted(map(str, src.glob("*.nc")))[:3], tmp_path)
    build_cube(client, Root(only3.root), only3.datasets[0])
    shutil.rmtree(tmp_path / "lake/cube/timeseries.zarr")
    shutil.copytree(tmp_path / "old/cube/timeseries.zarr", tmp_path / "lake/cube/timeseries.zarr")
    result = build_cube(client, Root(spec.root), spec.datasets[0])
    assert result.added == {"timeseries": 3}
    ts = open_cube(str(tmp_path / "lake/cube/timeseries.zarr"))
    maps = open_cube(str(tmp_path / "lake/cube/maps.zarr"))
    assert ts.sizes["time"] == 6
    assert_same(ts, maps)


@pytest.mark.distributed
def test_unpublished_chunks_are_invisible(tmp_path: Path, client: Client) -> None:
    """Chunks written past the published shape (a killed build) do not change what readers see."""
    from lake.cubes.netcdf import scan_file
    from lake.cubes.plan import plan_cube
    from lake.flows.cubes import submit_writes
    from lake.flows.gather import gather
    from lake.registry import cube_reader

    src = tmp_path / "src"
    files = write_daily_product(src, days=6, ny=30, nx=40)
    spec3 = spec_for(str(tmp_path / "lake"), [str(f) for f in files[:3]], tmp_path)
    build_cube(client, Root(spec3.root), spec3.datasets[0])
    published = open_cube(str(tmp_path / "lake/cube/maps.zarr"))

    spec6 = spec_for(str(tmp_path / "lake"), str(src / "*.nc"), tmp_path)
    infos = [scan_file(str(f)) for f in files]
    reader = cube_reader(spec6.datasets[0])
    plan = plan_cube(Root(spec6.root), spec6.datasets[0], infos, reader)
    gather(client, submit_writes(client, plan, reader), "write", lambda *a: None, "")
    # Killed here: data written, metadata not published.
    after = open_cube(str(tmp_path / "lake/cube/maps.zarr"))
    assert after.sizes["time"] == 3
    assert_same(after, published)
    # The next run completes the work.
    result = build_cube(client, Root(spec6.root), spec6.datasets[0])
    assert result.added == {"maps": 3, "timeseries": 3}
    assert np.array_equal(
        open_cube(str(tmp_path / "lake/cube/maps.zarr"))["time"].values,
        decoded_source(*files)["time"].values,
    )


@pytest.mark.distributed
def test_publish_killed_among_array_documents_is_rolled_back(
    tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publish killed after some array documents: readers and `lake verify` see the old
    cube (the journal names the documents ahead), and the next build, even with nothing to
    append, rolls them back."""
    from lake.cubes.netcdf import scan_file
    from lake.cubes.plan import plan_cube
    from lake.cubes.publish import JOURNAL
    from lake.flows.cubes import submit_writes
    from lake.flows.gather import gather
    from lake.registry import cube_reader
    from lake.stac.catalog import write_catalogue
    from lake.stac.verify import verify_lake

    src = tmp_path / "src"
    files = write_daily_product(src, days=6, ny=30, nx=40)
    lake = tmp_path / "lake"
    spec3 = spec_for(str(lake), [str(f) for f in files[:3]], tmp_path)
    build_cube(client, Root(spec3.root), spec3.datasets[0])
    write_catalogue(Root(spec3.root), spec3)
    published = open_cube(str(lake / "cube/maps.zarr"))

    spec6 = spec_for(str(lake), str(src / "*.nc"), tmp_path)
    reader = cube_reader(spec6.datasets[0])
    infos = [scan_file(str(f)) for f in files]
    plan = plan_cube(Root(spec6.root), spec6.datasets[0], infos, reader)
    gather(client, submit_writes(client, plan, reader), "write", lambda *a: None, "")
    maps = next(w for w in plan.layouts if w.layout == "maps")
    puts: list[str] = []
    real_put = Root.put

    def dying_put(self: Root, path: str, data: bytes) -> None:
        if path.endswith("/maps.zarr/zarr.json"):
            # Killed after every array document, before the group document (the order of
            # the array documents among themselves is not fixed).
            raise KeyboardInterrupt
        puts.append(path)
        real_put(self, path, data)

    monkeypatch.setattr(Root, "put", dying_put)
    with pytest.raises(KeyboardInterrupt):
        publish(Root(spec6.root), maps.group, maps.documents)
    monkeypatch.undo()
    assert any(p.endswith("/time/zarr.json") for p in puts)
    assert (lake / "cube/maps.zarr" / JOURNAL).exists()
    assert_same(open_cube(str(lake / "cube/maps.zarr")), published)
    report = verify_lake(Root(spec3.root))
    assert not report.problems, report.problems
    assert any("time/zarr.json: holds the metadata of an append" in n for n in report.notes)

    # The new files are withdrawn: the next build has nothing to append, and settles it.
    result = build_cube(client, Root(spec3.root), spec3.datasets[0])
    assert result.added == {}
    assert not (lake / "cube/maps.zarr" / JOURNAL).exists()
    assert not verify_lake(Root(spec3.root)).problems
    time_doc = json.loads((lake / "cube/maps.zarr/time/zarr.json").read_text())
    assert time_doc["shape"] == [3]
    assert_same(open_cube(str(lake / "cube/maps.zarr")), published)


@pytest.mark.distributed
def test_layouts_without_chunk_checksums_keep_their_codecs(
    tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cube written before chunks carried crc32c is extended with its own codecs."""
    import lake.cubes.template

    src = tmp_path / "src"
    files = write_daily_product(src, start="2024-01-01", days=6, ny=30, nx=40)
    for path in files[3:]:
        path.rename(tmp_path / path.name)
    spec = spec_for(str(tmp_path / "lake"), str(src / "*.nc"), tmp_path)
    root, dataset = Root(spec.root), spec.datasets[0]
    plain = lake.cubes.template.plain_encoding
    with monkeypatch.context() as patch:
        patch.setattr(
            lake.cubes.template, "plain_encoding", lambda var, checksums=True: plain(var, False)
        )
        build_cube(client, root, dataset)

    def inner_codecs() -> list[str]:
        meta = json.loads((tmp_path / "lake" / "cube" / "maps.zarr" / "thetao" / "zarr.json")
                          .read_text())  # fmt: skip
        return [c["name"] for c in meta["codecs"][0]["configuration"]["codecs"]]

    assert "crc32c" not in inner_codecs()
    for path in files[3:]:
        (tmp_path / path.name).rename(path)
    result = build_cube(client, root, dataset)
    assert result.added == {"maps": 3, "timeseries": 3}
    assert "crc32c" not in inner_codecs()
    for layout in ("maps", "timeseries"):
        assert_same(open_cube(str(tmp_path / "lake" / "cube" / f"{layout}.zarr")),
                    decoded_source(*files))  # fmt: skip
    # A new cube gets checksums on every chunk.
    fresh = spec_for(str(tmp_path / "fresh"), str(src / "*.nc"), tmp_path)
    build_cube(client, Root(fresh.root), fresh.datasets[0])
    meta = json.loads((tmp_path / "fresh" / "cube" / "maps.zarr" / "thetao" / "zarr.json")
                      .read_text())  # fmt: skip
    assert meta["codecs"][0]["configuration"]["codecs"][-1]["name"] == "crc32c"
