"""xlir: cross-lingual retrieval. The public Python API, re-exported from the packages that own it.

Imports are lazy so that ``import xlir`` (and ``xlir --help``) stays fast: the JVM, torch and the
language-id model load only when a channel or a detector is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Document": "xlir.indexing.documents",
    "CorpusError": "xlir.indexing.documents",
    "open_corpus": "xlir.indexing.readers",
    "IndexConfig": "xlir.indexing.config",
    "BM25Config": "xlir.indexing.config",
    "build_index": "xlir.indexing.builder",
    "Manifest": "xlir.indexing.manifest",
    "Searcher": "xlir.retrieval.searcher",
    "QueryError": "xlir.retrieval.searcher",
    "Ranking": "xlir.retrieval.ranking",
    "rrf": "xlir.retrieval.fusion",
    "normalized_fusion": "xlir.retrieval.fusion",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'xlir' has no attribute {name!r}")
