"""The Searcher facade: open an index directory, search it by every channel it has, fuse, return hits.

Reads the manifest written at build time and opens each channel's searcher with exactly the settings
that channel was built with. The server and eval packages call this; so does ``xlir search``. A search
is: check the query (:mod:`xlir.retrieval.query`, where its language is detected once), search each
channel (a lexical one kept to the query's language when fused), fuse (:mod:`xlir.retrieval.fusion`),
optionally rerank (:mod:`xlir.retrieval.rerank`), and look the hits up in the docstore.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlir.indexing.channels import CHANNELS
from xlir.indexing.channels.base import ChannelSearcher, open_searcher
from xlir.indexing.docstore import DocStore
from xlir.indexing.documents import Document, document_text
from xlir.indexing.fields import LANG_FIELD
from xlir.indexing.filters import And, Filter, Terms
from xlir.indexing.manifest import Manifest
from xlir.indexing.ranking import ChannelScore, Hit, Ranking
from xlir.models.rerankers.base import Reranker
from xlir.retrieval.matching import (
    ID,
    MATCH_DEPTH,
    MAX_MATCH_DEPTH,
    SCORE,
    check_facets,
    check_histograms,
    check_sort,
    index_fields,
    is_relevance_order,
    matched_over,
    resolve_filter,
    sort_docids,
)
from xlir.retrieval.query import (
    LEXICAL_SCOPE_CONFIDENCE,
    REPORTED_LANGUAGE_CONFIDENCE,
    Query,
    QueryError,
    check_channels,
    check_fusion,
    check_langs,
)
from xlir.retrieval.rerank import RERANK_SOURCE, rerank_status

log = logging.getLogger(__name__)


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
    the fused top ``rerank_k``.
    """

    def __init__(
        self,
        index_dir: Path | str,
        channels: Sequence[str] | None = None,
        *,
        reranker: Reranker | str | None = None,
    ) -> None:
        self.index_dir = Path(index_dir)
        self._wanted = list(channels) if channels else None
        self._reranker_spec = reranker
        self._reranker: Reranker | None = None if isinstance(reranker, str | None) else reranker
        self._open()

    def _open(self) -> None:
        self.manifest = Manifest.read(self.index_dir)
        available = list(self.manifest.channels)
        chosen = list(self._wanted) if self._wanted else available
        missing = [c for c in chosen if c not in available]
        if missing:
            raise QueryError(f"index {self.index_dir} has no channel {missing}; it has: {available}")
        self._channels: dict[str, ChannelSearcher] = {}
        try:
            for name in chosen:
                self._channels[name] = open_searcher(
                    name, self.index_dir / name, self.manifest.channels[name]
                )
        except BaseException:
            for searcher in self._channels.values():
                searcher.close()
            raise
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
        return list(self._channels)

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
        if isinstance(match_depth, bool) or not 1 <= match_depth <= MAX_MATCH_DEPTH:
            raise QueryError(f"match_depth must be within 1..{MAX_MATCH_DEPTH} (got {match_depth}).")
        if facet_size < 1:
            raise QueryError(f"facet_size must be 1 or more (got {facet_size}).")
        fields = index_fields(self.manifest.fields)
        resolved = resolve_filter(filter, fields)
        order = check_sort(sort, fields)
        wanted_facets = check_facets(facets, fields)
        wanted_histograms = check_histograms(histograms, fields)
        wanted = check_channels(channels, self.channels)
        browse = query is None or (isinstance(query, str) and not query.strip() and resolved is not None)
        if browse:
            if rerank:
                raise QueryError("rerank needs query text; a search without one (a browse) has no relevance.")
            return self._browse(
                resolved, k, offset, langs, wanted, order, wanted_facets, wanted_histograms, facet_size
            )
        if rerank and not is_relevance_order(order):
            raise QueryError(
                f"rerank reorders by relevance; sorting by {order[0][0]!r} ignores it: drop one of them."
            )
        depth = max(k + offset, rerank_k) if rerank else k + offset
        checked = Query.checked(query, depth)
        allowed = None if resolved is None else self.docstore.matching(resolved)
        fusion_options = {"fusion": fusion, "rrf_k": rrf_k, "weights": weights}
        found = self._candidates(checked, depth, match_depth, langs, channels, allowed, **fusion_options)
        ranking = found.ranking
        if rerank:
            ranking = self.rerank_ranking(checked, ranking, rerank_k=rerank_k, budget_s=rerank_budget_s).top(
                k + offset
            )
        matched = [hit.docid for hit in found.matched]
        own = dict(found.own)
        if is_relevance_order(order):
            page_hits = [(hit.docid, _shown_score(hit, own), hit.sources) for hit in ranking.hits[offset:]]
        else:
            by_id = {hit.docid: hit for hit in found.matched}
            ordered = sort_docids(matched, order, lambda name: self.docstore.field_values(matched, name))
            page_hits = [
                (d, own.get(d, by_id[d].score), by_id[d].sources) for d in ordered[offset : offset + k]
            ]
        total = len(matched)
        return SearchResult(
            query=query,
            query_lang=checked.language(REPORTED_LANGUAGE_CONFIDENCE),
            channels=wanted,
            hits=self._hits(page_hits, offset),
            rerank=rerank_status(ranking),
            total=total,
            total_relation="eq" if found.exhausted else "gte",
            facets={name: self.docstore.facet_counts(matched, name, facet_size) for name in wanted_facets},
            histograms={
                name: self.docstore.histogram(matched, name, interval)
                for name, interval in wanted_histograms.items()
            },
            matched_over=matched_over(
                browse=False,
                depth=match_depth,
                channels=wanted,
                filtered=resolved is not None,
                exhausted=found.exhausted,
                total=total,
            ),
        )

    def _browse(
        self,
        resolved: Filter | None,
        k: int,
        offset: int,
        langs: Collection[str] | None,
        channels: list[str],
        order: list[tuple[str, str]],
        facets: list[str],
        histograms: Mapping[str, float],
        facet_size: int,
    ) -> SearchResult:
        """No query text: the documents ``resolved`` (and ``langs``) keep, in ``order`` (default: id)."""
        lang_filter = check_langs(langs, self.manifest.languages)
        if lang_filter is not None:
            by_lang = Terms(LANG_FIELD, tuple(sorted(lang_filter)))
            resolved = by_lang if resolved is None else And((resolved, by_lang))
        matched = sorted(self.docstore.matching(resolved))
        sort = [(name, direction) for name, direction in order if name != SCORE] or [(ID, "asc")]
        ordered = sort_docids(matched, sort, lambda name: self.docstore.field_values(matched, name))
        return SearchResult(
            query="",
            query_lang=None,
            channels=channels,
            hits=self._hits([(d, 0.0, {}) for d in ordered[offset : offset + k]], offset),
            total=len(matched),
            total_relation="eq",
            facets={name: self.docstore.facet_counts(matched, name, facet_size) for name in facets},
            histograms={
                name: self.docstore.histogram(matched, name, interval)
                for name, interval in histograms.items()
            },
            matched_over=matched_over(
                browse=True,
                depth=len(matched),
                channels=channels,
                filtered=resolved is not None,
                exhausted=True,
                total=len(matched),
            ),
        )

    def _hits(
        self, page: Sequence[tuple[str, float, Mapping[str, ChannelScore]]], offset: int
    ) -> list[SearchHit]:
        docs = self.docstore.get_many(docid for docid, _, _ in page)
        return [
            _hit(rank, docid, score, sources, docs.get(docid))
            for rank, (docid, score, sources) in enumerate(page, start=offset + 1)
        ]

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
        return self._ranking(checked, k, langs, channels, fusion=fusion, rrf_k=rrf_k, weights=weights)

    def _ranking(
        self,
        query: Query,
        k: int,
        langs: Collection[str] | None,
        channels: Sequence[str] | None,
        *,
        fusion: str,
        rrf_k: int,
        weights: Mapping[str, float] | None,
    ) -> Ranking:
        wanted = check_channels(channels, self.channels)
        lang_filter = check_langs(langs, self.manifest.languages)
        check_fusion(fusion, rrf_k, weights, wanted)
        fused = len(wanted) > 1
        depth = max(k, 100) if fused else k
        rankings = []
        for name in wanted:
            scope = self._scope(name, lang_filter, query, fused)
            if scope is not None and not scope:
                rankings.append(Ranking(source=name))
            else:
                rankings.append(
                    self._channels[name].search(
                        query.text, depth, scope, query_lang=self._detected(name, query)
                    )
                )
        if not fused:
            return rankings[0].top(k)
        return self._fuse_channels(rankings, wanted, query, fusion, rrf_k, weights)[0].top(k)

    def _candidates(
        self,
        query: Query,
        k: int,
        match_depth: int,
        langs: Collection[str] | None,
        channels: Sequence[str] | None,
        allowed: AbstractSet[str] | None,
        *,
        fusion: str,
        rrf_k: int,
        weights: Mapping[str, float] | None,
    ) -> _Candidates:
        """The top ``k`` as :meth:`ranking` fuses them, and the deeper candidate list "match" counts.

        Each channel is searched once, ``max(k, match_depth)`` deep (at least 100 when fused); the hits
        are the fusion of each channel's top ``max(k, 100)`` (as :meth:`ranking` and eval have them), the
        matches the fusion of the whole lists cut to ``match_depth``.
        """
        wanted = check_channels(channels, self.channels)
        lang_filter = check_langs(langs, self.manifest.languages)
        check_fusion(fusion, rrf_k, weights, wanted)
        fused = len(wanted) > 1
        depth = max(k, 100) if fused else k
        deep = max(depth, match_depth)
        restricted = {} if allowed is None else {"allowed": allowed}
        rankings = []
        exhausted = True
        for name in wanted:
            scope = self._scope(name, lang_filter, query, fused)
            if (scope is not None and not scope) or (allowed is not None and not allowed):
                rankings.append(Ranking(source=name))
                continue
            found = self._channels[name].search(
                query.text, deep, scope, query_lang=self._detected(name, query), **restricted
            )
            exhausted = exhausted and len(found) < deep
            rankings.append(found)
        if not fused:
            whole, own = rankings[0], {}
            top = whole.top(k)
        else:
            heads = [Ranking(r.source, r.hits[:depth]) for r in rankings]
            head, top_own = self._fuse_channels(heads, wanted, query, fusion, rrf_k, weights)
            top = head.top(k)
            whole, own = (
                (head, top_own)
                if deep == depth
                else self._fuse_channels(rankings, wanted, query, fusion, rrf_k, weights)
            )
            own = {**own, **top_own}  # the page shows the scores of the fusion it was ranked by
        matched = tuple(
            Hit(h.docid, own.get(h.docid, h.score), h.lang, h.sources) for h in whole.hits[:match_depth]
        )
        return _Candidates(
            ranking=top,
            own=own,
            matched=matched,
            exhausted=exhausted and len(whole) <= match_depth,
        )

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
        qids = list(queries)
        checked = [Query.checked(queries[qid], k) for qid in qids]
        wanted = check_channels(channels, self.channels)
        lang_filter = check_langs(langs, self.manifest.languages)
        fused = len(wanted) > 1
        depth = max(k, 100) if fused else k
        per_channel = []
        for name in wanted:
            # Queries that share a search scope for this channel are searched together.
            groups: dict[frozenset[str] | None, list[int]] = {}
            results: list[Ranking] = [Ranking(source=name)] * len(checked)
            reusable = (searched or {}).get(name, {})
            for i, query in enumerate(checked):
                scope = self._scope(name, lang_filter, query, fused)
                if qids[i] in reusable and scope == lang_filter:
                    results[i] = reusable[qids[i]]
                    continue
                groups.setdefault(None if scope is None else frozenset(scope), []).append(i)
            for scope, members in groups.items():
                if scope is not None and not scope:
                    continue
                detected = [self._detected(name, checked[i]) for i in members]
                found = self._channels[name].batch_search(
                    [checked[i].text for i in members],
                    depth,
                    scope,
                    query_langs=None if None in detected else detected,
                )
                for i, ranking in zip(members, found, strict=True):
                    results[i] = ranking
            per_channel.append(results)
        if not fused:
            return {qid: ranking.top(k) for qid, ranking in zip(qids, per_channel[0], strict=True)}
        return {
            qid: self._fuse_channels(
                [rankings[i] for rankings in per_channel], wanted, checked[i], "rrf", 60, None
            )[0].top(k)
            for i, qid in enumerate(qids)
        }

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
        for searcher in self._channels.values():
            searcher.close()
        self.docstore.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- how channels are searched and fused -----------------------------------------------------

    def _detected(self, name: str, query: Query) -> tuple[str, float] | None:
        """The query's detected language for channel ``name`` if its searcher reads it (else None)."""
        return query.detected if CHANNELS[name].reads_query_language else None

    def _scope(self, name: str, lang_filter: set[str] | None, query: Query, fused: bool) -> set[str] | None:
        """The document languages channel ``name`` searches for one query.

        A lexical channel (BM25) fused with others searches only documents in the query's own
        language: across languages, shared words are mostly names and numbers, and giving that weak
        evidence an equal vote in the fusion pulls cross-lingual rankings down (XQuAD de->en nDCG@10:
        dense 0.920, dense+sparse 0.930, bm25+dense+sparse over every language 0.855). Alone, or when
        the query's language is unknown, it searches every (requested) language.
        """
        if not fused or not CHANNELS[name].lexical:
            return lang_filter
        query_lang = query.language(LEXICAL_SCOPE_CONFIDENCE)
        if query_lang is None:
            return lang_filter
        return {query_lang} if lang_filter is None else lang_filter & {query_lang}

    def _fuse_channels(
        self,
        rankings: list[Ranking],
        channels: Sequence[str],
        query: Query,
        fusion: str,
        rrf_k: int,
        weights: Mapping[str, float] | None,
    ) -> tuple[Ranking, dict[str, float]]:
        """Fuse one query's channel rankings; a lexical channel kept to the query's language only reorders
        the places that language holds in the other channels' fusion (:func:`xlir.retrieval.fusion.language_slots`).

        Returns the ranking, its scores those of the places (non-increasing: what run files and the rerank
        stage read the order from), and each document's own fused score where it differs (language
        slots), which is what a hit shows.
        """
        from xlir.retrieval.fusion import language_slots

        fused = _fuse(rankings, channels, fusion, rrf_k, weights)
        lexical = [CHANNELS[name].lexical for name in channels]
        if all(lexical) or not any(lexical):
            return fused, {}
        query_lang = query.language(LEXICAL_SCOPE_CONFIDENCE)
        if query_lang is None:
            return fused, {}
        neutral = [(r, name) for r, name, lex in zip(rankings, channels, lexical, strict=True) if not lex]
        base = (
            _fuse([r for r, _ in neutral], [name for _, name in neutral], fusion, rrf_k, weights)
            if len(neutral) > 1
            else neutral[0][0]
        )
        slotted = language_slots(base, fused, query_lang, source=fused.source, scores="slot")
        return slotted, {hit.docid: hit.score for hit in fused.hits}


def _fuse(
    rankings: list[Ranking],
    channels: Sequence[str],
    fusion: str,
    rrf_k: int,
    weights: Mapping[str, float] | None,
) -> Ranking:
    from xlir.retrieval.fusion import normalized_fusion, rrf

    if fusion == "rrf":
        return rrf(rankings, k=rrf_k)
    full = {
        r.source: float((weights or {}).get(name, 1.0)) for r, name in zip(rankings, channels, strict=True)
    }
    return normalized_fusion(rankings, weights=full, method=fusion)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Candidates:
    """One query's first stage: the ranking its hits come from, and the deeper list "match" counts."""

    ranking: Ranking  # the top k (scores: those of the places, see Searcher._fuse_channels)
    own: Mapping[str, float]  # each document's own fused score, where it differs from ranking's
    matched: tuple[Hit, ...]  # the fused candidates down to match_depth, with their own scores
    exhausted: bool  # no channel had more candidates than it returned: the matches are all there are


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
