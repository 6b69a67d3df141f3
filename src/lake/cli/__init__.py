"""The ``lake`` command line (typer): a thin wrapper over :mod:`lake.api`."""

from __future__ import annotations

from lake.cli.app import app, main, run_build

__all__ = ["app", "main", "run_build"]
