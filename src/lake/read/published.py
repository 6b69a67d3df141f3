"""A published dataset as a reader finds it: its collection document, and what it is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lake.errors import SourceError, SpecError
from lake.storage import Root, redact, secret_values


def lake_root(root: Root | str, storage_options: dict[str, Any] | None = None) -> Root:
    """The lake at ``root``: a :class:`Root`, or any fsspec URL with its storage options."""
    return root if isinstance(root, Root) else Root(str(root), dict(storage_options or {}))


@dataclass(frozen=True)
class LakeDataset:
    """One dataset of a lake, as its collection describes it."""

    root: Root
    id: str
    """The dataset's id (``macrobenthos``), or a second table's (``macrobenthos/measurements``):
    its folder below the root."""
    collection: dict[str, Any]
    kind: str
    """``cube`` or ``table``."""
    table: str | None = None
    """The second table's asset name (``measurements``), or None for the main one."""

    def layouts(self) -> dict[str, dict[str, Any]]:
        """A cube's Zarr assets by layout name (``maps``, ``timeseries``), in catalogue order."""
        assets = self.collection.get("assets", {})
        return {name: asset for name, asset in assets.items() if "zarr:zarr_format" in asset}


def _read(root: Root, *parts: str) -> dict[str, Any] | None:
    try:
        doc = root.read_json(*parts)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SourceError(
            f"{root.display}/{'/'.join(parts)}",
            f"cannot be read ({type(exc).__name__}: "
            f"{redact(str(exc), secret_values(root.storage_options))})",
            "check the URL, the network and the credentials (storage options)",
        ) from None
    return doc if isinstance(doc, dict) else None


def find_dataset(root: Root, dataset: str) -> LakeDataset:
    """The dataset ``dataset`` of the lake at ``root``, from its collection document.

    A second table is named as ``<dataset>/<table>`` (``macrobenthos/measurements``)."""
    collection = _read(root, dataset, "collection.json")
    table = None
    if collection is None and "/" in dataset:
        parent, _, table = dataset.rpartition("/")
        collection = _read(root, parent, "collection.json")
        if collection is not None and table not in collection.get("assets", {}):
            collection = None
    if collection is None:
        catalog = _read(root, "catalog.json")
        if catalog is None:
            raise SourceError(
                root.display, "holds no lake (no catalog.json)",
                "give the root a build wrote (the folder or URL of catalog.json)",
            )  # fmt: skip
        ids = [str(link.get("href", "")).removeprefix("./").removesuffix("/collection.json")
               for link in catalog.get("links", []) if link.get("rel") == "child"]  # fmt: skip
        raise SourceError(
            f"dataset {dataset!r} in {root.display}", "is not in the lake",
            f"use one of: {', '.join(sorted(ids)) or '(none: the lake is empty)'}",
        )  # fmt: skip
    assets = collection.get("assets", {})
    kind = "table" if table is not None or "table:columns" in collection else "cube"
    if kind == "cube" and not any("zarr:zarr_format" in asset for asset in assets.values()):
        raise SourceError(
            f"dataset {dataset!r} in {root.display}", "has no published layout",
            "run `lake build` again: a build writes the collection after its data",
        )  # fmt: skip
    return LakeDataset(root, dataset, collection, kind, table)


OPENERS = {"cube": "lake.open_cube", "table": "lake.open_table"}


def dataset_of_kind(root: Root | str, dataset: str | LakeDataset, kind: str,
                    storage_options: dict[str, Any] | None = None) -> LakeDataset:  # fmt: skip
    """``dataset`` (an id, or one already found) of the lake at ``root``, which must be a
    ``kind`` (``cube`` or ``table``)."""
    found = dataset if isinstance(dataset, LakeDataset) else \
        find_dataset(lake_root(root, storage_options), dataset)  # fmt: skip
    if found.kind != kind:
        raise SpecError(f"dataset {found.id!r}", f"is a {found.kind}, not a {kind}",
                        f"open it with {OPENERS[found.kind]}")  # fmt: skip
    return found
