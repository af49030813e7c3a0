"""The dense channel's files: one FAISS index over the document vectors, and their ids and languages.

- ``index.faiss``: the index; vector ``i`` is document ``docids[i]``;
- ``docids.json``, ``langs.npy``, ``languages.json``: the ids in index order and each document's
  language (:class:`xlir.indexing.channels.language_codes.DocumentLanguages`), which the searcher turns into
  a FAISS ID selector to filter by language inside the search.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xlir.indexing.channels.files import FileWriters
from xlir.indexing.channels.language_codes import DocumentLanguages
from xlir.indexing.errors import IndexDamagedError, IndexIncompleteError

INDEX_FILE = "index.faiss"


@dataclass
class DenseStore:
    """A dense channel directory in memory: the FAISS index and its documents' ids and languages."""

    index: Any
    documents: DocumentLanguages

    @classmethod
    def load(cls, directory: Path) -> DenseStore:
        """Read the channel at ``directory``; a missing index or mismatched counts say to rebuild."""
        import faiss

        path = directory / INDEX_FILE
        if not path.is_file():
            raise IndexIncompleteError(
                f"{path} is missing: the dense channel of this index is incomplete. Rebuild the index."
            )
        store = cls(faiss.read_index(str(path)), DocumentLanguages.load(directory))
        ntotal, docs = store.index.ntotal, store.documents
        if not (len(docs.docids) == len(docs.codes) == ntotal):
            raise IndexDamagedError(
                f"{directory}: the FAISS index holds {ntotal} vectors but {len(docs.docids)} ids and "
                f"{len(docs.codes)} languages are recorded; the channel is damaged. Rebuild the index."
            )
        return store

    def files(self) -> FileWriters:
        """Every file of the channel, for ``write_files`` (build) or ``commit_files`` (update)."""
        return {INDEX_FILE: self._write_index, **self.documents.files()}

    def _write_index(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(path))
