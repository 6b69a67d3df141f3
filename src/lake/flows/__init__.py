"""Dask wiring: each dataset kind's flow (scan, plan, write, publish) on a cluster.

A flow step calls a function of :mod:`lake.cubes` or :mod:`lake.tables`; logic lives
there, not here. :func:`flow_of` picks a dataset's flow by its kind, so callers (the
public API) never branch on it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lake.spec import Dataset

FLOW_MODULES = {"cube": "lake.flows.cubes", "table": "lake.flows.tables"}
"""Dataset kind → the module of its flow (also what workers import as they start)."""


@dataclass(frozen=True)
class Flow:
    """What a build does with one kind of dataset."""

    build: Callable[..., Any]
    """``build(client, root, dataset, progress, full_refresh)`` → a result with ``report()``."""
    dry_run: Callable[..., list[str]]
    """``dry_run(client, root, dataset, full_refresh)`` → [id, kind, source, read, write]."""
    tidy: Callable[..., object]
    """``tidy(root, dataset_id)``, once the catalogue is rewritten."""
    source_bytes: Callable[..., int | None]
    """``source_bytes(dataset)``: the size of what a build would read, when a listing tells
    it without reading (None when unknown): small builds run without worker processes."""
    expand: Callable[..., list[Any]] = lambda dataset: [dataset]
    """``expand(dataset)`` → the datasets a spec's dataset builds (a cube whose files have
    several time axes builds one per axis); run for every dataset before a build."""


def flow_of(dataset: Dataset) -> Flow:
    """The flow of a dataset's kind (its module's ``FLOW``)."""
    flow: Flow = importlib.import_module(FLOW_MODULES[dataset.kind]).FLOW
    return flow
