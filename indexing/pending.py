"""One update batch of a channel whose documents are stored in positional order (dense, sparse).

Such a channel keeps its documents as rows or columns (FAISS vectors, posting columns) with a parallel
list of ids. An updater collects a batch (ids to drop, new documents to append) before rewriting the
channel once in ``close``; :class:`PendingBatch` is that bookkeeping, so the updaters only say how their
storage is rewritten.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")
V = TypeVar("V")


class PendingBatch(Generic[T]):
    """Deletions and additions over ``docids`` (the stored order), applied later in one rewrite.

    ``keep`` marks the stored positions that survive; ``added`` maps each new id to what the channel
    needs to append for it (a vector, a row, its language), in insertion order. Deleting an id removes
    it from both; adding an id the channel holds replaces it (the caller deletes first).
    """

    def __init__(self, docids: Sequence[str]) -> None:
        self.docids = list(docids)
        self._positions: dict[str, int] = {docid: i for i, docid in enumerate(self.docids)}
        self.keep = np.ones(len(self.docids), dtype=bool)
        self.added: dict[str, T] = {}

    def delete(self, ids: Iterable[str]) -> None:
        """Forget these ids (ids neither stored nor added are ignored)."""
        for docid in ids:
            position = self._positions.pop(docid, None)
            if position is not None:
                self.keep[position] = False
            self.added.pop(docid, None)

    def add(self, docid: str, item: T) -> None:
        self.added[docid] = item

    @property
    def changed(self) -> bool:
        return bool(self.added) or not bool(self.keep.all())

    @property
    def removed(self) -> np.ndarray:
        """Stored positions that are dropped (int64, ascending)."""
        return np.flatnonzero(~self.keep).astype(np.int64)

    def kept(self, values: Sequence[V]) -> list[V]:
        """The entries of a list parallel to the stored order that survive the batch."""
        return [value for value, keep in zip(values, self.keep.tolist(), strict=True) if keep]

    def result_ids(self) -> list[str]:
        """The channel's ids after the batch: survivors in stored order, then the added ids."""
        return [*self.kept(self.docids), *self.added]
