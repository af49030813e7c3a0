"""What a channel searcher is, and where each channel's searcher lives (mirror of indexing.channel)."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any, Protocol

from indexing.channel import load_class
from retrieval.ranking import Ranking


class ChannelSearcher(Protocol):
    """Searches one channel of an index: ``search(query, k, langs) -> Ranking``.

    ``langs`` (ISO 639-1 codes) restricts hits to documents in those languages; ``None`` = all.
    """

    def search(self, query: str, k: int = 10, langs: Collection[str] | None = None) -> Ranking: ...

    def close(self) -> None: ...


#: channel name -> "module:Class" of its searcher. Constructor: ``Searcher(directory, details)``
#: where ``details`` is what the channel's writer returned at build time (from the manifest).
SEARCHERS: dict[str, str] = {
    "bm25": "retrieval.bm25:BM25Searcher",
    "dense": "retrieval.dense:DenseSearcher",
    "sparse": "retrieval.sparse:SparseSearcher",
    "multivector": "retrieval.multivector:MultiVectorSearcher",
    "translate": "retrieval.translated:TranslatedSearcher",
}


def open_searcher(channel: str, directory: Path, details: dict[str, Any]) -> ChannelSearcher:
    if channel not in SEARCHERS:
        raise ValueError(f"this xlir has no searcher for channel {channel!r} (known: {sorted(SEARCHERS)})")
    return load_class(SEARCHERS[channel])(directory, details)
