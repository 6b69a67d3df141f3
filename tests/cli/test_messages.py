"""What a failed `lake build` prints: one message naming the file, no worker traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.distributed


def _build(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"root: {tmp_path / 'lake'}\ndatasets:\n  - id: d\n    metadata: {{license: CC0-1.0}}\n"
        f"    cube: {{netcdf: '{tmp_path / 'src' / '*.nc'}'}}\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "lake.cli", "build", str(spec), "--workers", "1", *extra],
        check=False, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_a_failed_build_prints_one_message_and_no_traceback(tmp_path: Path) -> None:
    from lake.samples import write_daily_product

    files = write_daily_product(tmp_path / "src", days=2, ny=20, nx=30)
    files[1].write_bytes(files[1].read_bytes()[:4000])  # truncated
    done = _build(tmp_path)
    assert done.returncode == 3, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr and "Compute Failed" not in done.stderr, done.stderr
    assert lines[0].startswith(f"error: {files[1]}"), done.stderr
    assert not (tmp_path / "lake" / "d").exists()


def test_debug_shows_the_workers_traceback(tmp_path: Path) -> None:
    from lake.samples import write_daily_product

    files = write_daily_product(tmp_path / "src", days=1, ny=20, nx=30)
    files[0].write_bytes(b"CDF\x01" + b"\x00" * 100)  # a NetCDF-3 signature, then nothing
    done = _build(tmp_path, "--debug")
    assert done.returncode == 3
    assert "Compute Failed" in done.stderr, done.stderr


def test_a_failure_after_publishing_names_what_was_published(
    tmp_path: Path, client: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalogue step fails after the cube was published: the message says so instead
    of claiming that nothing was published."""
    from typer.testing import CliRunner

    import lake.stac.catalog
    from lake.cli import app
    from lake.samples import write_daily_product

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the catalogue broke")

    write_daily_product(tmp_path / "src", days=2, ny=20, nx=30)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"root: {tmp_path / 'lake'}\ndatasets:\n  - id: d\n    metadata: {{license: CC0-1.0}}\n"
        f"    cube: {{netcdf: '{tmp_path / 'src' / '*.nc'}'}}\n"
    )
    monkeypatch.setattr(lake.stac.catalog, "write_catalogue", broken)
    address = client.scheduler.address  # type: ignore[attr-defined]
    result = CliRunner().invoke(app, ["build", str(spec), "--scheduler", address])
    output = " ".join(result.output.split())
    assert result.exit_code == 1, output
    assert "unexpected RuntimeError: the catalogue broke" in output
    assert "published before the failure: d;" in output
    assert "Nothing was published" not in output


def test_a_command_that_succeeds_still_runs_exit_handlers_and_flushes(tmp_path: Path) -> None:
    """Success ends without tearing the interpreter down, but after running threads and
    the exit handlers finished, and with all output written, even into a pipe."""
    marker, writer = tmp_path / "handler-ran", tmp_path / "thread-wrote"
    script = (
        "import atexit, sys, threading, time\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').write('ran'))\n"
        "def late():\n"
        "    time.sleep(0.3)\n"
        f"    open({str(writer)!r}, 'w').write('done')\n"
        "sys.argv = ['lake', 'build', '--help']\n"
        "from lake.cli.app import main\n"
        "threading.Thread(target=late).start()\n"
        "main()\n"
        "print('not reached')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Build or update the lake" in done.stdout and "not reached" not in done.stdout
    assert marker.read_text() == "ran"
    assert writer.read_text() == "done"  # a thread that is not a daemon finished first
    failed = subprocess.run([sys.executable, "-c", script.replace("'--help'", "'--nope'")],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert failed.returncode != 0 and "--nope" in failed.stderr
