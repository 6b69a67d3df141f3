"""The NetCDF table source: CF discrete-sampling-geometry files, one row per observation.

``table: {netcdf: GLOB}`` names files of in-situ observations (Argo profiles, CTD casts,
gliders, moorings, ragged arrays); :mod:`lake.tables.dsg` turns each into rows, and
:mod:`lake.tables.byfile` groups the files into parts and makes builds incremental by file.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any, ClassVar

import pyarrow as pa

from lake.errors import LakeError
from lake.sourcefiles import acdd_metadata, netcdf_errors, open_netcdf_dataset
from lake.storage import redact
from lake.tables.byfile import ByFileReader
from lake.tables.dsg import read_dsg


def read_netcdf_rows(
    url: str, storage_options: dict[str, Any], rows: str = ""
) -> Iterator[pa.Table]:
    """The observations of one DSG file."""
    with warnings.catch_warnings(), netcdf_errors(url):
        warnings.simplefilter("ignore")
        ds = open_netcdf_dataset(url, storage_options, decode_cf=False, mask_and_scale=False,
                                 decode_times=False)  # fmt: skip
        with ds:
            table = read_dsg(ds.load(), redact(url))
    yield table


def netcdf_metadata(url: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    """What the file's ACDD attributes say for the catalogue (nothing, when the file cannot
    be opened: its read then says why)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with open_netcdf_dataset(url, storage_options, decode_cf=False) as ds:
                return acdd_metadata(dict(ds.attrs))
    except LakeError:
        return {}


class NetcdfTableReader(ByFileReader):
    """CF DSG NetCDF files (``table: {netcdf: ...}``)."""

    kind: ClassVar[str] = "netcdf"
    title: ClassVar[str] = "NetCDF files (CF discrete sampling geometries)"
    read_file = staticmethod(read_netcdf_rows)

    def source_metadata(self) -> dict[str, Any]:
        first = self.first_file
        return netcdf_metadata(first, self.storage_options) if first else {}
