"""The first stage of a search: every channel of an index searched for a query, and their rankings fused.

A lexical channel (BM25) fused with others is kept to the query's language (:meth:`FirstStage.scope`) and
then only reorders the places that language holds in the other channels' fusion
(:func:`xlir.retrieval.fusion.language_slots`). Each channel search is timed; a ``timer`` given to the
:class:`FirstStage` (the server's per-channel metric) is told each channel's seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from xlir.indexing.channels import CHANNELS
from xlir.indexing.channels.base import ChannelSearcher, open_searcher
from xlir.indexing.manifest import Manifest
from xlir.indexing.ranking import Hit, Ranking
from xlir.retrieval.fusion import language_slots, normalized_fusion, rrf
from xlir.retrieval.query import (
    LEXICAL_SCOPE_CONFIDENCE,
    Query,
    QueryError,
    check_channels,
    check_fusion,
    check_langs,
)

#: Called with (channel, seconds) after each search of one channel (one query, or one batch of them).
ChannelTimer = Callable[[str, float], None]

_T = TypeVar("_T")


@dataclass(frozen=True)
class Candidates:
    """One query's first stage: the ranking its hits come from, and the deeper list "match" counts."""

    ranking: Ranking  # the top k (scores: those of the places, see FirstStage.fuse)
    own: Mapping[str, float]  # each document's own fused score, where it differs from ranking's
    matched: tuple[Hit, ...]  # the fused candidates down to match_depth, with their own scores
    exhausted: bool  # no channel had more candidates than it returned: the matches are all there are


class FirstStage:
    """The open channel searchers of one index, searched and fused per query."""

    def __init__(
        self,
        channels: Mapping[str, ChannelSearcher],
        languages: Collection[str],
        timer: ChannelTimer | None = None,
    ) -> None:
        self.channels = dict(channels)
        self.languages = languages
        self.timer = timer

    @classmethod
    def open(
        cls,
        index_dir: Path,
        manifest: Manifest,
        wanted: Sequence[str] | None = None,
        timer: ChannelTimer | None = None,
    ) -> FirstStage:
        """The searchers of ``wanted`` (default: every channel of the index) with their built settings."""
        available = list(manifest.channels)
        chosen = list(wanted) if wanted else available
        missing = [c for c in chosen if c not in available]
        if missing:
            raise QueryError(f"index {index_dir} has no channel {missing}; it has: {available}")
        opened: dict[str, ChannelSearcher] = {}
        try:
            for name in chosen:
                opened[name] = open_searcher(name, index_dir / name, manifest.channels[name])
        except BaseException:
            for searcher in opened.values():
                searcher.close()
            raise
        return cls(opened, manifest.languages, timer)

    @property
    def names(self) -> list[str]:
        return list(self.channels)

    def close(self) -> None:
        for searcher in self.channels.values():
            searcher.close()

    # -- one query -----------------------------------------------------------------------------------

    def candidates(
        self,
        query: Query,
        k: int,
        langs: Collection[str] | None,
        channels: Sequence[str] | None,
        *,
        fusion: str = "rrf",
        rrf_k: int = 60,
        weights: Mapping[str, float] | None = None,
        match_depth: int = 0,
        allowed: AbstractSet[str] | None = None,
    ) -> Candidates:
        """The fused top ``k``, and the deeper candidate list "match" counts (``match_depth``; 0 = none).

        Each channel is searched once (only within ``allowed`` when given), ``max(k, match_depth)`` deep
        (at least 100 when fused); the hits are the fusion of each channel's top ``max(k, 100)`` (as
        eval has them), the matches the fusion of the whole lists cut to ``match_depth``.
        """
        wanted, lang_filter, fused, depth = self._plan(channels, langs, k)
        check_fusion(fusion, rrf_k, weights, wanted)
        deep = max(depth, match_depth)
        restricted = {} if allowed is None else {"allowed": allowed}
        rankings = []
        exhausted = True
        for name in wanted:
            scope = self.scope(name, lang_filter, query, fused)
            if (scope is not None and not scope) or (allowed is not None and not allowed):
                rankings.append(Ranking(source=name))
                continue
            found = self._timed(
                name,
                self.channels[name].search,
                query.text,
                deep,
                scope,
                query_lang=_detected(name, query),
                **restricted,
            )
            exhausted = exhausted and len(found) < deep
            rankings.append(found)
        if not fused:
            whole, own = rankings[0], {}
            top = whole.top(k)
        else:
            heads = [Ranking(r.source, r.hits[:depth]) for r in rankings]
            head, top_own = self.fuse(heads, wanted, query, fusion, rrf_k, weights)
            top = head.top(k)
            whole, own = (
                (head, top_own)
                if deep == depth
                else self.fuse(rankings, wanted, query, fusion, rrf_k, weights)
            )
            own = {**own, **top_own}  # the page shows the scores of the fusion it was ranked by
        matched = tuple(
            Hit(h.docid, own.get(h.docid, h.score), h.lang, h.sources) for h in whole.hits[:match_depth]
        )
        return Candidates(
            ranking=top, own=own, matched=matched, exhausted=exhausted and len(whole) <= match_depth
        )

    # -- many queries --------------------------------------------------------------------------------

    def rankings(
        self,
        queries: Mapping[str, Query],
        k: int,
        langs: Collection[str] | None,
        channels: Sequence[str] | None,
        searched: Mapping[str, Mapping[str, Ranking]] | None = None,
    ) -> dict[str, Ranking]:
        """Fused rankings (rrf) for many queries (qid -> query), each channel searched in batches.

        ``searched`` (channel -> qid -> ranking): rankings of one channel alone reused wherever the fused
        search would search that channel over the same languages (see
        :meth:`xlir.retrieval.searcher.Searcher.rankings`).
        """
        qids = list(queries)
        checked = [queries[qid] for qid in qids]
        wanted, lang_filter, fused, depth = self._plan(channels, langs, k)
        per_channel = []
        for name in wanted:
            # Queries that share a search scope for this channel are searched together.
            groups: dict[frozenset[str] | None, list[int]] = {}
            results: list[Ranking] = [Ranking(source=name)] * len(checked)
            reusable = (searched or {}).get(name, {})
            for i, query in enumerate(checked):
                scope = self.scope(name, lang_filter, query, fused)
                if qids[i] in reusable and scope == lang_filter:
                    results[i] = reusable[qids[i]]
                    continue
                groups.setdefault(None if scope is None else frozenset(scope), []).append(i)
            for scope, members in groups.items():
                if scope is not None and not scope:
                    continue
                detected = [_detected(name, checked[i]) for i in members]
                found = self._timed(
                    name,
                    self.channels[name].batch_search,
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
            qid: self.fuse([rankings[i] for rankings in per_channel], wanted, checked[i], "rrf", 60, None)[
                0
            ].top(k)
            for i, qid in enumerate(qids)
        }

    # -- how channels are searched and fused ---------------------------------------------------------

    def scope(self, name: str, lang_filter: set[str] | None, query: Query, fused: bool) -> set[str] | None:
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

    def fuse(
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

    def _plan(
        self, channels: Sequence[str] | None, langs: Collection[str] | None, k: int
    ) -> tuple[list[str], set[str] | None, bool, int]:
        """The channels searched, the language filter, whether they are fused and how deep each is searched."""
        wanted = check_channels(channels, self.names)
        lang_filter = check_langs(langs, self.languages)
        fused = len(wanted) > 1
        return wanted, lang_filter, fused, max(k, 100) if fused else k

    def _timed(self, name: str, search: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """``search(*args, **kwargs)``: one search of channel ``name``, its time told to the timer."""
        started = time.perf_counter()
        try:
            return search(*args, **kwargs)
        finally:
            if self.timer is not None:
                self.timer(name, time.perf_counter() - started)


def _detected(name: str, query: Query) -> tuple[str, float] | None:
    """The query's detected language for channel ``name`` if its searcher reads it (else None)."""
    return query.detected if CHANNELS[name].reads_query_language else None


def _fuse(
    rankings: list[Ranking],
    channels: Sequence[str],
    fusion: str,
    rrf_k: int,
    weights: Mapping[str, float] | None,
) -> Ranking:
    if fusion == "rrf":
        return rrf(rankings, k=rrf_k)
    full = {
        r.source: float((weights or {}).get(name, 1.0)) for r, name in zip(rankings, channels, strict=True)
    }
    return normalized_fusion(rankings, weights=full, method=fusion)  # type: ignore[arg-type]
