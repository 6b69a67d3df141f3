"""The publish protocol under SIGKILL, on local disk and on S3.

A lake is built (v1: a cube of 5 daily files, a table of 2000 rows), the sources change
(3 more days; table rows updated, deleted and inserted) and the update build (v2) is
killed with SIGKILL, every process of it, at chosen moments of its sequence of changes to
storage: mid-write of a shard that readers use, among the array documents of an append,
before each commit point (group document, manifest, items, collections, catalog.json),
while replaced files are deleted. After each kill:

* ``lake verify`` finds no problem (notes are allowed: they name leftovers a later build
  settles);
* readers see each layout and the table either as v1 or as v2, never anything else;

and, from some of those states, the next build completes the work: v2 everywhere, and
``lake verify`` without a single note.

Moments are found by name in the change sequence of an uninterrupted v2 build (counted by
``killpoint/sitecustomize.py`` on local disk and by a proxy on S3), so the test follows
the build if the number of changes moves.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pgdata import cube_and_table_spec, execute

from lake.stac.verify import Report, verify_lake
from lake.storage import Root

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

LAKE = str(Path(sys.executable).with_name("lake"))
KILLPOINT = Path(__file__).parents[1] / "killpoint"

# (what the moment is, kind of change, a piece of the path it changes); the first match in
# the uninterrupted build's sequence is where the build dies. Kinds on local disk:
# open (dies after half of the first write), replace, rename, rmtree, remove.
LOCAL_MOMENTS = [
    ("shard readers use, torn mid-write", "open", "maps.zarr/thetao/c/"),
    ("rewritten shard about to replace the published one", "replace", "maps.zarr/thetao/c/"),
    ("among the array documents of an append", "replace", "maps.zarr/time/zarr.json"),
    ("before the group document (a layout's commit)", "replace", "maps.zarr/zarr.json"),
    ("between the two layouts", "replace", "timeseries.zarr/.publishing.json"),
    ("among the moves of staged table files", "rename", "data/year=2022/"),
    ("table manifest torn mid-write", "open", "occ/table.json"),
    ("after the manifest, before the catalogue", "rmtree", "occ/.staging"),
    ("among the items", "replace", "occ/items/occ.year-2022"),
    ("before a collection", "replace", "occ/collection.json"),
    ("before catalog.json", "replace", "catalog.json"),
    ("while replaced table files are deleted", "remove", "occ/data/year=2022/"),
]
# On S3 every change is a request: PUT (objects, copies), POST (multipart, batch delete),
# DELETE. The proxy hangs up on the chosen one after killing the build.
S3_MOMENTS = [
    ("rewritten shard readers use", "PUT", "maps.zarr/thetao/c/"),
    ("among the array documents of an append", "PUT", "maps.zarr/time/zarr.json"),
    ("before the group document (a layout's commit)", "PUT", "maps.zarr/zarr.json"),
    ("between the two layouts", "PUT", "timeseries.zarr/.publishing.json"),
    ("among the copies of staged table files", "PUT", "occ/data/year=2022/"),
    ("before the table manifest", "PUT", "occ/table.json"),
    ("among the items", "PUT", "occ/items/occ.year-2022"),
    ("before catalog.json", "PUT", "/catalog.json"),
    ("before replaced table files are deleted", "POST", "?delete"),
]
# Moments (by position above) after which the next build must complete the work.
LOCAL_RECOVER = (0, 2, 7, 11)
S3_RECOVER = (1, 5, 8)


def _update_sources(tmp: Path, dsn: str, spec: Path) -> None:
    """New days, changed rows, and a new title for the catalogue (so that v2 rewrites
    catalog.json too: a catalogue that would not change is not written)."""
    import yaml

    from lake.samples import write_daily_product

    document = yaml.safe_load(spec.read_text())
    spec.write_text(yaml.safe_dump({**document, "title": "Marine lake, second edition"}))

    write_daily_product(tmp / "src", start="2024-01-06", days=3, ny=30, nx=40)
    execute(
        dsn,
        "UPDATE occ SET lon = lon + 1 WHERE id % 7 = 0",
        "DELETE FROM occ WHERE id % 11 = 0",
        "INSERT INTO occ SELECT i, '2020-01-01'::date + i, i % 50, i % 40 "
        "FROM generate_series(2001, 2400) i",
    )


def _build(spec: Path, env: dict[str, str], started: Callable[[int], None] | None = None) -> int:
    """Run ``lake build`` in its own process group; its exit code (-9 when killed)."""
    with subprocess.Popen(
        [LAKE, "build", str(spec), "--workers", "1"], env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as proc:  # fmt: skip
        if started is not None:
            started(proc.pid)
        output, _ = proc.communicate(timeout=600)
    with contextlib.suppress(ProcessLookupError):  # nothing of a killed build may linger
        os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode in (0, -signal.SIGKILL), output
    return proc.returncode


def killing_env(env: dict[str, str], lake: Path, tmp: Path) -> tuple[dict[str, str], Path]:
    """``env`` with the kill point loaded in every process of a build below ``lake``
    (``LAKE_KILL_AT=0``: only counting), and the counter file to remove between runs."""
    counter = tmp / "counter"
    killing = {**env, "PYTHONPATH": os.pathsep.join([str(KILLPOINT), env.get("PYTHONPATH", "")]),
               "LAKE_KILL_ROOT": str(lake), "LAKE_KILL_COUNTER": str(counter),
               "LAKE_KILL_LOG": str(tmp / "changes"), "LAKE_KILL_AT": "0"}  # fmt: skip
    return killing, counter


def counted_changes(
    spec: Path, killing: dict[str, str], lake: Path, tmp: Path
) -> list[tuple[str, str]]:
    """Run the build uninterrupted, counting: its changes to the lake, in order, as
    (kind, path below the lake)."""
    assert _build(spec, killing) == 0
    lines = (tmp / "changes").read_text().splitlines()
    return [(what, path.removeprefix(str(lake)))
            for what, path in (line.split(" ", 3)[2:] for line in lines)]  # fmt: skip


def _views(root: Root) -> dict[str, str]:
    """What readers see: each layout through its consolidated metadata, the table through
    its manifest (the files it lists, every row)."""
    import warnings

    import pyarrow as pa
    import pyarrow.parquet as pq
    import xarray as xr

    out = {}
    for layout in ("maps", "timeseries"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            ds = xr.open_zarr(root.zarr_store("sst", f"{layout}.zarr", read_only=True),
                              consolidated=True)  # fmt: skip
        digest = hashlib.sha256(ds["time"].values.tobytes())
        digest.update(ds["thetao"].values.tobytes())
        out[layout] = digest.hexdigest()
    manifest = root.read_json("occ", "table.json")
    tables = []
    for info in manifest["files"]:
        with root.fs().open(root.path("occ", info["path"]), "rb") as handle:
            tables.append(pq.read_table(handle, columns=["id", "t", "lon", "lat"]))
    rows = pa.concat_tables(tables).sort_by("id").to_pydict()
    out["occ"] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return out


def _verify(root: Root) -> Report:
    root.fs().invalidate_cache()  # listings cached by earlier checks in this process
    return verify_lake(root)


def _assert_readable(root: Root, v1: dict[str, str], v2: dict[str, str], moment: str) -> None:
    report = _verify(root)
    assert not report.problems, (moment, [str(p) for p in report.problems])
    seen = _views(root)
    for key, view in seen.items():
        assert view in (v1[key], v2[key]), (moment, key)


def _first(changes: list[tuple[str, str]], kind: str, piece: str, moment: str) -> int:
    for position, (what, path) in enumerate(changes, start=1):
        if what.startswith(kind) and piece in path:
            return position
    raise AssertionError(f"{moment}: no change {kind} {piece} in {changes}")


def _kill_at_each(
    moments: list[tuple[str, str, str]], recover: tuple[int, ...],
    changes: list[tuple[str, str]], root: Root, versions: tuple[dict[str, str], dict[str, str]],
    restore: Callable[[], None], killed: Callable[[int], int], build: Callable[[], int],
    leftovers: Callable[[], list[Any]] = list,
) -> None:  # fmt: skip
    """From the old lake each time, kill the update build at each moment and check what it
    left; at the positions in ``recover``, the next build must complete the work."""
    v1, v2 = versions
    for position, (moment, kind, piece) in enumerate(moments):
        at = _first(changes, kind, piece, moment)
        restore()
        assert killed(at) == -signal.SIGKILL, moment
        _assert_readable(root, v1, v2, moment)
        if position in recover:
            assert build() == 0, moment
            report = _verify(root)
            assert not report.problems and not report.notes, (moment, report)
            assert _views(root) == v2, moment
            assert not leftovers(), moment


def _sources(
    tmp: Path, dsn: str, root: str, options: dict[str, Any]
) -> tuple[Path, dict[str, str]]:
    spec = cube_and_table_spec(tmp, dsn, root, options, days=5, rows=2000)
    env = {**os.environ, "LAKE_TEST_SOURCE": dsn}
    return spec, env


def test_killed_builds_on_local_disk(pg_dsn: str, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    spec, env = _sources(tmp_path, pg_dsn, str(lake), {})
    root = Root(str(lake))
    assert _build(spec, env) == 0
    v1 = _views(root)
    _update_sources(tmp_path, pg_dsn, spec)
    shutil.copytree(lake, tmp_path / "v1")

    killing, counter = killing_env(env, lake, tmp_path)
    changes = counted_changes(spec, killing, lake, tmp_path)
    v2 = _views(root)
    assert v2 != v1 and not _verify(root).problems

    def restore() -> None:
        shutil.rmtree(lake)
        shutil.copytree(tmp_path / "v1", lake)
        counter.unlink(missing_ok=True)

    _kill_at_each(
        LOCAL_MOMENTS, LOCAL_RECOVER, changes, root, (v1, v2), restore,
        killed=lambda at: _build(spec, {**killing, "LAKE_KILL_AT": str(at)}),
        build=lambda: _build(spec, env), leftovers=lambda: list(lake.rglob("*.partial")),
    )  # fmt: skip


@pytest.mark.s3
def test_killed_builds_on_s3(pg_dsn: str, tmp_path: Path, s3_endpoint: str, bucket: str) -> None:
    import s3fs
    from flaky import KillingProxy

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True)
    with KillingProxy(s3_endpoint) as proxy:
        options = {"endpoint_url": proxy.url}
        spec, env = _sources(tmp_path, pg_dsn, f"s3://{bucket}/lake", options)
        root = Root(f"s3://{bucket}/lake", {"endpoint_url": s3_endpoint})
        assert _build(spec, env) == 0
        v1 = _views(root)
        _update_sources(tmp_path, pg_dsn, spec)
        fs.copy(f"{bucket}/lake", f"{bucket}/v1", recursive=True)

        proxy.reset()
        assert _build(spec, env) == 0
        changes = list(proxy.changes)
        v2 = _views(root)
        assert v2 != v1 and not _verify(root).problems

        def restore() -> None:
            fs.rm(f"{bucket}/lake", recursive=True)
            fs.copy(f"{bucket}/v1", f"{bucket}/lake", recursive=True)
            fs.invalidate_cache()

        def killed(at: int) -> int:
            code = _build(spec, env, lambda pid: proxy.reset(kill_at=at, pgid=pid))
            proxy.reset()
            return code

        _kill_at_each(S3_MOMENTS, S3_RECOVER, changes, root, (v1, v2), restore, killed,
                      build=lambda: _build(spec, env))  # fmt: skip
