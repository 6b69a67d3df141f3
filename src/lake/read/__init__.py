"""Reading a published lake: a cube or a table cut to a request, from the catalogue and
the files alone (any fsspec URL: a folder, ``s3://``, ``https://``; no server).

* :func:`lake.read.cube.open_cube`: a lazy ``xarray.Dataset`` from the layout whose chunks
  the request touches least.
* :func:`lake.read.table.open_table`: a ``pyarrow`` dataset (or a GeoDataFrame) of the files
  and row groups that can hold rows in the request.
* :func:`lake.read.subset.subset`: either one written to a file (``lake subset``).
"""
