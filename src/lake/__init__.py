"""Marine data lake builder: NetCDF files and PostgreSQL records to Zarr v3 cubes and
GeoParquet tables, indexed by a static STAC catalogue.

The public API (see ``README.md``)::

    import lake
    spec = lake.load_spec("lake.yaml")
    report = lake.build(spec)                # per dataset: read, added, bytes, seconds
    lake.plan(spec)                          # what a build would read and write
    lake.verify(spec.root).ok                # every asset re-read against its records
    lake.validate(spec.root).problems        # the catalogue against the official schemas
    lake.ls(spec.root)                       # datasets, sizes, extents
    lake.open_cube(url, "ibi", bbox=(-10, 40, 0, 50), time="2024-01")   # lazy, no server
    lake.open_table(url, "occurrences", bbox=(-5, 50, 5, 56))          # a pyarrow dataset
    lake.subset(url, "ibi", "cut.nc", bbox=(-10, 40, 0, 50))            # one file

The package's houses (a test checks how they may import each other):

* ``lake.spec``, ``lake.storage``, ``lake.errors``, ``lake.report``, ``lake.registry``:
  shared by all.
* ``lake.cubes``: gridded sources to Zarr v3 cubes. ``lake.tables``: record sources to
  GeoParquet. Neither imports the other, the catalogue or the wiring.
* ``lake.stac``: describes what the two wrote, as a static STAC catalogue; verifies it.
* ``lake.flows``: wires them into Dask graphs. ``lake.api`` and ``lake.cli`` sit on top.
* ``lake.read``: reads a published lake (any URL) cut to a request; builds nothing.

Names are imported on first use, so that ``import lake`` stays light (the build starts its
worker processes before the heavy imports).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lake.api import (
        BuildReport,
        DatasetPlan,
        build,
        load_spec,
        ls,
        plan,
        validate,
        verify,
    )
    from lake.errors import (
        ExitCode,
        LakeError,
        LeaseError,
        SourceError,
        SpecError,
        TargetError,
    )
    from lake.read.cube import open_cube
    from lake.read.subset import subset
    from lake.read.table import open_table
    from lake.report import DatasetReport, Problem, Report
    from lake.spec import Spec
    from lake.storage import Root

__version__ = "0.1.0"

_EXPORTS = {
    "build": "lake.api",
    "plan": "lake.api",
    "verify": "lake.api",
    "validate": "lake.api",
    "ls": "lake.api",
    "load_spec": "lake.api",
    "open_cube": "lake.read.cube",
    "open_table": "lake.read.table",
    "subset": "lake.read.subset",
    "BuildReport": "lake.api",
    "DatasetPlan": "lake.api",
    "DatasetReport": "lake.report",
    "Report": "lake.report",
    "Problem": "lake.report",
    "Spec": "lake.spec",
    "Root": "lake.storage",
    "ExitCode": "lake.errors",
    "LakeError": "lake.errors",
    "LeaseError": "lake.errors",
    "SpecError": "lake.errors",
    "SourceError": "lake.errors",
    "TargetError": "lake.errors",
}

__all__ = [
    "BuildReport", "DatasetPlan", "DatasetReport", "ExitCode", "LakeError", "LeaseError",
    "Problem",
    "Report", "Root", "SourceError", "Spec", "SpecError", "TargetError", "__version__",
    "build", "load_spec", "ls", "open_cube", "open_table", "plan", "subset", "validate",
    "verify",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lake' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
