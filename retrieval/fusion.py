"""Fusion: combine the rankings several sources gave one query into one :class:`Ranking`.

Pure functions over :class:`~xlir.indexing.ranking.Ranking` (no I/O, no state):

* :func:`rrf` - reciprocal rank fusion (Cormack, Clarke and Buettcher, SIGIR 2009): a document scores
  ``sum over inputs of 1 / (k + rank)``; scores are ignored, so channels on different scales mix freely.
* :func:`normalized_fusion` - normalize each input's scores (min-max or z-score), then a weighted sum.
* :func:`interpolate` - ``alpha * a + (1 - alpha) * b`` over two min-max normalized rankings.
* :func:`z_normalize` - scores shifted to mean 0 and scaled to standard deviation 1 (the ``"zscore"``
  method here, and the score interpolation of the rerank stage and its training).
* :func:`language_slots` - let a one-language signal (BM25 kept to the query's language) reorder only the
  places that language already holds in a cross-lingual ranking, so it cannot push other languages out.

Every fused :class:`~xlir.indexing.ranking.Hit` keeps its provenance: ``sources`` is the union of the input
hits' ``sources`` (an input hit that carries none contributes ``{ranking.source: (rank, score)}``), so the
rank and raw score each contributing channel gave a document survive fusion, and fusing fused rankings
keeps the original channels. ``lang`` is the first non-empty ``lang`` among the inputs. Fused hits are
ordered by descending fused score, ties broken by ascending docid, so results are deterministic.

Input rankings must have distinct ``source`` names: provenance and weights are keyed by them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from xlir.indexing.ranking import ChannelScore, Hit, Ranking

logger = logging.getLogger(__name__)

NormalizationMethod = Literal["minmax", "zscore"]
_METHODS: tuple[str, ...] = ("minmax", "zscore")


def rrf(
    rankings: Sequence[Ranking],
    k: int = 60,
    depth: int | None = None,
    source: str = "rrf",
    limit: int | None = None,
) -> Ranking:
    """Reciprocal rank fusion of ``rankings`` into one ranking named ``source``.

    A document's fused score is ``sum(1 / (k + r))`` over the inputs that rank it, where ``r`` is its
    1-based position in that input. ``depth`` counts only each input's first ``depth`` hits (``None``: all);
    ``limit`` truncates the fused list (``None``: keep every document). A docid repeated within one input
    counts once, at its best position.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(f"rrf k must be a positive integer (the usual value is 60), got {k!r}")
    _check_depth("depth", depth)
    _check_depth("limit", limit)
    _check_inputs(rankings)

    scores: dict[str, float] = {}
    evidence: dict[str, _Evidence] = {}
    for ranking in rankings:
        hits = ranking.hits if depth is None else ranking.hits[:depth]
        seen: set[str] = set()
        for position, hit in enumerate(hits, start=1):
            if hit.docid in seen:
                continue
            seen.add(hit.docid)
            scores[hit.docid] = scores.get(hit.docid, 0.0) + 1.0 / (k + position)
            evidence.setdefault(hit.docid, _Evidence()).add(ranking, position, hit)
    return _build(source, scores, evidence, limit)


def normalized_fusion(
    rankings: Sequence[Ranking],
    weights: Mapping[str, float] | None = None,
    method: NormalizationMethod = "minmax",
    source: str = "fusion",
    limit: int | None = None,
) -> Ranking:
    """Normalize each input's scores, then sum them weighted by ``weights[ranking.source]``.

    ``method="minmax"`` maps each input's scores to ``[0, 1]`` (all equal -> 1.0); a document missing from
    an input gets 0 there, i.e. that input's minimum. ``method="zscore"`` maps scores to
    ``(s - mean) / std`` (all equal -> 0.0); a document missing from an input gets that input's minimum
    z-score. ``weights=None`` weighs every input 1.0; otherwise it must name exactly the inputs' sources,
    with non-negative weights that are not all 0. ``limit`` truncates the fused list.
    """
    if method not in _METHODS:
        raise ValueError(f"unknown normalization method {method!r}; use one of {list(_METHODS)}")
    _check_depth("limit", limit)
    _check_inputs(rankings)
    names = [ranking.source for ranking in rankings]
    weight_of = _check_weights(weights, names)

    normalized: list[tuple[Ranking, dict[str, float], float]] = []
    for ranking in rankings:
        values, floor = _normalize(ranking, method)
        normalized.append((ranking, values, floor))

    all_docids: set[str] = set()
    for _, values, _ in normalized:
        all_docids.update(values)

    scores: dict[str, float] = {docid: 0.0 for docid in all_docids}
    evidence: dict[str, _Evidence] = {}
    for ranking, values, floor in normalized:
        weight = weight_of[ranking.source]
        for docid in all_docids:
            scores[docid] += weight * values.get(docid, floor)
        seen: set[str] = set()
        for position, hit in enumerate(ranking.hits, start=1):
            if hit.docid not in seen:
                seen.add(hit.docid)
                evidence.setdefault(hit.docid, _Evidence()).add(ranking, position, hit)
    return _build(source, scores, evidence, limit)


def interpolate(
    a: Ranking,
    b: Ranking,
    alpha: float,
    method: NormalizationMethod = "minmax",
    source: str = "interpolate",
    limit: int | None = None,
) -> Ranking:
    """``alpha * norm(a) + (1 - alpha) * norm(b)`` with ``0 <= alpha <= 1`` (see :func:`normalized_fusion`)."""
    if not isinstance(alpha, int | float) or isinstance(alpha, bool) or not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"interpolation alpha must be a number in [0, 1], got {alpha!r}")
    if a.source == b.source:
        raise ValueError(
            f"both rankings are named {a.source!r}; interpolation weighs them by source name, so give "
            "them distinct sources (e.g. dataclasses.replace(ranking, source='...'))"
        )
    weights = {a.source: float(alpha), b.source: 1.0 - float(alpha)}
    return normalized_fusion([a, b], weights=weights, method=method, source=source, limit=limit)


def language_slots(
    base: Ranking,
    fused: Ranking,
    lang: str,
    source: str | None = None,
    *,
    scores: Literal["own", "slot"] = "own",
) -> Ranking:
    """``base``'s order of languages, with ``lang``'s places filled in ``fused``'s order.

    ``base`` is the fusion of the language-neutral channels (dense, sparse, multivector); ``fused`` the
    fusion of those and a channel that only sees ``lang`` documents (lexical matching, kept to the query's
    language). In a multilingual collection an equal vote for a one-language channel pulls every document
    of that language up (on the 12-language XQuAD pool it tripled the share of German paragraphs in a German
    query's top 10). Here the places ``lang`` documents hold in ``base`` are kept and filled, best first,
    with ``fused``'s ``lang`` documents: the lexical evidence decides *which* ``lang`` documents and in what
    order, not how many. ``lang`` documents only ``fused`` found beyond those places follow at the end.
    When every document is in ``lang`` the result is ``fused``'s order; when none is, ``base``'s. Each hit
    keeps its sources from ``fused``.

    ``scores="own"`` (the default): each hit's score is that document's own score in ``fused`` (what a
    person reads next to it); the order is the slots' order, so a score may exceed the one above it.
    ``scores="slot"``: each hit takes the score of its place in ``base`` (non-increasing; documents past
    the places a hair below the last), for readers that take the order from the scores: run files
    (trec_eval re-sorts by score) and the score interpolation of the rerank stage.
    """
    if scores not in ("own", "slot"):
        raise ValueError(f"scores must be 'own' or 'slot', got {scores!r}")
    own = {hit.docid: hit.score for hit in reversed(fused.hits)}  # the first occurrence wins
    mine = [hit for hit in fused.hits if hit.lang == lang]
    if not mine:
        hits = base.hits
        if scores == "own":
            hits = tuple(Hit(h.docid, own.get(h.docid, h.score), h.lang, h.sources) for h in hits)
        return Ranking(source or base.source, hits)
    taken = iter(mine)
    slotted: list[Hit] = []
    for slot in base.hits:
        hit = next(taken, None) if slot.lang == lang else slot
        if hit is not None:
            score = own.get(hit.docid, hit.score) if scores == "own" else slot.score
            slotted.append(Hit(hit.docid, score, hit.lang, hit.sources))
    last = slotted[-1].score if slotted else 0.0
    for i, hit in enumerate(taken, start=1):
        slotted.append(
            Hit(hit.docid, hit.score if scores == "own" else last - i * 1e-9, hit.lang, hit.sources)
        )
    return Ranking(source or fused.source, tuple(slotted))


class _Evidence:
    """What the inputs said about one document: the merged ``sources`` and the first known ``lang``."""

    __slots__ = ("sources", "lang")

    def __init__(self) -> None:
        self.sources: dict[str, ChannelScore] = {}
        self.lang: str | None = None

    def add(self, ranking: Ranking, position: int, hit: Hit) -> None:
        own = hit.sources or {ranking.source: ChannelScore(rank=position, score=float(hit.score))}
        for name, channel_score in own.items():
            self.sources.setdefault(name, channel_score)
        if self.lang is None and hit.lang:
            self.lang = hit.lang


def _build(
    source: str, scores: Mapping[str, float], evidence: Mapping[str, _Evidence], limit: int | None
) -> Ranking:
    ordered = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    if limit is not None:
        ordered = ordered[:limit]
    hits = tuple(
        Hit(docid=docid, score=score, lang=evidence[docid].lang, sources=dict(evidence[docid].sources))
        for docid, score in ordered
    )
    return Ranking(source=source, hits=hits)


def _normalize(ranking: Ranking, method: str) -> tuple[dict[str, float], float]:
    """Normalized score per docid (first occurrence) and the value a missing document gets."""
    raw: dict[str, float] = {}
    for hit in ranking.hits:
        score = float(hit.score)
        if not math.isfinite(score):
            raise ValueError(
                f"ranking {ranking.source!r} gives document {hit.docid!r} the score {score!r}; fusion needs "
                "finite scores (drop or clamp that hit first)"
            )
        raw.setdefault(hit.docid, score)
    if not raw:
        return {}, 0.0
    values = list(raw.values())
    if method == "minmax":
        low, high = min(values), max(values)
        if high == low:
            return {docid: 1.0 for docid in raw}, 0.0
        span = high - low
        return {docid: (score - low) / span for docid, score in raw.items()}, 0.0
    normalized = dict(zip(raw, z_normalize(np.asarray(values, dtype=np.float64)).tolist(), strict=True))
    return normalized, min(normalized.values())


def z_normalize(values: np.ndarray) -> np.ndarray:
    """Scores shifted to mean 0 and scaled to standard deviation 1 (a constant list only shifted)."""
    std = float(values.std())
    return (values - values.mean()) / (std if std > 1e-12 else 1.0)


def _check_inputs(rankings: Sequence[Ranking]) -> None:
    if isinstance(rankings, Ranking):
        raise TypeError("fusion takes a sequence of rankings, not one Ranking: wrap it, e.g. rrf([ranking])")
    names = []
    for ranking in rankings:
        if not isinstance(ranking, Ranking):
            raise TypeError(f"fusion inputs must be Ranking objects, got {type(ranking).__name__}")
        names.append(ranking.source)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(
            f"several input rankings share the source name(s) {duplicates}; fusion keys provenance and "
            "weights by source, so give each input a distinct source (e.g. 'bm25-de', 'bm25-en')"
        )


def _check_depth(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer or None (no cut-off), got {value!r}")


def _check_weights(weights: Mapping[str, float] | None, names: Sequence[str]) -> dict[str, float]:
    if weights is None:
        return {name: 1.0 for name in names}
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ValueError(
            f"weights name unknown source(s) {unknown}; the input rankings' sources are {list(names)}"
        )
    missing = [name for name in names if name not in weights]
    if missing:
        raise ValueError(
            f"no weight given for source(s) {missing}; give a weight for every input source {list(names)} "
            "(0 to ignore one), or weights=None to weigh all equally"
        )
    result: dict[str, float] = {}
    for name in names:
        weight = weights[name]
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            raise ValueError(f"weight for {name!r} must be a finite number, got {weight!r}")
        if weight < 0:
            raise ValueError(f"weight for {name!r} is negative ({weight}); weights must be >= 0")
        result[name] = float(weight)
    if names and not any(result.values()):
        raise ValueError(f"all weights are 0 ({result}); give at least one source a positive weight")
    return result
