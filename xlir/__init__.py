"""xlir: cross-lingual retrieval. The public Python API, re-exported from the packages that own it.

Imports are lazy so that ``import xlir`` (and ``xlir --help``) stays fast: the JVM, torch and the
language-id model load only when a channel or a detector is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Document": "indexing.documents",
    "CorpusError": "indexing.documents",
    "open_corpus": "indexing.readers",
    "IndexConfig": "indexing.config",
    "BM25Config": "indexing.config",
    "build_index": "indexing.builder",
    "Manifest": "indexing.manifest",
    "Searcher": "retrieval.searcher",
    "QueryError": "retrieval.searcher",
    "Ranking": "retrieval.ranking",
    "rrf": "retrieval.fusion",
    "normalized_fusion": "retrieval.fusion",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'xlir' has no attribute {name!r}")
