"""The Searcher facade: open an index directory, search it by every channel it has, fuse, return hits.

Reads the manifest written at build time and opens each channel's searcher with exactly the settings
that channel was built with. The server and eval packages call this; so does ``xlir search``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlir.errors import UserError
from xlir.indexing.channels.searchers import ChannelSearcher, open_searcher
from xlir.indexing.docstore import DocStore
from xlir.indexing.documents import Document
from xlir.indexing.manifest import Manifest
from xlir.retrieval.ranking import ChannelScore, Ranking
from xlir.retrieval.rerank import Reranker, rerank_status

log = logging.getLogger(__name__)

#: Query-language confidence needed before a fused lexical channel is limited to that language.
LEXICAL_SCOPE_CONFIDENCE = 0.5

#: Longest query accepted, in characters. Longer input is almost always a mistake (a pasted document).
MAX_QUERY_CHARS = 4096


class QueryError(UserError, ValueError):
    """A query the engine cannot run as given (empty, too long, unknown language or channel)."""


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


class Searcher:
    """Search one xlir index. ``Searcher(path).search("query", k=10)``.

    ``reranker``: a :class:`xlir.retrieval.rerank.Reranker`, or a name for :func:`xlir.retrieval.rerank.reranker_for`
    (``"default"`` = the shipped one), loaded on first use; ``None`` = no reranking stage (the default).
    ``search(..., rerank=True)`` then reranks the fused top ``rerank_k``.
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
        query = self._check_query(query, k)
        wanted = self._check_channels(channels)
        lang_filter = self._check_langs(langs)
        _check_fusion(fusion, rrf_k, weights, wanted)
        depth = max(k, 100) if len(wanted) > 1 else k
        query_lang = _query_language(query, LEXICAL_SCOPE_CONFIDENCE) if len(wanted) > 1 else None
        rankings = []
        for name in wanted:
            scope = self._scope(name, lang_filter, query_lang, fused=len(wanted) > 1)
            if scope is not None and not scope:
                rankings.append(Ranking(source=name))
            else:
                rankings.append(self._channels[name].search(query, depth, scope))
        if len(rankings) == 1:
            return rankings[0].top(k)
        return self._fuse_channels(rankings, wanted, query_lang, fusion, rrf_k, weights).top(k)

    def rankings(
        self,
        queries: Mapping[str, str],
        k: int = 10,
        langs: Collection[str] | None = None,
        channels: Sequence[str] | None = None,
        searched: Mapping[str, Mapping[str, Ranking]] | None = None,
    ) -> dict[str, Ranking]:
        """Fused rankings for many queries (qid -> text): what eval runs consume.

        Channels that offer ``batch_search`` get every query in one call (one encoder batch for the
        neural channels); the others are searched query by query. ``searched`` (channel -> qid ->
        ranking) holds what this searcher already returned for one channel alone, with the same
        ``langs`` and at a depth of at least ``max(k, 100)``: a fused search reuses those rankings
        wherever it would search that channel over the same languages (every channel but a lexical one
        kept to the query's language), instead of encoding and searching the queries again.
        """
        qids = list(queries)
        texts = [self._check_query(queries[qid], k) for qid in qids]
        wanted = self._check_channels(channels)
        lang_filter = self._check_langs(langs)
        depth = max(k, 100) if len(wanted) > 1 else k
        fused = len(wanted) > 1
        query_langs = (
            [_query_language(t, LEXICAL_SCOPE_CONFIDENCE) for t in texts] if fused else [None] * len(texts)
        )
        per_channel = []
        for name in wanted:
            # Queries that share a search scope for this channel are searched together.
            groups: dict[frozenset[str] | None, list[int]] = {}
            results: list[Ranking] = [Ranking(source=name)] * len(texts)
            reusable = (searched or {}).get(name, {})
            for i, query_lang in enumerate(query_langs):
                scope = self._scope(name, lang_filter, query_lang, fused)
                if qids[i] in reusable and scope == lang_filter:
                    results[i] = reusable[qids[i]]
                    continue
                groups.setdefault(None if scope is None else frozenset(scope), []).append(i)
            for scope, members in groups.items():
                if scope is not None and not scope:
                    continue
                found = self._search_many(name, [texts[i] for i in members], depth, scope)
                for i, ranking in zip(members, found, strict=True):
                    results[i] = ranking
            per_channel.append(results)
        if len(per_channel) == 1:
            return {qid: ranking.top(k) for qid, ranking in zip(qids, per_channel[0], strict=True)}
        return {
            qid: self._fuse_channels(
                [rankings[i] for rankings in per_channel], wanted, query_langs[i], "rrf", 60, None
            ).top(k)
            for i, qid in enumerate(qids)
        }

    def _fuse_channels(
        self,
        rankings: list[Ranking],
        channels: Sequence[str],
        query_lang: str | None,
        fusion: str,
        rrf_k: int,
        weights: Mapping[str, float] | None,
    ) -> Ranking:
        """Fuse one query's channel rankings; a lexical channel kept to the query's language only reorders
        the places that language holds in the other channels' fusion (:func:`xlir.retrieval.fusion.language_slots`)."""
        from xlir.retrieval.fusion import language_slots

        fused = _fuse(rankings, channels, fusion, rrf_k, weights)
        lexical = [bool(getattr(self._channels[name], "lexical", False)) for name in channels]
        if query_lang is None or all(lexical) or not any(lexical):
            return fused
        neutral = [(r, name) for r, name, lex in zip(rankings, channels, lexical, strict=True) if not lex]
        base = (
            _fuse([r for r, _ in neutral], [name for _, name in neutral], fusion, rrf_k, weights)
            if len(neutral) > 1
            else neutral[0][0]
        )
        return language_slots(base, fused, query_lang, source=fused.source)

    def _search_many(
        self, name: str, texts: list[str], depth: int, langs: Collection[str] | None
    ) -> list[Ranking]:
        channel = self._channels[name]
        batch = getattr(channel, "batch_search", None)
        if batch is not None:
            return batch(texts, depth, langs)
        return [channel.search(text, depth, langs) for text in texts]

    def _scope(
        self, name: str, lang_filter: set[str] | None, query_lang: str | None, fused: bool
    ) -> set[str] | None:
        """The document languages channel ``name`` searches for one query.

        A lexical channel (BM25) fused with others searches only documents in the query's own
        language: across languages, shared words are mostly names and numbers, and giving that weak
        evidence an equal vote in the fusion pulls cross-lingual rankings down (XQuAD de->en nDCG@10:
        dense 0.920, dense+sparse 0.930, bm25+dense+sparse over every language 0.855). Alone, or when
        the query's language is unknown, it searches every (requested) language.
        """
        if not fused or query_lang is None or not getattr(self._channels[name], "lexical", False):
            return lang_filter
        return {query_lang} if lang_filter is None else lang_filter & {query_lang}

    def search(
        self,
        query: str,
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
    ) -> SearchResult:
        """Search and return hits with their documents, and the detected query language.

        ``offset`` skips the first hits (pagination): hits ``offset + 1 .. offset + k`` are returned,
        ranked by their position in the whole list. Fusion options as in :meth:`ranking`.
        ``rerank``: rerank the fused top ``rerank_k`` (at least ``k + offset``) with this searcher's
        reranker within ``rerank_budget_s`` seconds (None = no limit); see :meth:`rerank_ranking`.
        """
        if offset < 0:
            raise QueryError(f"offset must be 0 or more (got {offset}).")
        if rerank:
            ranking = self.rerank_ranking(
                query,
                self.ranking(
                    query,
                    max(k + offset, rerank_k),
                    langs,
                    channels,
                    fusion=fusion,
                    rrf_k=rrf_k,
                    weights=weights,
                ),
                rerank_k=rerank_k,
                budget_s=rerank_budget_s,
            ).top(k + offset)
        else:
            ranking = self.ranking(
                query, k + offset, langs, channels, fusion=fusion, rrf_k=rrf_k, weights=weights
            )
        page = ranking.hits[offset:]
        docs = self.docstore.get_many(hit.docid for hit in page)
        hits = [
            _hit(rank, hit.docid, hit.score, hit.sources, docs.get(hit.docid))
            for rank, hit in enumerate(page, start=offset + 1)
        ]
        return SearchResult(
            query=query,
            query_lang=_query_language(query),
            channels=self._check_channels(channels),
            hits=hits,
            rerank=rerank_status(ranking),
        )

    @property
    def reranker(self) -> Reranker:
        """The reranker (loaded on first use; the shipped default when none was named)."""
        if self._reranker is None:
            from xlir.retrieval.rerank import reranker_for

            self._reranker = reranker_for(
                self._reranker_spec if isinstance(self._reranker_spec, str) else None
            )
        return self._reranker

    def rerank_ranking(
        self,
        query: str,
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
        from xlir.retrieval.rerank import RerankerError, first_stage_weight, rerank

        if rerank_k < 1:
            raise QueryError(f"rerank_k must be 1 or more (got {rerank_k}).")
        if budget_s is not None and budget_s < 0:
            raise QueryError(f"the rerank time budget must be 0 seconds or more (got {budget_s}).")

        def lookup(docids: Sequence[str]) -> list[tuple[str, str | None]]:
            docs = self.docstore.get_many(docids)
            missing = [d for d in docids if d not in docs]
            if missing:
                raise RerankerError(
                    f"document(s) {missing[:5]} are missing from the document store of {self.index_dir}; "
                    "rebuild the index or search with --no-rerank"
                )
            return [(_doc_text(docs[d]), docs[d].lang) for d in docids]

        return rerank(
            ranking,
            query,
            self.reranker,
            lookup,
            k=rerank_k,
            batch_size=batch_size,
            interpolate=first_stage_weight(self.reranker) if interpolate is None else interpolate,
            budget_s=budget_s,
            query_lang=_query_language(query),
        )

    def close(self) -> None:
        for searcher in self._channels.values():
            searcher.close()
        self.docstore.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_query(self, query: str, k: int) -> str:
        if not isinstance(query, str) or not query.strip():
            raise QueryError("the query is empty: give some words to search for.")
        if len(query) > MAX_QUERY_CHARS:
            raise QueryError(
                f"the query is {len(query)} characters long; the limit is {MAX_QUERY_CHARS}. "
                "Shorten it to the words that matter."
            )
        if k < 1:
            raise QueryError(f"k must be at least 1 (got {k}).")
        return query.strip()

    def _check_channels(self, channels: Sequence[str] | None) -> list[str]:
        if not channels:
            return list(self._channels)
        unknown = [c for c in channels if c not in self._channels]
        if unknown:
            raise QueryError(f"unknown channel(s) {unknown}; this index has: {list(self._channels)}")
        return list(channels)

    def _check_langs(self, langs: Collection[str] | None) -> set[str] | None:
        if not langs:
            return None
        from xlir.models.languages import normalize_language

        normalized = {normalize_language(lang) for lang in langs}
        absent = sorted(normalized - set(self.manifest.languages))
        if absent:
            raise QueryError(
                f"the index has no documents in language(s) {absent}; "
                f"it has: {', '.join(sorted(self.manifest.languages))}"
            )
        return normalized


FUSION_METHODS = ("rrf", "minmax", "zscore")


def _check_fusion(
    fusion: str, rrf_k: int, weights: Mapping[str, float] | None, channels: Sequence[str]
) -> None:
    if fusion not in FUSION_METHODS:
        raise QueryError(f"unknown fusion {fusion!r}; use one of {list(FUSION_METHODS)}")
    if fusion == "rrf":
        if isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 1:
            raise QueryError(f"rrf_k must be a positive integer (the usual value is 60), got {rrf_k!r}")
        if weights:
            raise QueryError("weights apply to fusion 'minmax' or 'zscore', not 'rrf'; drop them or switch")
    if weights:
        unknown = sorted(set(weights) - set(channels))
        if unknown:
            raise QueryError(
                f"weights name channel(s) {unknown} that are not searched; searched: {list(channels)}"
            )
        for name, weight in weights.items():
            if (
                isinstance(weight, bool)
                or not isinstance(weight, int | float)
                or not 0 <= weight < float("inf")
            ):
                raise QueryError(f"weight for {name!r} must be a finite number >= 0, got {weight!r}")
        if len(channels) > 1 and not any(weights.get(c, 1.0) for c in channels):
            raise QueryError(
                "all channel weights are 0: give at least one searched channel a positive weight"
            )


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


def _doc_text(doc: Document) -> str:
    """What a reranker reads of a document: its title (if any) and text."""
    return f"{doc.title}. {doc.text}" if doc.title else doc.text


def _query_language(query: str, min_confidence: float = 0.3) -> str | None:
    from xlir.models.languages import detect_language

    try:
        code, confidence = detect_language(query)
    except ValueError:
        return None
    return code if confidence >= min_confidence else None
