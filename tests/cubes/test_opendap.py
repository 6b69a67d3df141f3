"""Cubes read over OPeNDAP and through THREDDS catalogues, from a real DAP server.

pydap's own server (``pydap -d FOLDER``, DAP2 over gunicorn) serves daily files on
loopback; its folders are also THREDDS catalogues (``catalog.xml``). A cube built over
DAP, with either engine, equals the cube built from the same files read locally, in
both layouts; appends scan only the new endpoint; a re-issued file replaces its steps.
A catalogue offering only HTTP file access (served by ``lake serve``) reads the files
over HTTP. Transient 5xx answers are retried; bad input stops the build with one
message and leaves the lake as it was.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import netCDF4
import pytest
import yaml
from typer.testing import CliRunner

from helpers import build_on, open_cube
from lake.cli import app
from lake.errors import ExitCode
from lake.samples import write_daily_product
from lake.spec import parse_spec

if TYPE_CHECKING:
    from collections.abc import Iterator

    import xarray as xr
    from distributed import Client

pytestmark = pytest.mark.distributed
PYDAP = Path(sys.executable).with_name("pydap")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def dap_server(folder: Path) -> Iterator[str]:
    """pydap's server on ``folder``; yields its base URL."""
    if not PYDAP.exists():
        pytest.skip("pydap's server is not installed (pip install 'pydap[server,netcdf]')")
    port = _free_port()
    with subprocess.Popen(
        [str(PYDAP), "-d", str(folder), "-b", "127.0.0.1", "-p", str(port), "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ) as proc:  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"{base}/catalog.xml", timeout=2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                raise AssertionError("the DAP server did not start")
            yield base
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """Five daily files, served over DAP; returns (folder, base URL)."""
    folder = tmp_path / "served"
    write_daily_product(folder / "2024", start="2024-01-01", days=5, ny=30, nx=40)
    with dap_server(folder) as base:
        yield folder, base


def _spec(tmp: Path, cube: dict[str, Any], dataset: str = "sst") -> Any:
    entry = {"id": dataset, "cube": cube, "metadata": {"license": "CC0-1.0"}}
    data = {"root": str(tmp / "lake"), "datasets": [entry]}
    return parse_spec(data, "test-spec.yaml", tmp)


def _urls(folder: Path, base: str) -> list[str]:
    return [f"{base}/2024/{p.name}" for p in sorted((folder / "2024").glob("*.nc"))]


def _layouts(tmp: Path, dataset: str = "sst") -> list[xr.Dataset]:
    return [open_cube(str(tmp / "lake" / dataset / f"{layout}.zarr"))
            for layout in ("maps", "timeseries")]  # fmt: skip


def _local(tmp: Path, client: Client, files: str) -> list[xr.Dataset]:
    """The same files built as a NetCDF cube, locally, for comparison."""
    spec = parse_spec({"root": str(tmp / "local"), "datasets": [{
        "id": "sst", "cube": {"netcdf": files}, "metadata": {"license": "CC0-1.0"}}]},
        "local.yaml", tmp)  # fmt: skip
    build_on(client, spec)
    return [open_cube(str(tmp / "local" / "sst" / f"{layout}.zarr"))
            for layout in ("maps", "timeseries")]  # fmt: skip


def _assert_equal(built: list[xr.Dataset], local: list[xr.Dataset]) -> None:
    import xarray as xr

    for ours, theirs in zip(built, local, strict=True):
        xr.testing.assert_identical(ours, theirs)


@pytest.mark.parametrize("engine", ["netcdf4", "pydap"])
def test_opendap_cube_equals_the_files(
    served: tuple[Path, str], tmp_path: Path, client: Client, engine: str
) -> None:
    folder, base = served
    spec = _spec(tmp_path, {"opendap": _urls(folder, base), "engine": engine,
                            "updates": "replace"})  # fmt: skip
    report = build_on(client, spec)
    assert report.datasets[0].added == {"maps": 5, "timeseries": 5}
    _assert_equal(_layouts(tmp_path), _local(tmp_path, client, str(folder / "2024" / "*.nc")))

    # A new day on the server: only its endpoint is opened (the others' Last-Modified match).
    write_daily_product(folder / "2024", start="2024-01-06", days=1, ny=30, nx=40)
    spec = _spec(tmp_path, {"opendap": _urls(folder, base), "engine": engine,
                            "updates": "replace"})  # fmt: skip
    result = build_on(client, spec).datasets[0]
    assert result.added == {"maps": 1, "timeseries": 1}
    assert result.detail.files_scanned == 1

    # A re-issued day replaces its step.
    time.sleep(1.1)  # Last-Modified counts whole seconds
    with netCDF4.Dataset(folder / "2024" / "thetao_20240102.nc", "a") as nc:
        nc["thetao"][:] = nc["thetao"][:] + 0.5
    result = build_on(client, spec).datasets[0]
    assert result.detail.replaced == {"maps": 1, "timeseries": 1}
    shutil.rmtree(tmp_path / "local")
    _assert_equal(_layouts(tmp_path), _local(tmp_path, client, str(folder / "2024" / "*.nc")))


def test_thredds_catalogue(served: tuple[Path, str], tmp_path: Path, client: Client) -> None:
    """The server's root catalogue, its reference to ``2024/``, and a glob on paths."""
    folder, base = served
    (folder / "2024" / "notes.nc").write_bytes(b"")  # listed, but not matched
    spec = _spec(tmp_path, {"thredds": f"{base}/catalog.xml", "match": "2024/thetao_*.nc"})
    report = build_on(client, spec)
    assert report.datasets[0].read == 5
    (folder / "2024" / "notes.nc").unlink()
    _assert_equal(_layouts(tmp_path), _local(tmp_path, client, str(folder / "2024" / "*.nc")))
    # The catalogue's dataSize and modification dates make a rerun open nothing.
    result = build_on(client, spec).datasets[0]
    assert result.added == {} and result.detail.files_scanned == 0


def test_thredds_http_access(tmp_path: Path, client: Client) -> None:
    """A catalogue whose datasets offer only HTTPServer access: read as files over HTTP
    (range requests to ``lake serve``), equal to the files read locally."""
    from lake.serve import make_server

    site = tmp_path / "site"
    files = write_daily_product(site / "files", start="2024-02-01", days=3, ny=20, nx=30)
    datasets = "".join(
        f'<dataset name="{p.name}" urlPath="{p.name}">'
        f'<dataSize units="Kbytes">{p.stat().st_size / 1000}</dataSize>'
        f'<date type="modified">2024-03-01T00:00:00Z</date></dataset>'
        for p in files
    )
    (site / "catalog.xml").write_text(  # as a THREDDS datasetScan writes it
        '<?xml version="1.0"?><catalog xmlns="http://www.unidata.ucar.edu/namespaces/thredds/'
        'InvCatalog/v1.0" name="files"><service name="http" serviceType="HTTPServer" '
        'base="/files/"/><dataset name="files" ID="files"><metadata inherited="true">'
        f"<serviceName>http</serviceName></metadata>{datasets}</dataset></catalog>"
    )
    server = make_server(str(site), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/catalog.xml"
        build_on(client, _spec(tmp_path, {"thredds": url}))
        _assert_equal(_layouts(tmp_path), _local(tmp_path, client, str(site / "files" / "*.nc")))
    finally:
        server.shutdown()


def test_transient_errors_are_retried(
    served: tuple[Path, str], tmp_path: Path, client: Client
) -> None:
    """The first request for each answer (each ``.dds``, ``.das``, ``.dods`` with its
    constraint) gets a 503 or a 500: the build retries and succeeds, with the values and
    attributes of the files. (The netCDF-C client goes on without attributes when its
    ``.das`` request fails; that is caught and retried too.)"""
    from flaky import ERRORS, FlakyProxy

    class FirstTimeFails(FlakyProxy):
        """A deterministic transient fault: a periodic one can fall on the same request
        of every retry."""

        seen: set[tuple[str, str]]

        def intercept(self, method: str, path: str) -> tuple[int, str, str] | str | None:
            with self.lock:
                if (method, path) in self.seen:
                    return None
                self.seen.add((method, path))
                self.injected += 1
                return ERRORS[self.injected % len(ERRORS)]

    folder, base = served
    proxy = FirstTimeFails(base, every=0)
    proxy.seen = set()
    with proxy:
        for engine in ("netcdf4", "pydap"):
            spec = _spec(tmp_path, {"opendap": _urls(folder, proxy.url), "engine": engine},
                         dataset=f"sst-{engine}")  # fmt: skip
            build_on(client, spec)
        assert proxy.injected > 0
    local = _local(tmp_path, client, str(folder / "2024" / "*.nc"))
    for engine in ("netcdf4", "pydap"):
        _assert_equal(_layouts(tmp_path, f"sst-{engine}"), local)


def _cli(tmp: Path, client: Client, cube: dict[str, Any]) -> tuple[int, str]:
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump({
        "root": str(tmp / "lake"),
        "datasets": [{"id": "sst", "cube": cube, "metadata": {"license": "CC0-1.0"}}],
    }))  # fmt: skip
    result = CliRunner().invoke(app, ["build", str(path), "--scheduler", client.scheduler.address])
    return result.exit_code, " ".join(result.output.split())


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in folder.rglob("*") if p.is_file()}  # fmt: skip


def test_bad_dap_input(served: tuple[Path, str], tmp_path: Path, client: Client) -> None:
    folder, base = served
    urls = _urls(folder, base)
    code, output = _cli(tmp_path, client, {"opendap": urls})
    assert code == 0, output
    before = _tree(tmp_path / "lake")

    # An unreachable server: named, with the attempts made, exit 3, nothing written.
    dead = f"http://127.0.0.1:{_free_port()}/2024/thetao_20240106.nc"
    code, output = _cli(tmp_path, client, {"opendap": [*urls, dead], "retries": 1})
    assert code == ExitCode.SOURCE, output
    assert dead in output and "could not be read over OPeNDAP after 2 attempts" in output
    assert "timeout" in output and "Traceback" not in output

    # A missing dataset on a live server.
    missing = f"{base}/2024/thetao_20240107.nc"
    code, output = _cli(tmp_path, client, {"opendap": [*urls, missing]})
    assert code == ExitCode.SOURCE and missing in output
    assert "is not an OPeNDAP dataset on its server" in output

    # An endpoint on another grid than the published cube's.
    write_daily_product(folder / "other", start="2024-01-06", days=1, ny=31, nx=40)
    other = f"{base}/other/thetao_20240106.nc"
    code, output = _cli(tmp_path, client, {"opendap": [*urls, other]})
    assert code == ExitCode.SOURCE, output
    assert f"{other}: its latitude differs from the published cube sst" in output

    # A catalogue with no dataset matching the glob.
    code, output = _cli(tmp_path, client, {"thredds": f"{base}/catalog.xml", "match": "*.grib"})
    assert code == ExitCode.SOURCE, output
    assert f"{base}/catalog.xml: lists no dataset matching '*.grib'" in output

    # A catalogue URL that is not one.
    code, output = _cli(tmp_path, client, {"thredds": f"{base}/2024/catalogue.xml"})
    assert code == ExitCode.SOURCE, output
    assert "is not a THREDDS catalogue on its server" in output

    # Options that only DAP sources take, given to NetCDF files: a spec error.
    code, output = _cli(tmp_path, client, {"netcdf": str(folder / "2024" / "*.nc"),
                                           "engine": "pydap"})  # fmt: skip
    assert code == ExitCode.SPEC and "`engine` apply to `opendap` and `thredds`" in output

    assert _tree(tmp_path / "lake") == before
    assert open_cube(str(tmp_path / "lake" / "sst" / "maps.zarr")).sizes["time"] == 5
