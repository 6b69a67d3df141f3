"""Helper processes of the catalogue writer: the work that would otherwise wait for the
GIL (writing item documents, converting the mirror) runs beside it on another core."""

from __future__ import annotations

import os
import subprocess
import sys


class HelperProcess:
    """``python -c code args…``, started at once, importing this very package wherever
    this process found it; its output is dropped and its errors kept for the message."""

    def __init__(self, code: str, *args: str) -> None:
        import lake

        src = os.path.dirname(os.path.dirname(os.path.abspath(lake.__file__)))
        path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": path},
        )  # fmt: skip

    def wait(self) -> None:
        """Wait for the end; RuntimeError with the helper's last line of error when it
        failed."""
        _, errors = self.process.communicate()
        if self.process.returncode:
            lines = errors.decode(errors="replace").strip().splitlines()
            raise RuntimeError(lines[-1] if lines else f"exit status {self.process.returncode}")

    def stop(self) -> None:
        """Stop the helper if it still runs (the writer stopped before waiting for it)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()
