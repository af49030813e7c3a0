"""The Ranking value type shared by every searcher, fusion, reranking and eval.

A :class:`Ranking` is the answer to one query from one source (a channel, a fusion, a reranker):
hits in rank order, each with the evidence each contributing channel gave it (rank and score), so
that a fused or reranked list can still explain where each hit came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ChannelScore:
    """What one channel said about one document: its 1-based rank and raw score."""

    rank: int
    score: float


@dataclass(frozen=True, slots=True)
class Hit:
    """One ranked document. ``sources`` maps channel name -> that channel's rank and score."""

    docid: str
    score: float
    lang: str | None = None
    sources: Mapping[str, ChannelScore] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Ranking:
    """Hits for one query from one source, best first."""

    source: str
    hits: tuple[Hit, ...] = ()

    @classmethod
    def from_scores(
        cls,
        source: str,
        scored: Iterable[tuple[str, float]],
        langs: Mapping[str, str | None] | None = None,
    ) -> Ranking:
        """Build a ranking from (docid, score) pairs, sorting by score (ties broken by docid)."""
        langs = langs or {}
        return cls.from_scored(source, ((docid, score, langs.get(docid)) for docid, score in scored))

    @classmethod
    def from_scored(
        cls, source: str, scored: Iterable[tuple[str, float, str | None]], k: int | None = None
    ) -> Ranking:
        """Build a ranking from (docid, score, lang) triples: sorted by score (ties broken by docid), the
        best ``k`` kept (all when None)."""
        return cls.in_order(source, sorted(scored, key=lambda item: (-item[1], item[0]))[:k])

    @classmethod
    def in_order(cls, source: str, ranked: Iterable[tuple[str, float, str | None]]) -> Ranking:
        """Build a ranking from (docid, score, lang) triples already in rank order, best first."""
        hits = tuple(
            Hit(
                docid=docid,
                score=float(score),
                lang=lang,
                sources={source: ChannelScore(rank=rank, score=float(score))},
            )
            for rank, (docid, score, lang) in enumerate(ranked, start=1)
        )
        return cls(source=source, hits=hits)

    def __len__(self) -> int:
        return len(self.hits)

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)

    def __getitem__(self, index: int) -> Hit:
        return self.hits[index]

    @property
    def docids(self) -> list[str]:
        return [hit.docid for hit in self.hits]

    def top(self, k: int) -> Ranking:
        return Ranking(source=self.source, hits=self.hits[:k])
