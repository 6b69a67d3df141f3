"""Bounded memory: a table larger than all worker memory together builds on small workers
once `staging_mb` and `file_mb` fit them; with the defaults, one clear error."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from pgdata import execute, fetch

from lake.errors import LakeError
from lake.flows.tables import build_table
from lake.spec import parse_spec
from lake.storage import Root

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.slow, pytest.mark.distributed, pytest.mark.postgres]


def test_table_larger_than_worker_memory(
    tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.dataset as ds
    from distributed import Client, LocalCluster

    # 3 M rows with a 320-character text column: over 1 GiB as Arrow, more than the two
    # workers' 2 x 500 MiB together. A worker that passes its limit is restarted by its
    # nanny and the task fails, so this passes only if memory stays bounded.
    rows = 3_000_000
    execute(
        pg_dsn,
        "CREATE TABLE big (id bigint PRIMARY KEY, t date NOT NULL, lon float8, lat float8, "
        "note text)",
        "INSERT INTO big SELECT i, '2000-01-01'::date + (i % 9000), (i % 3600) / 10.0 - 180, "
        f"(i % 1700) / 10.0 - 85, repeat(md5(i::text), 10) FROM generate_series(1, {rows}) i",
    )
    monkeypatch.setenv("LAKE_TEST_SOURCE", pg_dsn)

    def spec(**sizes: float) -> Any:
        return parse_spec({
            "root": str(tmp_path / "lake"),
            "datasets": [{"id": "big", "table": {
                "postgres": {"dsn_env": "LAKE_TEST_SOURCE", "table": "big"},
                "geometry": {"lon": "lon", "lat": "lat"}, "partition_by": ["year(t)"],
                **sizes,
            }}],
        }, "spec.yaml", tmp_path)  # fmt: skip

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, memory_limit="500MiB", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        # The default sizes (256 MB of rows per read task) do not fit: one clear error
        # naming the settings to lower, and nothing published.
        small = spec()
        with pytest.raises(LakeError, match="staging_mb") as failed:
            build_table(client, Root(small.root), small.datasets[0])
        assert "out of memory" in str(failed.value)
        assert not (tmp_path / "lake/big/table.json").exists()
        client.restart()
        fitted = spec(staging_mb=32, file_mb=32)
        result = build_table(client, Root(fitted.root), fitted.datasets[0])
    assert result.rows == rows
    assert result.bytes_in > 1000 * 2**20  # Arrow bytes read
    table = ds.dataset(str(tmp_path / "lake/big/data"), partitioning="hive")
    assert table.count_rows() == rows
    got = table.to_table(filter=ds.field("id") == 1234567, columns=["note"]).to_pylist()
    assert got == [{"note": fetch(pg_dsn, "SELECT note FROM big WHERE id = 1234567")[0][0]}]
