"""The learned sparse channel's files: an inverted index of impacts, and the documents' ids and languages.

* ``postings.npz`` - the inverted index (``scipy.sparse.save_npz``, uncompressed CSR, terms x
  documents): row ``t`` is term ``t``'s posting list with its impacts (float32);
* ``docids.json``  - document ids in column order;
* ``langs.json``   - each document's language (``null`` = unknown), in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from scipy import sparse as sp

from xlir.indexing.channels.files import FileWriters, load_json, save_json
from xlir.indexing.errors import IndexDamagedError

POSTINGS = "postings.npz"
DOCIDS = "docids.json"
LANGS = "langs.json"
#: bumped when the on-disk layout changes; the searcher and updater refuse layouts they do not know.
FORMAT_VERSION = 1
#: what the manifest details record as ``format``.
FORMAT = "csr-terms-x-docs"


class SparseIndexError(IndexDamagedError, RuntimeError):
    """The sparse channel on disk is missing, incomplete or from another version of xlir: rebuild it."""


@dataclass
class SparseStore:
    """A sparse channel directory in memory: postings (terms x documents), ids and languages."""

    postings: sp.csr_matrix
    docids: list[str]
    langs: list[str | None]

    @classmethod
    def load(cls, directory: Path, details: dict[str, Any]) -> SparseStore:
        """Read the channel at ``directory``, refusing another format version or missing/mismatched files."""
        version = details.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise SparseIndexError(
                f"the sparse channel at {directory} has format version {version}; this xlir reads "
                f"version {FORMAT_VERSION}. Rebuild the index with this version."
            )
        missing = [name for name in (POSTINGS, DOCIDS, LANGS) if not (directory / name).is_file()]
        if missing:
            raise SparseIndexError(
                f"the sparse channel at {directory} is incomplete (missing {', '.join(missing)}): "
                "rebuild the index."
            )
        store = cls(
            sp.load_npz(directory / POSTINGS).tocsr(),
            load_json(directory / DOCIDS),
            load_json(directory / LANGS),
        )
        documents = store.postings.shape[1]
        if not (len(store.docids) == len(store.langs) == documents):
            raise SparseIndexError(
                f"the sparse channel at {directory} is inconsistent ({documents} document columns, "
                f"{len(store.docids)} ids, {len(store.langs)} languages): rebuild the index."
            )
        return store

    def files(self) -> FileWriters:
        """Every file of the channel, for ``write_files`` (build) or ``commit_files`` (update)."""
        return {
            POSTINGS: self._write_postings,
            DOCIDS: partial(save_json, value=self.docids),
            LANGS: partial(save_json, value=self.langs, ensure_ascii=True),
        }

    def _write_postings(self, path: Path) -> None:
        with open(path, "wb") as handle:
            sp.save_npz(handle, self.postings, compressed=False)
