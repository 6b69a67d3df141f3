"""One writer at a time: the lease on a lake root, on disk and on S3; two builds started
at once (one exits 5 naming the other, or waits); a killed holder's lease taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from lake.errors import ExitCode, LeaseError
from lake.lease import LEASE, Holder, Lease
from lake.samples import write_daily_product
from lake.storage import Root

if TYPE_CHECKING:
    from distributed import Client


def _foreign(host: str, pid: int, expires: str, started: float = 0.0) -> bytes:
    holder = Holder(id="x" * 32, host=host, pid=pid, process_started=started, user="someone",
                    started="2026-01-01T00:00:00Z", expires=expires)  # fmt: skip
    return json.dumps(asdict(holder)).encode()


def _roots(tmp_path: Path, bucket: str | None, endpoint: str | None) -> Root:
    if bucket is None:
        return Root(str(tmp_path / "lake"))
    return Root(f"s3://{bucket}/lake", {"endpoint_url": endpoint})


@pytest.mark.parametrize("where", ["disk", "s3"])
def test_a_held_lease_stops_a_second_writer(tmp_path: Path, where: str, request: Any) -> None:
    bucket = request.getfixturevalue("bucket") if where == "s3" else None
    endpoint = request.getfixturevalue("s3_endpoint") if where == "s3" else None
    root = _roots(tmp_path, bucket, endpoint)
    first = Lease(root)
    with first.held():
        with pytest.raises(LeaseError) as caught:
            Lease(root).acquire(wait=0)
        message = str(caught.value)
        assert f"a build on {socket.gethostname()} (process {os.getpid()}" in message
        assert "--wait SECONDS" in message and caught.value.exit_code == ExitCode.LOCKED
    assert first.read() is None  # released
    with Lease(root).held() as second:
        assert second.notes == []


def test_ls_tells_a_build_is_running(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lake.cli import app

    root = Root(str(tmp_path / "lake"))
    os.makedirs(root.path())
    (tmp_path / "lake" / "catalog.json").write_text(json.dumps(
        {"type": "Catalog", "stac_version": "1.1.0", "id": "lake", "description": "x",
         "links": []}))  # fmt: skip
    with Lease(root).held():
        shown = CliRunner().invoke(app, ["ls", str(tmp_path / "lake")])
    assert shown.exit_code == 0, shown.output
    assert "the lake's build lease is held by a build on" in " ".join(shown.output.split())
    assert "lease" not in CliRunner().invoke(app, ["ls", str(tmp_path / "lake")]).output


def test_waiting_for_the_holder_to_finish(tmp_path: Path) -> None:
    root = Root(str(tmp_path / "lake"))
    holder = Lease(root)
    holder.acquire()
    threading.Timer(1.5, holder.release).start()
    started = time.monotonic()
    with Lease(root).held(wait=30):
        assert 1.0 < time.monotonic() - started < 30


def test_stale_leases_are_taken_over_and_said(tmp_path: Path) -> None:
    root = Root(str(tmp_path / "lake"))
    os.makedirs(root.path(), exist_ok=True)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    path = Path(root.path(LEASE))
    path.write_bytes(_foreign(socket.gethostname(), int(gone.stdout), "2999-01-01T00:00:00Z"))
    with Lease(root).held() as lease:
        assert len(lease.notes) == 1 and "no longer runs" in lease.notes[0]
    path.write_bytes(_foreign("another-host", 1, "2020-01-01T00:00:00Z"))
    with Lease(root).held() as lease:
        assert "its lease expired at 2020-01-01T00:00:00Z" in lease.notes[0]
    # A live holder on another host whose lease has not expired is waited for.
    path.write_bytes(_foreign("another-host", 1, "2999-01-01T00:00:00Z"))
    with pytest.raises(LeaseError, match="a build on another-host"):
        Lease(root).acquire()


def test_the_holder_renews_its_lease(tmp_path: Path) -> None:
    root = Root(str(tmp_path / "lake"))
    with Lease(root, ttl=2.0, renew=0.3).held() as lease:
        first = lease.read()
        time.sleep(1.0)
        later = lease.read()
        assert first is not None and later is not None and later.expires >= first.expires
        time.sleep(2.5)  # past the first expiry: still held, since it was renewed
        with pytest.raises(LeaseError):
            Lease(root).acquire()


def _spec(tmp_path: Path, root: str, options: dict[str, Any] | None = None) -> Path:
    write_daily_product(tmp_path / "src", days=8, ny=60, nx=90)
    doc: dict[str, Any] = {"root": root, "datasets": [
        {"id": "sst", "cube": {"netcdf": str(tmp_path / "src" / "*.nc")},
         "metadata": {"license": "CC-BY-4.0"}}]}  # fmt: skip
    if options:
        doc["storage_options"] = options
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _build(spec: Path, client: Client, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lake.cli", "build", str(spec), "--scheduler",
         client.scheduler.address, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


@pytest.mark.distributed
@pytest.mark.parametrize("where", ["disk", "s3"])
def test_two_builds_started_at_once(tmp_path: Path, client: Client, where: str,
                                    request: Any) -> None:  # fmt: skip
    """Never a read error: one builds, the other exits 5 naming it and touching nothing;
    with --wait both succeed; the lake verifies."""
    import lake

    if where == "s3":
        bucket, endpoint = request.getfixturevalue("bucket"), request.getfixturevalue("s3_endpoint")
        root, options = f"s3://{bucket}/lake", {"endpoint_url": endpoint}
    else:
        root, options = str(tmp_path / "lake"), None
    spec = _spec(tmp_path, root, options)
    runs = [_build(spec, client) for _ in range(2)]
    outputs = [(r.wait(timeout=600), " ".join(r.stdout.read().split())) for r in runs]  # type: ignore[union-attr]
    codes = sorted(code for code, _ in outputs)
    assert codes == [0, ExitCode.LOCKED], outputs
    refused = next(text for code, text in outputs if code == ExitCode.LOCKED)
    assert "is being built by a build on" in refused and "Traceback" not in refused
    assert lake.verify(Root(root, options or {})).ok
    again = [_build(spec, client, "--wait", "300") for _ in range(2)]
    assert [r.wait(timeout=600) for r in again] == [0, 0]
    assert lake.verify(Root(root, options or {})).ok


@pytest.mark.distributed
def test_a_killed_builds_lease_is_taken_over(tmp_path: Path, client: Client) -> None:
    import lake

    root = tmp_path / "lake"
    spec = _spec(tmp_path, str(root))
    run = _build(spec, client)
    deadline = time.monotonic() + 120
    while not (root / LEASE).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (root / LEASE).exists(), "the build never took its lease"
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert (root / LEASE).exists()  # a killed build leaves its lease behind
    after = _build(spec, client)
    code = after.wait(timeout=600)
    text = " ".join(after.stdout.read().split())  # type: ignore[union-attr]
    assert code == 0, text
    assert "took over the lease of a build on" in text and "no longer runs" in text
    assert not (root / LEASE).exists()
    assert lake.verify(Root(str(root))).ok


@pytest.mark.distributed
def test_a_refused_build_touches_nothing(tmp_path: Path, client: Client) -> None:
    """Exit 5 before anything of the lake is read or written: every file as it was."""
    from typer.testing import CliRunner

    from lake.cli import app

    root = tmp_path / "lake"
    spec = _spec(tmp_path, str(root))
    args = ["build", str(spec), "--scheduler", client.scheduler.address]
    assert CliRunner().invoke(app, args).exit_code == 0
    write_daily_product(tmp_path / "src", start="2024-01-09", days=2, ny=60, nx=90)  # new data
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    with Lease(Root(str(root))).held():
        refused = CliRunner().invoke(app, args)
        during = {p: p.stat().st_mtime_ns for p in root.rglob("*")
                  if p.is_file() and p.name != LEASE}  # fmt: skip
    assert refused.exit_code == ExitCode.LOCKED, refused.output
    assert during == before
