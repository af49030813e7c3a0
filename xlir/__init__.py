"""xlir: cross-lingual retrieval. The public Python API, re-exported from the packages that own it.

Layers, lowest first: ``xlir.errors`` (:class:`UserError`, the base of every error a user can fix),
``xlir.models``, ``xlir.indexing`` (corpora, the index and its channels), ``xlir.retrieval`` (the query
pipeline, :class:`Searcher`), ``xlir.eval``, ``xlir.training`` and ``xlir.server``, and ``xlir.cli``.

Imports are lazy so that ``import xlir`` (and ``xlir --help``) stays fast: the JVM, torch and the
language-id model load only when a channel or a detector is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "UserError": "xlir.errors",
    "NotFoundError": "xlir.errors",
    "ConflictError": "xlir.errors",
    "Document": "xlir.indexing.documents",
    "CorpusError": "xlir.indexing.documents",
    "open_corpus": "xlir.indexing.readers",
    "IndexConfig": "xlir.indexing.config",
    "BM25Config": "xlir.indexing.config",
    "build_index": "xlir.indexing.builder",
    "IndexUpdater": "xlir.indexing.updater",
    "IndexLockedError": "xlir.indexing.locking",
    "Filter": "xlir.indexing.filters",
    "parse_filter": "xlir.indexing.filters",
    "Manifest": "xlir.indexing.manifest",
    "Searcher": "xlir.retrieval.searcher",
    "SearchHit": "xlir.retrieval.searcher",
    "SearchResult": "xlir.retrieval.searcher",
    "QueryError": "xlir.retrieval.query",
    "Ranking": "xlir.indexing.ranking",
    "rrf": "xlir.retrieval.fusion",
    "normalized_fusion": "xlir.retrieval.fusion",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'xlir' has no attribute {name!r}")
