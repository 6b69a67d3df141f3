"""Generated, realistic CF NetCDF files: a Copernicus-like daily gridded product.

Used by the tests, the benchmarks and the demo; no real data is copied into the project.
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd


def write_daily_product(
    folder: str | Path,
    start: str = "2024-01-01",
    days: int = 10,
    ny: int = 120,
    nx: int = 180,
    depths: int = 1,
    packed: bool = True,
    prefix: str = "thetao",
    seed: int = 0,
) -> list[Path]:
    """Write one zlib-compressed NetCDF4 file per day; return their paths.

    Potential temperature ``thetao(time, depth, latitude, longitude)`` on a regular
    1/12° grid in the North-East Atlantic, with land (fill values) and a seasonal signal;
    packed as int16 with ``scale_factor``/``add_offset`` like Copernicus Marine files, or
    float32 with a ``_FillValue`` when ``packed`` is false.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lat = (40.0 + np.arange(ny) / 12).astype("float32")
    lon = (-20.0 + np.arange(nx) / 12).astype("float32")
    depth = np.array([0.494, 1.541, 2.646, 3.819, 5.078, 6.441, 7.930, 9.573][:depths] or [0.494])
    depth = np.concatenate([depth, 10.0 + 5.0 * np.arange(max(0, depths - len(depth)))])
    yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    land = (xx - nx * 0.8) ** 2 + (yy - ny * 0.3) ** 2 < (min(nx, ny) * 0.2) ** 2
    base = 18.0 - 8.0 * (yy / max(ny - 1, 1)) + 0.5 * np.sin(xx / 7.0)
    epoch = pd.Timestamp("1950-01-01")
    paths = []
    for day in pd.date_range(start, periods=days, freq="D"):
        path = folder / f"{prefix}_{day:%Y%m%d}.nc"
        season = 3.0 * np.sin(2 * np.pi * (day.day_of_year - 100) / 365.25)
        with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
            nc.Conventions = "CF-1.8"
            nc.title = "Synthetic daily potential temperature (IBI-like)"
            nc.institution = "marine-lake sample generator"
            nc.createDimension("time", None)
            nc.createDimension("depth", len(depth))
            nc.createDimension("latitude", ny)
            nc.createDimension("longitude", nx)
            t = nc.createVariable("time", "f8", ("time",))
            t.units, t.calendar, t.standard_name, t.axis = (
                "hours since 1950-01-01", "gregorian", "time", "T"
            )  # fmt: skip
            t[:] = [(day - epoch) / pd.Timedelta(hours=1)]
            d = nc.createVariable("depth", "f4", ("depth",))
            d.units, d.standard_name, d.positive, d.axis = "m", "depth", "down", "Z"
            d[:] = depth
            la = nc.createVariable("latitude", "f4", ("latitude",))
            la.units, la.standard_name, la.axis = "degrees_north", "latitude", "Y"
            la[:] = lat
            lo = nc.createVariable("longitude", "f4", ("longitude",))
            lo.units, lo.standard_name, lo.axis = "degrees_east", "longitude", "X"
            lo[:] = lon
            # Mesoscale eddies drifting with time, and a little measurement-like noise: as
            # smooth as a real analysis, so compression behaves as it does on real products.
            k = (day - epoch).days
            eddies = 0.8 * np.sin(xx / 23.0 + k / 9.0) * np.cos(yy / 17.0 - k / 13.0)
            field = (
                base[None, :, :]
                + season
                + eddies[None, :, :]
                - 0.05 * depth[:, None, None]
                + rng.normal(0, 0.02, (len(depth), ny, nx))
            )
            field = np.where(land[None], np.nan, field)
            if packed:
                v = nc.createVariable(
                    "thetao", "i2", ("time", "depth", "latitude", "longitude"),
                    zlib=True, complevel=1, shuffle=True, fill_value=np.int16(-32767),
                    chunksizes=(1, 1, ny, nx),
                )  # fmt: skip
                v.scale_factor = np.float64(0.001)  # float64, as Copernicus Marine packs
                v.add_offset = np.float64(10.0)
            else:
                v = nc.createVariable(
                    "thetao", "f4", ("time", "depth", "latitude", "longitude"),
                    zlib=True, complevel=1, shuffle=True, fill_value=np.float32(1e20),
                    chunksizes=(1, 1, ny, nx),
                )  # fmt: skip
            v.units, v.standard_name = "degrees_C", "sea_water_potential_temperature"
            v.long_name = "Sea water potential temperature"
            v.set_auto_maskandscale(False)
            if packed:
                raw = np.round((field - 10.0) / 0.001)
                v[0] = np.where(np.isnan(field), -32767, raw).astype("int16")
            else:
                v[0] = np.where(np.isnan(field), np.float32(1e20), field).astype("float32")
        paths.append(path)
    return paths


def write_mooring(
    folder: str | Path,
    start: str = "2024-01-01",
    months: int = 3,
    step_minutes: int = 60,
    depths: tuple[float, ...] = (10.0, 50.0, 100.0),
    site: str = "DEMO01",
    seed: int = 1,
    months_per_file: int = 1,
    stations: int = 1,
) -> list[Path]:
    """Write OceanSITES-like NetCDF4 files of a fixed mooring (one per ``months_per_file``
    months); return paths.

    ``TEMP`` and ``PSAL`` (TIME, DEPTH) with a daily cycle, a seasonal trend and sensor
    noise, each with an int8 ``*_QC`` flag variable (OceanSITES/Argo flag scale: 1 good,
    3 probably bad, 4 bad, 9 missing); ``LATITUDE``/``LONGITUDE`` of the site; CF time.
    With ``stations`` above 1, an array of moorings in the CF orthogonal time-series
    representation: (TIME, STATION, DEPTH), with ``LATITUDE``/``LONGITUDE(STATION)``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    first = pd.Timestamp(start)
    paths = []
    lats = 43.8 + 0.1 * np.arange(stations)
    lons = 7.9 + 0.1 * np.arange(stations)
    dims: tuple[str, ...] = ("TIME", "STATION", "DEPTH") if stations > 1 else ("TIME", "DEPTH")
    for m in range(0, months, months_per_file):
        month_start = first + pd.DateOffset(months=m)
        month_end = first + pd.DateOffset(months=min(months, m + months_per_file))
        times = pd.date_range(month_start, month_end, freq=f"{step_minutes}min", inclusive="left")
        hours = (times - pd.Timestamp("1950-01-01")).total_seconds().to_numpy() / 3600.0
        day = 2 * np.pi * (hours % 24) / 24
        season = 2 * np.pi * times.day_of_year.to_numpy() / 365.25
        z = np.asarray(depths)[None, None, :]
        shape = (len(times), stations, len(depths))
        offset = 0.5 * np.arange(stations)[None, :, None] - 0.02 * z
        temp = (12 + 3 * np.sin(season)[:, None, None] * np.exp(-z / 80) + offset
                + 0.3 * np.sin(day)[:, None, None] + rng.normal(0, 0.05, shape))  # fmt: skip
        psal = 35.2 + 0.002 * z + rng.normal(0, 0.01, shape)
        temp_qc = np.ones(temp.shape, dtype="i1")
        psal_qc = np.ones(psal.shape, dtype="i1")
        spikes = rng.random(temp.shape) < 0.002
        temp[spikes] += 5
        temp_qc[spikes] = 4
        gaps = rng.random(psal.shape) < 0.001
        psal[gaps] = 99999.0
        psal_qc[gaps] = 9
        if stations == 1:
            temp, psal, temp_qc, psal_qc = (a[:, 0] for a in (temp, psal, temp_qc, psal_qc))
        name = f"{month_start:%Y%m}" + (f"-{month_end - pd.DateOffset(months=1):%Y%m}"
                                        if months_per_file > 1 else "")  # fmt: skip
        path = folder / f"OS_{site}_{name}_D_TS.nc"
        # Chunks of about a month of hourly data: the library's default for an unlimited
        # dimension (one step per chunk) makes a decade 87,600 chunks per variable.
        chunks = (min(len(times), 1024), *((stations,) if stations > 1 else ()), len(depths))
        with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
            nc.data_type = "OceanSITES time-series data"
            nc.format_version = "1.4"
            nc.site_code = site
            nc.Conventions = "CF-1.8 OceanSITES-1.4"
            nc.title = f"Generated mooring {site}: temperature and salinity"
            nc.featureType = "timeSeriesProfile"
            nc.createDimension("TIME", None)
            nc.createDimension("DEPTH", len(depths))
            if stations > 1:
                nc.createDimension("STATION", stations)
            t = nc.createVariable("TIME", "f8", ("TIME",))
            t.units = "days since 1950-01-01T00:00:00Z"
            t.standard_name = "time"
            t.axis = "T"
            t.calendar = "standard"
            t[:] = hours / 24.0
            d = nc.createVariable("DEPTH", "f4", ("DEPTH",))
            d.units = "m"
            d.positive = "down"
            d.standard_name = "depth"
            d.axis = "Z"
            d[:] = np.asarray(depths, dtype="f4")
            places = (("LATITUDE", "Y", lats, "latitude"), ("LONGITUDE", "X", lons, "longitude"))
            for name, axis, value, standard in places:
                v = nc.createVariable(name, "f4", ("STATION",) if stations > 1 else ())
                v.units = "degrees_north" if axis == "Y" else "degrees_east"
                v.standard_name = standard
                v.axis = axis
                if stations > 1:
                    v[:] = value.astype("f4")
                else:
                    v.assignValue(value[0])
            for name, values, flags, unit, standard in (
                ("TEMP", temp, temp_qc, "degree_Celsius", "sea_water_temperature"),
                ("PSAL", psal, psal_qc, "1e-3", "sea_water_practical_salinity"),
            ):
                var = nc.createVariable(name, "f4", dims, zlib=True, chunksizes=chunks,
                                        fill_value=np.float32(99999.0))  # fmt: skip
                var.units = unit
                var.standard_name = standard
                var.ancillary_variables = f"{name}_QC"
                var[:] = np.where(flags == 9, 99999.0, values).astype("f4")
                qc = nc.createVariable(f"{name}_QC", "i1", dims, zlib=True, chunksizes=chunks,
                                       fill_value=np.int8(-127))  # fmt: skip
                qc.long_name = f"quality flag of {name}"
                qc.conventions = "OceanSITES reference table 2"
                qc.flag_values = np.array([0, 1, 2, 3, 4, 7, 8, 9], dtype="i1")
                qc.flag_meanings = ("no_qc_performed good_data probably_good_data "
                                    "bad_data_that_are_potentially_correctable bad_data "
                                    "nominal_value interpolated_value missing_value")  # fmt: skip
                qc[:] = flags
        paths.append(path)
    return paths
