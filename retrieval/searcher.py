"""The Searcher facade: open an index directory, search it by every channel it has, fuse, return hits.

Reads the manifest written at build time and opens each channel's searcher with exactly the settings
that channel was built with. The server and eval packages call this; so does ``xlir search``. A search
is: check the query (:mod:`xlir.retrieval.query`, where its language is detected once), search each
channel and fuse (:mod:`xlir.retrieval.first_stage`), optionally rerank (:mod:`xlir.retrieval.rerank`),
count what matched (:mod:`xlir.retrieval.matching`), and look the page's hits up in the docstore.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlir.indexing.docstore import DocStore
from xlir.indexing.documents import Document, document_text
from xlir.indexing.filters import Filter
from xlir.indexing.manifest import Manifest
from xlir.indexing.ranking import ChannelScore, Hit, Ranking
from xlir.models.rerankers.base import Reranker
from xlir.retrieval.first_stage import Candidates, ChannelTimer, FirstStage
from xlir.retrieval.matching import (
    MATCH_DEPTH,
    Matches,
    MatchOptions,
    browse,
    count_matches,
    sort_by_fields,
)
from xlir.retrieval.query import REPORTED_LANGUAGE_CONFIDENCE, Query, QueryError, check_channels, check_langs
from xlir.retrieval.rerank import RERANK_SOURCE, rerank_status

log = logging.getLogger(__name__)

#: One hit of a page before its document is looked up: (docid, score, each channel's evidence).
PageHit = tuple[str, float, Mapping[str, ChannelScore]]


@dataclass(frozen=True)
class SearchHit:
    """A hit as a person sees it: the document, its score and what each channel said about it."""

    rank: int
    docid: str
    score: float
    lang: str | None
    title: str | None
    text: str
    metadata: dict[str, Any]
    sources: dict[str, ChannelScore]


@dataclass(frozen=True)
class SearchResult:
    query: str
    query_lang: str | None
    channels: list[str]
    hits: list[SearchHit] = field(default_factory=list)
    #: "reranked" (the top rerank_k all rescored), "partial" (the time budget ran out first) or "none".
    rerank: str = "none"
    #: How many documents matched (see ``matched_over``), and whether that is exact ("eq") or a lower
    #: bound ("gte").
    total: int = 0
    total_relation: str = "eq"
    #: field -> (value, count) for the most frequent values among the matches.
    facets: dict[str, list[tuple[Any, int]]] = field(default_factory=dict)
    #: field -> (bucket key, count) over the matches; a date field's keys are ISO dates.
    histograms: dict[str, list[tuple[Any, int]]] = field(default_factory=dict)
    #: One sentence saying what "match" meant for this search.
    matched_over: str = ""


class Searcher:
    """Search one xlir index. ``Searcher(path).search("query", k=10)``.

    ``reranker``: a :class:`xlir.models.rerankers.base.Reranker`, or a name for
    :func:`xlir.models.rerankers.registry.reranker_for` (``"default"`` = the shipped one), loaded on
    first use; ``None`` = no reranking stage (the default). ``search(..., rerank=True)`` then reranks
    the fused top ``rerank_k``. ``channel_timer``: called with (channel, seconds) after each channel
    search (the server's per-channel latency metric).
    """

    def __init__(
        self,
        index_dir: Path | str,
        channels: Sequence[str] | None = None,
        *,
        reranker: Reranker | str | None = None,
        channel_timer: ChannelTimer | None = None,
    ) -> None:
        self.index_dir = Path(index_dir)
        self._wanted = list(channels) if channels else None
        self._reranker_spec = reranker
        self._reranker: Reranker | None = None if isinstance(reranker, str | None) else reranker
        self._channel_timer = channel_timer
        self._open()

    def _open(self) -> None:
        self.manifest = Manifest.read(self.index_dir)
        self._stage = FirstStage.open(self.index_dir, self.manifest, self._wanted, self._channel_timer)
        self.docstore = DocStore.in_directory(self.index_dir)

    def reload(self) -> None:
        """Re-read the manifest and reopen every channel and the docstore: see an in-place update.

        Not safe against concurrent searches on this object: callers that share a Searcher between
        threads (the server) hold a writer lock around it, or open a new Searcher and swap it in.
        """
        self.close()
        self._open()

    @property
    def channels(self) -> list[str]:
        return self._stage.names

    @property
    def languages(self) -> dict[str, int]:
        return dict(self.manifest.languages)

    def search(
        self,
        query: str | None,
        k: int = 10,
        langs: Collection[str] | None = None,
        channels: Sequence[str] | None = None,
        *,
        offset: int = 0,
        fusion: str = "rrf",
        rrf_k: int = 60,
        weights: Mapping[str, float] | None = None,
        rerank: bool = False,
        rerank_k: int = 100,
        rerank_budget_s: float | None = None,
        filter: Filter | Mapping[str, Any] | None = None,  # noqa: A002  (the API's name)
        sort: Sequence[tuple[str, str]] | None = None,
        facets: Sequence[str] = (),
        histograms: Mapping[str, float] | None = None,
        match_depth: int = MATCH_DEPTH,
        facet_size: int = 10,
    ) -> SearchResult:
        """Search and return hits with their documents, the detected query language, and what matched.

        ``offset`` skips the first hits (pagination): hits ``offset + 1 .. offset + k`` are returned,
        ranked by their position in the whole list. Fusion options as in :meth:`ranking`.
        ``rerank``: rerank the fused top ``rerank_k`` (at least ``k + offset``) with this searcher's
        reranker within ``rerank_budget_s`` seconds (None = no limit); see :meth:`rerank_ranking`.

        ``filter`` (a :data:`xlir.indexing.filters.Filter` or its Elasticsearch query-DSL form) keeps
        documents by their fields; every channel applies it during retrieval. ``sort``: ``[("year",
        "desc"), ("_score", "desc")]`` (default: relevance). ``facets``: fields (``lang`` included) whose
        ``facet_size`` most frequent values are counted; ``histograms``: field -> bucket interval (days
        for a date field). Counts and ``total`` are over the search's matches (:mod:`xlir.retrieval.matching`):
        the fused candidates down to ``match_depth``; with no query text (None or empty) and a filter, a
        browse of exactly what the filter keeps.
        """
        if offset < 0:
            raise QueryError(f"offset must be 0 or more (got {offset}).")
        options = MatchOptions.checked(
            self.manifest.fields,
            filter=filter,
            sort=sort,
            facets=facets,
            histograms=histograms,
            match_depth=match_depth,
            facet_size=facet_size,
        )
        wanted = check_channels(channels, self.channels)
        if options.browses(query):
            if rerank:
                raise QueryError("rerank needs query text; a search without one (a browse) has no relevance.")
            lang_filter = check_langs(langs, self.manifest.languages)
            ordered, matches = browse(self.docstore, options, lang_filter, wanted)
            page = [(docid, 0.0, {}) for docid in ordered[offset : offset + k]]
            return self._result("", None, wanted, page, offset, "none", matches)
        if rerank and not options.by_relevance:
            raise QueryError(
                f"rerank reorders by relevance; sorting by {options.sort[0][0]!r} ignores it: drop one of them."
            )
        depth = max(k + offset, rerank_k) if rerank else k + offset
        checked = Query.checked(query, depth)
        found = self._stage.candidates(
            checked,
            depth,
            langs,
            channels,
            fusion=fusion,
            rrf_k=rrf_k,
            weights=weights,
            match_depth=options.depth,
            allowed=None if options.filter is None else self.docstore.matching(options.filter),
        )
        ranking = found.ranking
        if rerank:
            ranking = self.rerank_ranking(checked, ranking, rerank_k=rerank_k, budget_s=rerank_budget_s).top(
                k + offset
            )
        matched = [hit.docid for hit in found.matched]
        matches = count_matches(self.docstore, matched, options, channels=wanted, exhausted=found.exhausted)
        page = self._page(found, ranking, options, k, offset)
        language = checked.language(REPORTED_LANGUAGE_CONFIDENCE)
        return self._result(query, language, wanted, page, offset, rerank_status(ranking), matches)

    def _page(
        self, found: Candidates, ranking: Ranking, options: MatchOptions, k: int, offset: int
    ) -> list[PageHit]:
        """The page's hits: ``ranking`` (fused or reranked) from ``offset``, or the matches sorted by field."""
        if options.by_relevance:
            return [(hit.docid, _shown_score(hit, found.own), hit.sources) for hit in ranking.hits[offset:]]
        by_id = {hit.docid: hit for hit in found.matched}
        ordered = sort_by_fields(self.docstore, [hit.docid for hit in found.matched], options.sort)
        return [(d, found.own.get(d, by_id[d].score), by_id[d].sources) for d in ordered[offset : offset + k]]

    def _result(
        self,
        query: str,
        query_lang: str | None,
        channels: list[str],
        page: Sequence[PageHit],
        offset: int,
        rerank: str,
        matches: Matches,
    ) -> SearchResult:
        docs = self.docstore.get_many(docid for docid, _, _ in page)
        return SearchResult(
            query=query,
            query_lang=query_lang,
            channels=channels,
            hits=[
                _hit(rank, docid, score, sources, docs.get(docid))
                for rank, (docid, score, sources) in enumerate(page, start=offset + 1)
            ],
            rerank=rerank,
            total=matches.total,
            total_relation=matches.relation,
            facets=matches.facets,
            histograms=matches.histograms,
            matched_over=matches.over,
        )

    def ranking(
        self,
        query: str,
        k: int = 10,
        langs: Collection[str] | None = None,
        channels: Sequence[str] | None = None,
        *,
        fusion: str = "rrf",
        rrf_k: int = 60,
        weights: Mapping[str, float] | None = None,
    ) -> Ranking:
        """The fused ranking for ``query`` (docids and scores only): what eval consumes.

        Several channels are fused with ``fusion``: ``"rrf"`` (reciprocal rank fusion with constant
        ``rrf_k``) or ``"minmax"`` / ``"zscore"`` (normalized scores summed with per-channel ``weights``,
        default 1 each; see :mod:`xlir.retrieval.fusion`). One channel's ranking is returned as it is.
        """
        checked = Query.checked(query, k)
        found = self._stage.candidates(
            checked, k, langs, channels, fusion=fusion, rrf_k=rrf_k, weights=weights
        )
        return found.ranking

    def rankings(
        self,
        queries: Mapping[str, str],
        k: int = 10,
        langs: Collection[str] | None = None,
        channels: Sequence[str] | None = None,
        searched: Mapping[str, Mapping[str, Ranking]] | None = None,
    ) -> dict[str, Ranking]:
        """Fused rankings (rrf) for many queries (qid -> text): what eval runs consume.

        Each channel gets the queries in batches (``batch_search``: one encoder batch for the neural
        channels). ``searched`` (channel -> qid -> ranking) holds what this searcher already returned
        for one channel alone, with the same ``langs`` and at a depth of at least ``max(k, 100)``: a
        fused search reuses those rankings wherever it would search that channel over the same
        languages (every channel but a lexical one kept to the query's language), instead of encoding
        and searching the queries again.
        """
        checked = {qid: Query.checked(text, k) for qid, text in queries.items()}
        return self._stage.rankings(checked, k, langs, channels, searched)

    @property
    def reranker(self) -> Reranker:
        """The reranker (loaded on first use; the shipped default when none was named)."""
        if self._reranker is None:
            from xlir.models.rerankers.registry import reranker_for

            self._reranker = reranker_for(
                self._reranker_spec if isinstance(self._reranker_spec, str) else None
            )
        return self._reranker

    def rerank_ranking(
        self,
        query: str | Query,
        ranking: Ranking,
        *,
        rerank_k: int = 100,
        budget_s: float | None = None,
        batch_size: int = 16,
        interpolate: float | None = None,
    ) -> Ranking:
        """Rerank the top ``rerank_k`` of ``ranking`` with document texts from this index's store.

        The query's language (detected) and each document's language go to the reranker (they select
        language adapters where it has them). Past the time budget, unscored hits keep the first-stage
        order (see :func:`xlir.retrieval.rerank.rerank`). ``interpolate``: the first stage's weight in the final
        score (z-normalized scores); None = the weight the reranker was validated with on English at
        training (:func:`xlir.retrieval.rerank.first_stage_weight`), 0 = the reranker's score alone.
        """
        from xlir.models.rerankers.base import RerankerError
        from xlir.retrieval.rerank import first_stage_weight, rerank

        if rerank_k < 1:
            raise QueryError(f"rerank_k must be 1 or more (got {rerank_k}).")
        if budget_s is not None and budget_s < 0:
            raise QueryError(f"the rerank time budget must be 0 seconds or more (got {budget_s}).")
        query = query if isinstance(query, Query) else Query(query)

        def lookup(docids: Sequence[str]) -> list[tuple[str, str | None]]:
            docs = self.docstore.get_many(docids)
            missing = [d for d in docids if d not in docs]
            if missing:
                raise RerankerError(
                    f"document(s) {missing[:5]} are missing from the document store of {self.index_dir}; "
                    "rebuild the index or search with --no-rerank"
                )
            return [(document_text(docs[d], ". "), docs[d].lang) for d in docids]

        return rerank(
            ranking,
            query.original,
            self.reranker,
            lookup,
            k=rerank_k,
            batch_size=batch_size,
            interpolate=first_stage_weight(self.reranker) if interpolate is None else interpolate,
            budget_s=budget_s,
            query_lang=query.language(REPORTED_LANGUAGE_CONFIDENCE),
        )

    def close(self) -> None:
        self._stage.close()
        self.docstore.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shown_score(hit: Hit, own: Mapping[str, float]) -> float:
    """The score a hit shows: its own (reranked, or fused), never the score of the place it holds."""
    if RERANK_SOURCE in hit.sources:
        return hit.score
    return own.get(hit.docid, hit.score)


def _hit(rank: int, docid: str, score: float, sources: Any, doc: Document | None) -> SearchHit:
    if doc is None:
        log.warning("hit %s is missing from the document store", docid)
    return SearchHit(
        rank=rank,
        docid=docid,
        score=score,
        lang=doc.lang if doc else None,
        title=doc.title if doc else None,
        text=doc.text if doc else "",
        metadata=doc.metadata if doc else {},
        sources=dict(sources),
    )
