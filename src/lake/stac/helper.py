"""Helper processes of the catalogue writer: the work that would otherwise wait for the
GIL (writing item documents, converting the mirror) runs beside it on the other core,
reading the writer's spool of item documents while the writer is still appending to it.

A spool record is a line ``<mark> <id>``, then the item document's line. The mark is
``*`` for an item no published collection links yet, ``+`` for a published item to
replace, ``=`` for one unchanged. A helper follows the spool file (:func:`follow`) rather
than a pipe: the file is a buffer without a bound, so the writer never waits for a helper
busy converting a chunk. The writer closes the helper's standard input when the spool is
complete, after a command line for the helper when it has one.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


class HelperProcess:
    """``python -c code args…``, started at once, importing this very package wherever
    this process found it; its standard input a pipe from this one. Its output is
    dropped; its errors go to a temporary file (a pipe could fill up and stall both
    processes), kept for the message."""

    def __init__(self, code: str, *args: str) -> None:
        import lake

        src = os.path.dirname(os.path.dirname(os.path.abspath(lake.__file__)))
        path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed in wait()/stop()
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL,
            stdin=subprocess.PIPE, stderr=self.errors, env={**os.environ, "PYTHONPATH": path},
        )  # fmt: skip
        self.input: IO[bytes] | None = self.process.stdin

    def send(self, data: bytes) -> None:
        """Give the helper ``data``; a helper that stopped reading (it failed) is left
        alone: :meth:`wait` tells why."""
        if self.input is None:
            return
        try:
            self.input.write(data)
        except (BrokenPipeError, ValueError):
            self.input = None

    def close_input(self) -> None:
        """Tell the helper that nothing more comes."""
        if self.input is not None:
            with contextlib.suppress(BrokenPipeError):
                self.input.close()
            self.input = None

    def wait(self) -> None:
        """Wait for the end; RuntimeError with the helper's last line of error when it
        failed."""
        self.close_input()
        self.process.wait()
        self.errors.seek(0)
        lines = self.errors.read().decode(errors="replace").strip().splitlines()
        self.errors.close()
        if self.process.returncode:
            raise RuntimeError(lines[-1] if lines else f"exit status {self.process.returncode}")

    def stop(self) -> None:
        """Stop the helper if it still runs (the writer stopped before waiting for it)."""
        if self.process.poll() is None:
            self.process.kill()
        self.input = None
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
        self.process.wait()
        self.errors.close()


def follow(
    path: str, signal: IO[bytes], commands: list[bytes]
) -> Iterator[tuple[bytes, str, bytes]]:
    """The records of the spool file ``path`` as the writer appends them: (mark, id,
    document). They end at the end of the file once the writer has closed ``signal``
    (the helper's standard input); what it sent there first is added to ``commands``."""
    import select

    done = False
    with open(path, "rb") as source:
        while True:
            start = source.tell()
            line = source.readline()
            data = source.readline() if line.endswith(b"\n") else b""
            if data.endswith(b"\n"):
                yield line[:1], line[2:-1].decode(), data[:-1]
                continue
            source.seek(start)  # the rest of the record is not written yet
            if done:
                if line:
                    raise RuntimeError(f"{path}: the spool ends inside a record")
                return
            if select.select([signal], [], [], 0.02)[0]:
                commands.append(signal.read())  # up to the end: the spool is complete
                done = True


# Writes the item documents of the spool into a local folder: a new item's document
# straight into its file (nothing links it yet; a file already there is replaced
# instead), a published item's through a temporary file renamed into place, as Root.put
# does. Published items are written only on the command ``replace``, sent once their new
# digests are recorded: the spool is read again for them.
WRITE_ITEMS = """
import os, sys
from lake.stac.helper import follow
spool, folder, token = sys.argv[1:4]
os.makedirs(folder, exist_ok=True)
commands = []
number = 0

def replace(path, data):
    global number
    tmp = f"{path}.{token}-{number}.partial"
    number += 1
    with open(tmp, "wb") as out:
        out.write(data)
    os.replace(tmp, path)

for mark, item, data in follow(spool, sys.stdin.buffer, commands):
    if mark == b"*":
        path = os.path.join(folder, item + ".json")
        try:
            with open(path, "xb") as out:
                out.write(data)
        except FileExistsError:
            replace(path, data)
if commands and commands[0].strip() == b"replace":
    for mark, item, data in follow(spool, sys.stdin.buffer, commands):
        if mark == b"+":
            replace(os.path.join(folder, item + ".json"), data)
"""
