"""Wiring: Dask graphs over the functions of ``lake`` and the ``lake`` command line.

As little logic as possible lives here: each step calls a function of ``lake``.
"""
