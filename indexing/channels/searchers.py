"""What a channel searcher is, and where each channel's searcher lives (mirror of xlir.indexing.channels.base)."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any, Protocol

from xlir.indexing.channels.base import load_class
from xlir.retrieval.ranking import Ranking


class ChannelSearcher(Protocol):
    """Searches one channel of an index: ``search(query, k, langs) -> Ranking``.

    ``langs`` (ISO 639-1 codes) restricts hits to documents in those languages; ``None`` = all.
    """

    def search(self, query: str, k: int = 10, langs: Collection[str] | None = None) -> Ranking: ...

    def close(self) -> None: ...


#: channel name -> "module:Class" of its searcher. Constructor: ``Searcher(directory, details)``
#: where ``details`` is what the channel's writer returned at build time (from the manifest).
SEARCHERS: dict[str, str] = {
    "bm25": "xlir.indexing.channels.bm25.searcher:BM25Searcher",
    "dense": "xlir.indexing.channels.dense.searcher:DenseSearcher",
    "sparse": "xlir.indexing.channels.sparse.searcher:SparseSearcher",
    "multivector": "xlir.indexing.channels.multivector.searcher:MultiVectorSearcher",
    "translate": "xlir.indexing.channels.translate.searcher:TranslatedSearcher",
}


def open_searcher(channel: str, directory: Path, details: dict[str, Any]) -> ChannelSearcher:
    if channel not in SEARCHERS:
        raise ValueError(f"this xlir has no searcher for channel {channel!r} (known: {sorted(SEARCHERS)})")
    return load_class(SEARCHERS[channel])(directory, details)
