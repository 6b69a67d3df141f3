"""What a build did (:class:`DatasetReport`) and what a check of a lake found (problems, each
naming its object, and notes).

Returned by :func:`lake.verify` and :func:`lake.validate`; the command line prints each
problem on one line and exits 3 when there is any.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from lake.storage import Root


@dataclass(frozen=True)
class Problem:
    """One fault of one object: ``subject`` names it (a path, with a JSON path for schema
    problems), ``message`` says what is wrong."""

    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"


@dataclass
class Report:
    """Objects checked, problems found, and notes (what an interrupted build left, which no
    reader sees and the next build settles)."""

    objects: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, subject: str, message: str) -> None:
        self.problems.append(Problem(subject, message))

    @property
    def ok(self) -> bool:
        """No problem found (notes allowed)."""
        return not self.problems

    def read_json(self, root: Root, path: str) -> Any:
        """The JSON document at ``path`` below the root, or None (a problem noted)."""
        try:
            return root.read_json(path)
        except FileNotFoundError:
            self.add(path, "is missing")
        except ValueError as exc:
            self.add(path, f"is not valid JSON ({exc})")
        return None


def sha256_of(root: Root, path: str) -> tuple[int, str]:
    """Size and sha256 of the object at ``path`` below the root, read in 8 MiB pieces."""
    digest = hashlib.sha256()
    size = 0
    with root.fs().open(root.path(path), "rb") as handle:
        while chunk := handle.read(8 * 2**20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


@dataclass(frozen=True)
class DatasetReport:
    """What a build did to one dataset."""

    id: str
    kind: Literal["cube", "table"]
    read: int
    """Source files read (cube) or rows read (table)."""
    bytes_in: int
    """Bytes of the source files read (cube) or of the Arrow batches read (table)."""
    bytes_out: int
    """Bytes on storage below the dataset's folder after the build."""
    holds: int
    """Time steps (cube) or rows (table) the dataset holds now."""
    added: dict[str, int]
    """Time steps added per layout (cube); rows read and files written (table)."""
    seconds: float
    detail: Any
    """Every figure of the build (``files_scanned``, ``partitions_written``, ...)."""
    notes: list[str] = field(default_factory=list)
    """What the build left out or could not do, for the user to read."""

    @property
    def changed(self) -> bool:
        return any(self.added.values())
