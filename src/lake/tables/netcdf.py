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

from lake.errors import LakeError, SourceError
from lake.sourcefiles import NETCDF_FIX, acdd_metadata, netcdf_engine_and_handle
from lake.storage import redact
from lake.tables.byfile import ByFileReader
from lake.tables.dsg import read_dsg


def read_netcdf_rows(
    url: str, storage_options: dict[str, Any], rows: str = ""
) -> Iterator[pa.Table]:
    """The observations of one DSG file."""
    import xarray as xr

    shown = redact(url)
    try:
        engine, target = netcdf_engine_and_handle(url, storage_options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = xr.open_dataset(target, engine=engine, decode_cf=False,
                                 mask_and_scale=False, decode_times=False)  # fmt: skip
        with ds:
            table = read_dsg(ds.load(), shown)
    except LakeError:
        raise
    except FileNotFoundError:
        raise SourceError(shown, "does not exist", "check the path or glob") from None
    except Exception as exc:
        raise SourceError(
            shown,
            f"cannot be read as NetCDF, it may be truncated or corrupt "
            f"({type(exc).__name__}: {redact(str(exc))})",
            NETCDF_FIX,
        ) from None
    yield table


def netcdf_metadata(url: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    """What the first file's ACDD attributes say for the catalogue (nothing, when the file
    cannot be opened: its read then says why)."""
    import xarray as xr

    try:
        engine, target = netcdf_engine_and_handle(url, storage_options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with xr.open_dataset(target, engine=engine, decode_cf=False) as ds:
                return acdd_metadata(dict(ds.attrs))
    except Exception:  # the build's read of the file names what is wrong with it
        return {}


class NetcdfTableReader(ByFileReader):
    """CF DSG NetCDF files (``table: {netcdf: ...}``)."""

    kind: ClassVar[str] = "netcdf"
    title: ClassVar[str] = "NetCDF files (CF discrete sampling geometries)"
    read_file = staticmethod(read_netcdf_rows)
    metadata_of = staticmethod(netcdf_metadata)
