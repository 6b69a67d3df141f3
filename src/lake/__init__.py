"""Marine data lake builder: NetCDF and PostgreSQL sources to Zarr v3 cubes and GeoParquet.

The package has three layers (see ``README.md``):

* ``lake`` (this package's top-level modules and ``lake.sources``): formats and storage.
  Pure functions and small classes; no Dask cluster inside.
* ``lake.stac``: describes what was written as a static STAC catalogue.
* ``lake.flows``: wires the two into Dask graphs and the ``lake`` command line.

The format layer never imports ``lake.stac`` or ``lake.flows`` (a test enforces it).
"""

from __future__ import annotations

__version__ = "0.1.0"
