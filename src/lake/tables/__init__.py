"""GeoParquet tables from record sources: Arrow types, geometry, Hilbert order, partitions,
staging, files, manifest and verify.

Never imports :mod:`lake.cubes`, :mod:`lake.stac` or :mod:`lake.flows` (a test checks).
"""
