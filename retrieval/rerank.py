"""The reranking stage of the query pipeline: a reranker re-scores the first stage's top k, within a time
budget per query.

* :func:`rerank` - re-scores the top ``k`` hits of a :class:`~xlir.indexing.ranking.Ranking` in batches under
  a per-query time budget. What could not be scored in time keeps its first-stage order, after the scored
  (reranked) hits. Scored hits carry ``sources["rerank"]``; the ranking's ``source`` becomes
  ``"<first>+rerank"`` (all k scored) or ``"<first>+rerank-partial"`` (the budget ran out);
  :func:`rerank_status` reads it back.
* :func:`first_stage_weight` - how much of the first stage's score a reranker's score is mixed with.

The rerankers themselves (the :class:`~xlir.models.rerankers.base.Reranker` protocol, the adapter,
cross-encoder and gated models, :func:`~xlir.models.rerankers.registry.reranker_for`) are in
:mod:`xlir.models.rerankers`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from xlir.indexing.ranking import ChannelScore, Hit, Ranking
from xlir.models.rerankers.base import Reranker, RerankerError
from xlir.retrieval.fusion import z_normalize

log = logging.getLogger(__name__)

#: The channel name reranked hits carry in ``Hit.sources``.
RERANK_SOURCE = "rerank"


@dataclass(frozen=True)
class RerankSettings:
    """How :func:`rerank` runs: depth, batch size, time budget per query, and score interpolation.

    ``interpolate``: weight of the first-stage score in the final score of reranked hits (0 = the reranker
    alone); both scores are z-normalized over the scored hits first.
    """

    k: int = 100
    batch_size: int = 16
    budget_s: float | None = None
    interpolate: float = 0.0


TextLookup = Callable[[Sequence[str]], Sequence[tuple[str, str | None]]]


def rerank(
    ranking: Ranking,
    query: str,
    reranker: Reranker,
    texts: TextLookup | Mapping[str, str],
    *,
    k: int = 100,
    batch_size: int = 16,
    budget_s: float | None = None,
    query_lang: str | None = None,
    interpolate: float = 0.0,
) -> Ranking:
    """Rerank the top ``k`` hits of ``ranking`` for ``query``; hits below ``k`` follow unchanged.

    ``texts``: docid -> text mapping, or a callable from docids to ``(text, lang)`` pairs. Without a budget,
    hits are scored ``batch_size`` at a time in order of text length (less padding). With ``budget_s``
    (seconds for this query) they are scored in first-stage order; before each batch, if the budget would
    be exceeded by another batch as long as the last one, scoring stops: the scored hits are reordered
    by reranker score, the unscored keep their first-stage order and score after them, and the ranking's
    source ends in ``+rerank-partial`` (``+rerank`` when all were scored).
    """
    if k < 1:
        raise RerankerError(f"rerank k must be >= 1, got {k}")
    if batch_size < 1:
        raise RerankerError(f"rerank batch_size must be >= 1, got {batch_size}")
    if budget_s is not None and budget_s < 0:
        raise RerankerError(f"the rerank time budget must be >= 0 seconds, got {budget_s}")
    if not 0.0 <= interpolate <= 1.0:
        raise RerankerError(f"interpolate must be within [0, 1], got {interpolate}")
    started = time.perf_counter()
    head, tail = list(ranking.hits[:k]), list(ranking.hits[k:])
    pairs = _lookup(texts, [h.docid for h in head], [h.lang for h in head])
    # Without a budget every hit is scored: batch texts of similar length together (less padding). With
    # one, score in first-stage order so that a cut keeps the best candidates reranked.
    scoring = (
        sorted(range(len(head)), key=lambda i: -len(pairs[i][0])) if budget_s is None else range(len(head))
    )
    batches = [list(scoring[start : start + batch_size]) for start in range(0, len(head), batch_size)]
    values = np.zeros(len(head), dtype=np.float64)
    n, last = 0, 0.0
    for members in batches:
        elapsed = time.perf_counter() - started
        if budget_s is not None and (budget_s == 0 or elapsed + last > budget_s):
            break
        batch_started = time.perf_counter()
        value = reranker.score(
            query,
            [pairs[i][0] for i in members],
            query_lang=query_lang,
            doc_langs=[pairs[i][1] for i in members],
        )
        if len(value) != len(members):
            raise RerankerError(
                f"reranker {reranker.name!r} returned {len(value)} scores for {len(members)} texts"
            )
        values[members] = np.asarray(value, dtype=np.float64)
        n += len(members)
        last = time.perf_counter() - batch_started
    scores = [float(v) for v in values[:n]]
    complete = n == len(head)
    if n < len(head):
        log.warning(
            "rerank budget of %.3f s ran out after %d of %d hits; the rest keep their first-stage order",
            budget_s or 0.0,
            n,
            len(head),
        )
    final = np.asarray(scores, dtype=np.float64)
    if interpolate > 0 and n > 1:
        first = np.asarray([h.score for h in head[:n]], dtype=np.float64)
        final = (1 - interpolate) * z_normalize(final) + interpolate * z_normalize(first)
    order = sorted(range(n), key=lambda i: (-final[i], i))
    # the reranker's own rank and score, as every channel's evidence is given; the hit's score (and the
    # order) is the interpolated one where the first stage has a weight
    own_rank = {i: r for r, i in enumerate(sorted(range(n), key=lambda i: (-scores[i], i)), start=1)}
    reranked = []
    for i in order:
        hit = head[i]
        sources = dict(hit.sources)
        sources[RERANK_SOURCE] = ChannelScore(rank=own_rank[i], score=float(scores[i]))
        reranked.append(Hit(docid=hit.docid, score=float(final[i]), lang=hit.lang, sources=sources))
    suffix = "+rerank" if complete else "+rerank-partial"
    return Ranking(source=ranking.source + suffix, hits=tuple(reranked + head[n:] + tail))


def first_stage_weight(reranker: Reranker) -> float:
    """The first stage's weight when ``reranker``'s score is interpolated with it (0 = reranker alone).

    An adapter reranker records it at training (``first_stage_weight`` in reranker.json: the weight with
    the best held-out English MRR@10 among those validated, ``valid_mrr10_averaged``); other rerankers
    and older files without it score alone.
    """
    info = getattr(reranker, "info", None) or {}
    if "first_stage_weight" in info:
        return float(info["first_stage_weight"])
    return best_weight(info.get("valid_mrr10_averaged") or {})


def best_weight(validation: Mapping[str, Any]) -> float:
    """The weight with the best mean MRR@10 in a validation record (``rerank`` = 0, ``interp0.3`` = 0.3),
    the smaller weight on a tie; 0 when there is none."""
    mean = validation.get("mean") or {}
    options = {0.0 if key == "rerank" else float(key[6:]): v for key, v in mean.items() if key != "dense"}
    return max(options, key=lambda w: (options[w], -w)) if options else 0.0


def rerank_status(ranking: Ranking) -> Literal["reranked", "partial", "none"]:
    """Whether ``ranking`` came out of :func:`rerank` whole, cut by its time budget, or not reranked."""
    if ranking.source.endswith("+rerank-partial"):
        return "partial"
    if ranking.source.endswith("+rerank"):
        return "reranked"
    return "none"


def _lookup(
    texts: TextLookup | Mapping[str, str], docids: Sequence[str], langs: Sequence[str | None]
) -> list[tuple[str, str | None]]:
    if callable(texts):
        found = list(texts(docids))
        if len(found) != len(docids):
            raise RerankerError(f"the text lookup returned {len(found)} texts for {len(docids)} documents")
        return [
            (t, lang if lang is not None else given) for (t, lang), given in zip(found, langs, strict=True)
        ]
    missing = [d for d in docids if d not in texts]
    if missing:
        raise RerankerError(
            f"no text for document(s) {missing[:5]} to rerank; the index's document store must hold the text "
            "(rebuild it with text stored) or pass a lookup that has it."
        )
    return [(texts[d], lang) for d, lang in zip(docids, langs, strict=True)]
