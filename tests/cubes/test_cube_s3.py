"""Sources and lake on a real S3 API over HTTP (moto server mode), through s3fs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import s3fs

from helpers import assert_same, decoded_source, spec_for
from lake.flows.cubes import build_cube
from lake.samples import write_daily_product
from lake.storage import Root

if TYPE_CHECKING:
    from pathlib import Path

    from distributed import Client

pytestmark = [pytest.mark.s3, pytest.mark.distributed]


def test_build_and_append_on_s3(
    tmp_path: Path, client: Client, s3_endpoint: str, bucket: str
) -> None:
    import xarray as xr

    options = {"endpoint_url": s3_endpoint}
    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    files = write_daily_product(tmp_path / "src", days=6, ny=40, nx=50, packed=False)
    for f in files[:4]:
        fs.put_file(str(f), f"{bucket}/incoming/{f.name}")
    spec = spec_for(
        f"s3://{bucket}/lake", f"s3://{bucket}/incoming/*.nc", tmp_path,
        storage_options=options,
    )  # fmt: skip
    root = Root(spec.root, options)
    first = build_cube(client, root, spec.datasets[0])
    assert (first.added, first.files_scanned) == ({"maps": 4, "timeseries": 4}, 4)
    for f in files[4:]:
        fs.put_file(str(f), f"{bucket}/incoming/{f.name}")
    result = build_cube(client, root, spec.datasets[0])
    assert result.added == {"maps": 2, "timeseries": 2}
    # The listing's ETags identify the published files: only the new ones are opened.
    assert result.files_scanned == 2
    assert result.bytes_out > 0

    expected = decoded_source(*files)
    for layout in ("maps", "timeseries"):
        cube = xr.open_zarr(
            f"s3://{bucket}/lake/cube/{layout}.zarr", storage_options=options
        ).load()
        assert_same(cube, expected)
    assert build_cube(client, root, spec.datasets[0]).added == {}


def test_unwritable_bucket(tmp_path: Path, s3_endpoint: str) -> None:
    from lake.errors import TargetError

    root = Root("s3://no-such-bucket-here/lake", {"endpoint_url": s3_endpoint})
    with pytest.raises(TargetError) as info:
        root.check_writable()
    message = str(info.value)
    assert "s3://no-such-bucket-here/lake" in message and "Fix:" in message
    assert "testing-secret" not in message
