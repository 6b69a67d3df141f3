"""The catalogue writer's spool: local temporary files that carry a collection's state
between passes (memory stays flat whatever the number of items), and the helper processes
that follow it as the items are compared.

On local disk a helper process writes the item documents: that is system calls, the rest
is CPU, and two threads of one process slowed each other down (1.7x slower than one after
the other, measured at 100,000 items: the GIL). New items (no published collection links
them) are written as they are compared; published items to replace only once their new
digests are recorded (:meth:`Spool.send_replacements`). A second helper converts the
mirror from every item document, started at the first changed item (it reads the spool
from its start): a run where nothing changed keeps the published mirror.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from lake.errors import TargetError
from lake.stac import digests
from lake.stac.helper import WRITE_ITEMS, HelperProcess
from lake.stac.mirror import MirrorJob, read_records

if TYPE_CHECKING:
    from collections.abc import Iterator

    from lake.storage import Root

NEW, REPLACED, UNCHANGED = b"*", b"+", b"="
"""Marks of the spooled documents: no published collection links the item yet; a published
item to replace; a published item that stays as it is."""


class Spool:
    def __init__(self, folder: str, root: Root, dataset: str, mirror: bool) -> None:
        """``mirror``: convert the mirror whether or not an item changes (none is
        published)."""
        self.folder, self.root, self.dataset = folder, root, dataset
        self.new = open(f"{folder}/new.jsonl", "wb")  # noqa: SIM115 - closed in close()
        """(id, digest) of every item of this version, in id order."""
        self.replaced = open(f"{folder}/replaced.jsonl", "wb")  # noqa: SIM115
        """(id, accepted digests) of published items about to be rewritten."""
        self.removing = open(f"{folder}/removing.jsonl", "wb")  # noqa: SIM115
        """(id, old digest) of published items this version no longer has."""
        self.documents = open(f"{folder}/documents", "wb", buffering=1 << 20)  # noqa: SIM115
        """Every item document: a line ``<mark> <id>``, then the document's line."""
        self.count = 0
        self.located = 0
        """Items with a geometry: the mirror's rows."""
        self.writes = 0
        self.replacements = 0
        self.removals = 0
        self.items: HelperProcess | None = None
        """Writes the item documents (local disk only)."""
        self.mirror: MirrorJob | None = None
        if mirror:
            self._start_mirror()

    def add(self, item_id: str, data: bytes, mark: bytes) -> None:
        self.documents.write(b"%s %s\n%s\n" % (mark, item_id.encode(), data))
        if mark != UNCHANGED:
            self.writes += 1
            if self.items is None and mark == NEW and self.root.local:
                self._item_writer()
            if self.mirror is None:
                self._start_mirror()

    def _item_writer(self) -> HelperProcess:
        if self.items is None:
            self.items = HelperProcess(WRITE_ITEMS, f"{self.folder}/documents",
                                       self.root.path(self.dataset, "items"),
                                       uuid.uuid4().hex)  # fmt: skip
        return self.items

    def _start_mirror(self) -> None:
        self.mirror = MirrorJob(f"{self.folder}/documents", f"{self.folder}/mirror")

    def close(self) -> None:
        for handle in (self.new, self.replaced, self.removing, self.documents):
            handle.close()

    def compared(self) -> None:
        """Every item is compared (and the spool closed): the mirror has all it needs, or
        starts now when only removals change it."""
        if self.mirror is None and self.removals:
            self._start_mirror()
        if self.mirror is not None:
            self.mirror.helper.close_input()

    def send_replacements(self) -> None:
        """Tell the local item writer that the spool is complete, and to write the
        published items to replace too (their new digests are recorded now)."""
        if self.replacements:
            self._item_writer().send(b"replace\n")
        if self.items is not None:
            self.items.close_input()

    def wait_items(self) -> None:
        """Wait for the local item writer; TargetError when it could not write them."""
        if self.items is None:
            return
        try:
            self.items.wait()
        except RuntimeError as error:
            raise TargetError(
                f"{self.root.display}/{self.dataset}/items",
                f"could not be written ({error})",
                "check the free space and permissions of the lake's folder",
            ) from None

    def stop(self) -> None:
        """Stop the helpers that still run (the writer stopped before waiting for them)."""
        for helper in (self.items, self.mirror):
            if helper is not None:
                helper.stop()

    def entries(self, name: str) -> Iterator[digests.Entry]:
        return digests.spool_lines(f"{self.folder}/{name}.jsonl")

    def read_documents(self) -> Iterator[tuple[bytes, str, bytes]]:
        """(mark, id, document), in id order."""
        with open(f"{self.folder}/documents", "rb") as handle:
            yield from read_records(handle)
