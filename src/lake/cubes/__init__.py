"""Zarr v3 cubes from gridded sources: scan and index along time, time axis, chunk plan,
template, block writes, publish and verify.

Never imports :mod:`lake.tables`, :mod:`lake.stac` or :mod:`lake.flows` (a test checks).
"""
