"""The one error type users see: it names the input, the fault and the fix."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of the ``lake`` command (documented in the README)."""

    OK = 0
    UNEXPECTED = 1
    SPEC = 2
    SOURCE = 3
    TARGET = 4
    LOCKED = 5


class LakeError(Exception):
    """A problem with the user's input or environment that stops a build.

    Attributes
    ----------
    subject:
        The input at fault: a file, a URL, a spec field.
    problem:
        What is wrong with it.
    fix:
        What the user can do about it.
    """

    exit_code: ExitCode = ExitCode.UNEXPECTED

    def __init__(self, subject: str, problem: str, fix: str) -> None:
        self.subject = subject
        self.problem = problem.rstrip(". ")
        self.fix = fix.rstrip(". ")
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.subject}: {self.problem}. Fix: {self.fix}."

    def __reduce__(self) -> tuple[type[LakeError], tuple[str, str, str]]:
        # Keep the three parts when the error travels back from a Dask worker.
        return (type(self), (self.subject, self.problem, self.fix))


class SpecError(LakeError):
    """The spec file is missing, unreadable or invalid."""

    exit_code = ExitCode.SPEC


class SourceError(LakeError):
    """A source (NetCDF file, database) cannot be read or is inconsistent."""

    exit_code = ExitCode.SOURCE


class TargetError(LakeError):
    """The target root cannot be written or holds something we cannot extend."""

    exit_code = ExitCode.TARGET


class LeaseError(LakeError):
    """Another build holds the lake's lease: this one touched nothing."""

    exit_code = ExitCode.LOCKED
