"""The ``lake`` command line (typer): a thin wrapper over :mod:`lake.api`."""

from __future__ import annotations

from lake.cli import reading  # registers `lake subset`
from lake.cli.app import app, main, run_build

__all__ = ["app", "main", "reading", "run_build"]
