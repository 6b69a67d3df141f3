"""The catalogue of a table with many partitions: streamed from the manifest, compared with
the recorded digests as sorted streams, in memory that does not grow with the item count.

Manifests are written here directly (no PostgreSQL): one small real GeoParquet file per
partition, listed the way `lake.tables.manifest.commit` lists them.
"""

from __future__ import annotations

import hashlib
import json
import random
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from lake.spec import parse_spec
from lake.stac import catalog, digests, mirror
from lake.stac.catalog import catalogued_files, write_catalogue
from lake.stac.verify import verify_lake
from lake.storage import Root
from lake.tables.files import TableFile
from lake.tables.manifest import MANIFEST, Manifest, file_order, read_manifest, stream_manifest


def _spec(root: Path) -> Any:
    return parse_spec({
        "root": str(root),
        "datasets": [{
            "id": "occ",
            "table": {"postgres": {"table": "occ"}, "geometry": {"lon": "lon", "lat": "lat"},
                      "partition_by": ["grid(1)", "year(t)"]},
            "metadata": {"title": "Occurrences", "license": "CC-BY-4.0"},
        }],
    }, "test", root)  # fmt: skip


def _sample_file() -> bytes:
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lake.tables.geometry import point_wkb

    x, y = np.array([1.0, 2.0]), np.array([50.0, 51.0])
    table = pa.table({
        "id": pa.array([1, 2]),
        "geometry": point_wkb(x, y, np.ones(2, bool)),
        "bbox": pa.StructArray.from_arrays([pa.array(x), pa.array(y), pa.array(x),
                                            pa.array(y)], names=["xmin", "ymin", "xmax", "ymax"]),
    })  # fmt: skip
    geo = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": {
        "encoding": "WKB", "geometry_types": ["Point"], "bbox": [1.0, 50.0, 2.0, 51.0],
        "covering": {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}},
    }}}  # fmt: skip
    table = table.replace_schema_metadata({"geo": json.dumps(geo)})
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


def _files(root: Path, n: int, data: bytes) -> list[TableFile]:
    """``n`` partitions (1° cells by year), each one real file."""
    digest = hashlib.sha256(data).hexdigest()
    files = []
    for i in range(n):
        lat, lon = divmod(i, 360)
        year = 2000 + i % 7
        path = f"data/cell_1deg=N{lat:03d}E{lon:03d}/year={year}/part-t-{i:05d}.parquet"
        target = root / "occ" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        files.append(TableFile(
            path, {"cell_1deg": f"N{lat:03d}E{lon:03d}", "year": str(year)}, 2, len(data),
            digest, [lon - 180.0, lat - 90.0, lon - 179.0, lat - 89.0], ["Point"],
            [f"{year}-01-01T00:00:00Z", f"{year}-12-31T00:00:00Z"], 0,
        ))  # fmt: skip
    return files


def _write_manifest(
    root: Path, files: list[TableFile], *, shuffled: bool = False, version: str = ""
) -> None:
    doc = Manifest(
        "occ",
        files,
        source={"kind": "table", "table": "occ", "crs_srid": None},
        partitioning=["grid(1)", "year(t)"],
        updated="2026-01-01T00:00:00Z",
        version=version,
    ).to_json()
    if shuffled:  # a manifest written before files were listed in item order
        random.Random(0).shuffle(doc["files"])
    (root / "occ").mkdir(parents=True, exist_ok=True)
    (root / "occ" / MANIFEST).write_text(json.dumps(doc, indent=1))


def _items(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "occ" / "items").iterdir())}


def test_items_follow_the_manifest_in_id_order(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    files = _files(root, 120, _sample_file())
    _write_manifest(root, files[::-1])  # the manifest lists them in item order anyway
    stream = stream_manifest(Root(str(root)), "occ")
    assert stream is not None
    assert stream.rows == 240 and stream.header.geometry_column == "geometry"
    listed = list(stream.files())
    assert listed == sorted(files, key=file_order)
    result = write_catalogue(Root(str(root)), _spec(root))
    assert (result.items, result.written, result.removed) == (120, 120, 0)
    collection = json.loads((root / "occ" / "collection.json").read_text())
    ids = [link["href"] for link in collection["links"] if link["rel"] == "item"]
    assert ids == sorted(ids) and len(ids) == 120
    entries = list(digests.read(Root(str(root)), "occ"))
    assert [e.id for e in entries] == sorted(e.id for e in entries)
    assert {f"{e.id}.json" for e in entries} == set(_items(root))
    report = verify_lake(Root(str(root)))
    assert not report.problems, report.problems

    # A manifest from before files were listed in item order gives the same catalogue.
    again = tmp_path / "shuffled"
    _files(again, 120, _sample_file())
    _write_manifest(again, files, shuffled=True)
    write_catalogue(Root(str(again)), _spec(again))
    assert _items(again) == _items(root)
    assert (again / "occ" / "collection.json").read_bytes() == (
        root / "occ" / "collection.json"
    ).read_bytes()


def test_changes_and_removals_are_streamed_against_the_digests(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    files = _files(root, 60, _sample_file())
    _write_manifest(root, files)
    write_catalogue(Root(str(root)), _spec(root))
    unchanged = write_catalogue(Root(str(root)), _spec(root))
    assert (unchanged.written, unchanged.removed) == (0, 0)

    # Ten partitions go, one changes, one is new.
    kept = files[10:]
    kept[0] = TableFile(**{**kept[0].__dict__, "time": ["1999-01-01T00:00:00Z", None]})
    extra = _files(tmp_path / "extra", 61, _sample_file())[60]
    target = root / "occ" / extra.path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(_sample_file())
    _write_manifest(root, [*kept, extra])
    result = write_catalogue(Root(str(root)), _spec(root))
    assert (result.items, result.written, result.removed) == (51, 2, 10)
    entries = list(digests.read(Root(str(root)), "occ"))
    assert len(entries) == 51 and not any(e.removing for e in entries)
    assert {f"{e.id}.json" for e in entries} == set(_items(root))
    assert not verify_lake(Root(str(root))).problems

    # A rewrite killed after recording both versions: those items are written again.
    lines = (root / "occ" / digests.DIGESTS).read_text().splitlines()
    first = json.loads(lines[1])
    lines[1] = json.dumps([first[0], ["0" * 64, first[1]]])
    (root / "occ" / digests.DIGESTS).write_text("\n".join(lines) + "\n")
    assert write_catalogue(Root(str(root)), _spec(root)).written == 1


def test_digests_of_the_earlier_layout_are_read_and_replaced(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    _write_manifest(root, _files(root, 30, _sample_file()))
    write_catalogue(Root(str(root)), _spec(root))
    entries = list(digests.read(Root(str(root)), "occ"))
    (root / "occ" / digests.DIGESTS).unlink()
    (root / "occ" / digests.LEGACY).write_text(json.dumps({
        "format": "lake-stac-digests/2", "items": {e.id: e.digest for e in entries},
        "removing": [],
    }))  # fmt: skip
    assert not verify_lake(Root(str(root))).problems
    result = write_catalogue(Root(str(root)), _spec(root))
    assert result.written == 0
    assert not (root / "occ" / digests.LEGACY).exists()
    assert list(digests.read(Root(str(root)), "occ")) == entries


def test_a_table_without_files_has_a_valid_collection(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    _write_manifest(root, [])
    result = write_catalogue(Root(str(root)), _spec(root))
    assert result.items == 0
    collection = json.loads((root / "occ" / "collection.json").read_text())
    rels = ["root", "parent", "license", *["describedby"] * 3]  # no item link
    assert [link["rel"] for link in collection["links"]] == rels
    assert not (root / "occ" / "items.parquet").exists()


def _traced_peak(root: Path, n: int, data: bytes) -> tuple[int, int]:
    """Peak Python memory of the writer, and of converting its mirror (which a helper
    process does, out of the writer's sight)."""
    _write_manifest(root, _files(root, n, data))
    tracemalloc.start()
    try:
        write_catalogue(Root(str(root)), _spec(root))
        writer = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    documents = (p.read_bytes() for p in sorted((root / "occ" / "items").glob("*.json")))
    (root / "tmp").mkdir()
    tracemalloc.start()
    try:
        mirror.convert_mirror(documents, str(root / "tmp"), str(root / "mirror.parquet"),
                              mirror.MIRROR_CHUNK)  # fmt: skip
        return writer, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def traced_peaks(folder: str) -> list[tuple[int, int]]:
    """Peak Python memory of writing the catalogue of 800 and of 3,200 items, and of
    converting their mirrors, after a warm-up (imports are not what is measured). Run in a
    fresh interpreter by the test."""
    # Small batches so that both sizes span many of them (the defaults hold 5,000 item
    # documents and 10,000 mirror rows at a time).
    catalog.ITEM_BATCH, mirror.MIRROR_CHUNK = 100, 200
    data = _sample_file()
    _traced_peak(Path(folder) / "warm-up", 50, data)
    return [_traced_peak(Path(folder) / str(n), n, data) for n in (800, 3200)]


def test_memory_does_not_grow_with_the_number_of_items(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import json, sys; sys.path[:0] = sys.argv[1].split(','); "
        "import test_catalogue_streams as t; "
        "print(json.dumps(t.traced_peaks(sys.argv[2])))"
    )
    here = f"{Path(__file__).parent},{Path(__file__).parents[1]}"
    done = subprocess.run([sys.executable, "-c", code, here, str(tmp_path)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    (small, small_mirror), (large, large_mirror) = json.loads(done.stdout.splitlines()[-1])
    # Four times the items: 4.1 and 4.0 MB measured. Keeping each item's dict during the
    # items pass gives 4.1 and 8.3 MB (measured); the writer held about 3 KB an item
    # before it streamed.
    assert large < small * 1.3, (small, large)
    assert large_mirror < small_mirror * 1.3, (small_mirror, large_mirror)


def test_catalogued_files_without_reading_every_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "lake"
    files = _files(root, 40, _sample_file())
    _write_manifest(root, files, version="v1")
    write_catalogue(Root(str(root)), _spec(root))
    reads: list[str] = []
    real = catalog._read_json

    def counting(root_: Root, *parts: str) -> Any:
        reads.append("/".join(parts))
        return real(root_, *parts)

    monkeypatch.setattr(catalog, "_read_json", counting)
    lake = Root(str(root))
    everything = {f.path for f in files}
    # The catalogue was written from this manifest version: its files, no item read.
    assert catalogued_files(lake, "occ", read_manifest(lake, "occ")) == everything
    assert reads == []

    # A build stopped after its manifest (v2, half the files), before the catalogue: the
    # published items still point at all the files, and each item is read to know it.
    _write_manifest(root, files[:20], version="v2")
    assert catalogued_files(lake, "occ", read_manifest(lake, "occ")) == everything
    assert len([r for r in reads if "/items/" in r]) == 40

    # Once the catalogue describes v2, only v2's files are left to keep.
    write_catalogue(Root(str(root)), _spec(root))
    reads.clear()
    assert catalogued_files(lake, "occ", read_manifest(lake, "occ")) == {f.path for f in files[:20]}
    assert reads == []


def test_a_damaged_digest_record_is_named_with_its_fix(tmp_path: Path) -> None:
    from lake.errors import TargetError

    root = tmp_path / "lake"
    _write_manifest(root, _files(root, 5, _sample_file()))
    write_catalogue(Root(str(root)), _spec(root))
    record = root / "occ" / digests.DIGESTS
    record.write_text(record.read_text()[:-30])  # a torn last line
    with pytest.raises(TargetError, match=r"stac-digests.jsonl: is damaged .* Fix: delete it"):
        write_catalogue(Root(str(root)), _spec(root))
    report = verify_lake(Root(str(root)))
    assert any(p.subject.endswith(digests.DIGESTS) for p in report.problems)
    record.unlink()
    assert write_catalogue(Root(str(root)), _spec(root)).written == 5
    assert not verify_lake(Root(str(root))).problems


def test_items_that_cannot_be_written_stop_the_catalogue(tmp_path: Path) -> None:
    """When the helper process cannot write the item documents (here a file stands where
    their folder goes), the catalogue stops with one message naming the items' folder,
    and no collection links items that were never written."""
    from lake.errors import TargetError

    root = tmp_path / "lake"
    _write_manifest(root, _files(root, 12, _sample_file()))
    (root / "occ" / "items").write_bytes(b"not a folder")
    with pytest.raises(TargetError, match=r"occ/items: could not be written") as caught:
        write_catalogue(Root(str(root)), _spec(root))
    assert "free space and permissions" in str(caught.value)
    assert not (root / "occ" / "collection.json").exists()


def test_a_mirror_that_cannot_be_converted_stops_the_catalogue(tmp_path: Path) -> None:
    """When the helper process cannot convert the mirror (here its spool is gone), the
    catalogue stops with one message naming the mirror, and neither
    a mirror nor a collection is published."""
    from lake.errors import TargetError
    from lake.stac import spool

    root = tmp_path / "lake"
    _write_manifest(root, _files(root, 12, _sample_file()))
    real = spool.MirrorJob

    def spool_gone(path: str, tmp: str) -> mirror.MirrorJob:
        return real(f"{path}.gone", tmp)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(spool, "MirrorJob", spool_gone)
        with pytest.raises(TargetError, match=r"occ/items.parquet: could not be written"):
            write_catalogue(Root(str(root)), _spec(root))
    assert not (root / "occ" / "items.parquet").exists()
    assert not (root / "occ" / "collection.json").exists()
    # The next run, with nothing in the way, publishes the whole catalogue.
    write_catalogue(Root(str(root)), _spec(root))
    assert (root / "occ" / "items.parquet").exists()
    assert not verify_lake(Root(str(root))).problems


def test_a_file_left_where_a_new_item_goes_is_replaced_whole(tmp_path: Path) -> None:
    """New items are written straight into their files; a file already there (left by a
    run killed before its collection) is replaced, not written over in place."""
    root = tmp_path / "lake"
    _write_manifest(root, _files(root, 6, _sample_file()))
    write_catalogue(Root(str(root)), _spec(root))
    written = _items(root)
    name = sorted(written)[2]
    for path in (root / "occ" / "items").iterdir():
        path.unlink()
    (root / "occ" / digests.DIGESTS).unlink()
    left = root / "occ" / "items" / name
    left.write_bytes(b"x" * 100_000)  # longer than the item
    inode = left.stat().st_ino
    assert write_catalogue(Root(str(root)), _spec(root)).written == 6
    assert _items(root) == written
    assert left.stat().st_ino != inode  # a new file renamed into place
    assert not list((root / "occ" / "items").glob("*.partial"))
    assert not verify_lake(Root(str(root))).problems


def test_a_helper_follows_the_spool_as_it_is_written(tmp_path: Path) -> None:
    """Records come whole, however the writer's buffer cut them, until the writer closes
    the helper's input; a spool that ends inside a record is an error."""
    import os
    import threading
    import time

    from lake.stac.helper import follow

    spool = tmp_path / "documents"
    spool.write_bytes(b'* a\n{}\n+ b\n{"x"')
    read, write = os.pipe()

    def finish() -> None:
        time.sleep(0.2)
        with open(spool, "ab") as handle:
            handle.write(b": 1}\n= c\n[]\n")
        os.write(write, b"replace\n")
        os.close(write)

    commands: list[bytes] = []
    thread = threading.Thread(target=finish)
    thread.start()
    with os.fdopen(read, "rb") as signal:
        records = list(follow(str(spool), signal, commands))
    thread.join()
    assert records == [(b"*", "a", b"{}"), (b"+", "b", b'{"x": 1}'), (b"=", "c", b"[]")]
    assert commands == [b"replace\n"]

    spool.write_bytes(b"* a\n{}\n* b\n")
    read, write = os.pipe()
    os.close(write)
    with os.fdopen(read, "rb") as signal, pytest.raises(RuntimeError, match="inside a record"):
        list(follow(str(spool), signal, []))


def test_the_items_pass_reads_back_what_the_first_pass_kept(tmp_path: Path) -> None:
    """The items come from the files the extent's pass kept; a second pass over the
    items reads the manifest again, and gives the same items."""
    from lake.stac.describe import describe

    root = tmp_path / "lake"
    _write_manifest(root, _files(root, 30, _sample_file()))
    d = describe(Root(str(root)), _spec(root).datasets[0])
    first = list(d.items())
    (root / "occ" / MANIFEST).rename(root / "occ" / "moved.json")
    with pytest.raises(FileNotFoundError):  # not kept for a second pass
        list(d.items())
    (root / "occ" / "moved.json").rename(root / "occ" / MANIFEST)
    assert list(d.items()) == first and len(first) == 30
