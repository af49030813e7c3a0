"""The BM25 channel's config section (``IndexConfig.bm25``), saved in the manifest."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BM25Config:
    """Lucene BM25 parameters (Pyserini's defaults for its Lucene indexes)."""

    k1: float = 0.9
    b: float = 0.4
