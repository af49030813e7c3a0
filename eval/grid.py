"""Cross-lingual evaluation over a collection: language-pair grids and the multilingual pool.

* :func:`language_grid` - queries in X against documents in Y for every chosen (X, Y): one index per
  document corpus (built once into a cache directory and reused), one run per cell, a measure per cell
  (nDCG@10 by default) beside the cell's query latency.
* :func:`multilingual_pool` - every chosen corpus in ONE index; each query language's topics against
  it, judged by the union of the chosen corpora's qrels; effectiveness, latency and language bias per
  query language.

Language bias (per query language L, over its judged queries q, on the top ``depth``=10 hits):

* ``top_own_share`` = mean over q of (hits in L among q's top 10) / (hits in q's top 10); queries with no
  hits are left out of this mean.
* ``rel_own_share`` = mean over q of (relevant documents of q in L) / (relevant documents of q in the pool):
  the share a ranking that found exactly the relevant documents would have.
* ``excess`` = ``top_own_share - rel_own_share`` in [-1, 1].
* ``bias`` = ``excess`` normalized by the room it had, in [-1, 1]: ``excess / (1 - rel_own_share)`` when
  the own language is over-represented (1 = the top 10 is all in L), ``excess / rel_own_share`` when it is
  under-represented (-1 = nothing in L); 0 = L is as represented as among the relevant documents.
  Normalizing makes pools of different sizes comparable (with 12 languages the excess can reach 11/12,
  with 2 only 1/2).

Example: in the 12-language XQuAD pool a Chinese query has one relevant paragraph per language, so
``rel_own_share`` = 1/12; if 97% of its top 10 is Chinese, ``excess`` = 0.89 and ``bias`` = 0.97.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xlir.eval.collection import Collection, CollectionError
from xlir.eval.errors import EvalError, EvalFileNotFoundError
from xlir.eval.metrics import EvalResult, evaluate
from xlir.eval.runner import LatencyStats, RunResult, run_topics
from xlir.eval.trec import Qrels, json_safe
from xlir.indexing.config import IndexConfig
from xlir.indexing.ranking import Ranking
from xlir.models.languages import normalize_language
from xlir.models.paths import xlir_home
from xlir.retrieval.searcher import Searcher

logger = logging.getLogger(__name__)

_FOR = "-for-"
BIAS_DEPTH = 10


# --- the index cache ---------------------------------------------------------------------------------


def index_cache() -> Path:
    """The default index cache of the evaluation commands: ``$XLIR_HOME/eval-indexes``."""
    return xlir_home() / "eval-indexes"


def cached_index(
    collection: Collection,
    corpus_names: Sequence[str],
    cache_dir: str | Path,
    config: IndexConfig,
    name: str,
    fresh: bool = False,
) -> Path:
    """The index over the collection's ``corpus/<name>.jsonl`` files, built once under ``cache_dir`` and reused.

    Documents are read as ``xlir index build`` reads a collection (a ``<lang>-for-<X>`` side file is in
    ``<lang>``). The cache key is the corpus files (resolved path, size, modification time) and the config,
    so an edited corpus or another config builds a new index in ``<cache_dir>/<name>-<key>``. ``fresh``
    rebuilds it even when cached (to measure the build).
    """
    from xlir.indexing.builder import build_index
    from xlir.indexing.readers import read_collection_corpus

    paths = [(collection.root / "corpus" / f"{corpus}.jsonl").resolve() for corpus in corpus_names]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise EvalFileNotFoundError(f"corpus file(s) {missing} do not exist; check the collection")
    key_source = {
        "corpus": [[str(path), path.stat().st_size, path.stat().st_mtime_ns] for path in paths],
        "config": config.to_dict(),
    }
    key = hashlib.sha256(json.dumps(key_source, sort_keys=True).encode()).hexdigest()[:12]
    target = Path(cache_dir) / f"{name}-{key}"
    if not fresh and (target / "manifest.json").is_file():
        logger.info("reusing cached index %s", target)
        return target
    logger.info("building index %s over %d corpus file(s)", target, len(paths))
    documents = read_collection_corpus(collection.root, names=list(corpus_names))
    build_index(documents, target, config, overwrite=True, sources=[str(path) for path in paths])
    return target


# --- what a grid cell and a pool row share ----------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """One query language's run and its ``measure``: the mean, the judged queries, the latency."""

    query_lang: str
    score: float
    num_queries: int
    latency: LatencyStats
    result: EvalResult = field(repr=False)
    run: RunResult = field(repr=False)

    @classmethod
    def of(cls, query_lang: str, run: RunResult, qrels: Qrels, measure: str, **more: object) -> Measured:
        """``run`` scored on ``measure`` against ``qrels``; ``more``: the subclass's own fields."""
        result = evaluate(run.rankings, qrels, [measure])
        return cls(query_lang, result[measure], result.num_queries, run.latency, result, run, **more)


@dataclass(frozen=True)
class Report:
    """What a grid and a pool report share: the collection, the measure, the channels; written as run files
    (one per cell or row), ``<stem>.json`` and ``<stem>.md``."""

    collection: str
    measure: str
    channels: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"collection": self.collection, "measure": self.measure, "channels": list(self.channels)}

    def to_markdown(self) -> str:
        raise NotImplementedError

    def runs(self) -> dict[str, RunResult]:
        """Each cell's or row's run by its tag."""
        raise NotImplementedError

    def write(self, out_dir: Path, stem: str) -> None:
        """Write every run (``<collection>.<tag>.<channels>.trec``), ``<stem>.json`` and ``<stem>.md``."""
        for tag, run in self.runs().items():
            run.write(out_dir / f"{self.collection}.{tag}.{'+'.join(self.channels)}.trec", tag)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{stem}.json").write_text(json.dumps(json_safe(self.to_dict()), indent=2) + "\n")
        (out_dir / f"{stem}.md").write_text(self.to_markdown())


# --- language-pair grid --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridCell(Measured):
    """One (query language, document language) pair: its score, query count and latency."""

    doc_lang: str


@dataclass(frozen=True)
class Grid(Report):
    """``measure`` for queries in each of ``query_langs`` against documents in each of ``doc_langs``."""

    query_langs: tuple[str, ...]
    doc_langs: tuple[str, ...]
    cells: dict[tuple[str, str], GridCell]

    def value(self, query_lang: str, doc_lang: str) -> float:
        return self.cells[(query_lang, doc_lang)].score

    def matrix(self) -> list[list[float]]:
        """Rows = query languages, columns = document languages."""
        return [[self.value(q, d) for d in self.doc_langs] for q in self.query_langs]

    def runs(self) -> dict[str, RunResult]:
        return {f"{q}-{d}": cell.run for (q, d), cell in self.cells.items()}

    def to_dict(self) -> dict[str, object]:
        return {
            **super().to_dict(),
            "query_langs": list(self.query_langs),
            "doc_langs": list(self.doc_langs),
            "cells": [
                {
                    "query_lang": cell.query_lang,
                    "doc_lang": cell.doc_lang,
                    self.measure: cell.score,
                    "queries": cell.num_queries,
                    "latency": cell.latency.to_dict(),
                }
                for cell in self.cells.values()
            ],
        }

    def to_markdown(self) -> str:
        """The grid (rows: query language, columns: document language), then latency per cell."""
        head = f"| {self.measure}: queries \\ documents | " + " | ".join(self.doc_langs) + " |"
        lines = [head, "|---|" + "---:|" * len(self.doc_langs)]
        for q in self.query_langs:
            lines.append(
                f"| **{q}** | " + " | ".join(f"{self.value(q, d):.3f}" for d in self.doc_langs) + " |"
            )
        lines += ["", "| pair | queries | p50 ms | p95 ms |", "|---|---:|---:|---:|"]
        for (q, d), cell in self.cells.items():
            lines.append(
                f"| {q} -> {d} | {cell.num_queries} | {cell.latency.p50_ms:.1f} | {cell.latency.p95_ms:.1f} |"
            )
        return "\n".join(lines) + "\n"


def language_grid(
    collection: Collection,
    query_langs: Sequence[str],
    doc_langs: Sequence[str],
    *,
    channels: Sequence[str] = ("bm25",),
    cache_dir: str | Path,
    config: IndexConfig | None = None,
    measure: str = "nDCG@10",
    k: int = 100,
    batch_size: int = 1,
) -> Grid:
    """Run queries in each of ``query_langs`` against the corpus of each of ``doc_langs``.

    One index per document corpus (``collection.corpus_path(doc_lang, query_lang)``; Tatoeba-style
    per-query-language corpora get one each), built with ``config`` (default: ``IndexConfig`` with
    ``channels``) under ``cache_dir`` once and reused. Each cell is judged by the corpus's qrels restricted
    to that language's topics.
    """
    query_langs, doc_langs = _unique(query_langs, "query"), _unique(doc_langs, "document")
    config = _config(config, channels)
    cells: dict[tuple[str, str], GridCell] = {}
    searchers: dict[Path, Searcher] = {}
    try:
        for doc_lang in doc_langs:
            for query_lang in query_langs:
                topics, corpus, qrels = collection.pair(query_lang, doc_lang)
                name = f"{collection.name}-{corpus.stem}"
                index = cached_index(collection, [corpus.stem], cache_dir, config, name)
                if index not in searchers:
                    searchers[index] = Searcher(index, channels=list(channels))
                run = run_topics(
                    searchers[index], topics, k=k, channels=list(channels), batch_size=batch_size
                )
                cells[(query_lang, doc_lang)] = GridCell.of(
                    query_lang, run, qrels, measure, doc_lang=doc_lang
                )
    finally:
        for searcher in searchers.values():
            searcher.close()
    ordered = {(q, d): cells[(q, d)] for q in query_langs for d in doc_langs}
    return Grid(collection.name, measure, tuple(channels), tuple(query_langs), tuple(doc_langs), ordered)


# --- multilingual pool and language bias -------------------------------------------------------------


@dataclass(frozen=True)
class LanguageBias:
    """Own-language share of the top hits vs of the relevant documents (see the module docstring)."""

    query_lang: str
    depth: int
    top_own_share: float
    rel_own_share: float
    queries: int

    @property
    def excess(self) -> float:
        """``top_own_share - rel_own_share``, in [-1, 1]."""
        return self.top_own_share - self.rel_own_share

    @property
    def bias(self) -> float:
        """The excess normalized by its room, in [-1, 1]; 0 = represented as among the relevant documents."""
        if math.isnan(self.top_own_share) or math.isnan(self.rel_own_share):
            return math.nan
        excess = self.excess
        if excess >= 0:
            room = 1.0 - self.rel_own_share
        else:
            room = self.rel_own_share
        return excess / room if room > 0 else 0.0

    @property
    def ratio(self) -> float:
        """``top_own_share / rel_own_share`` (inf when no relevant document is in the query's language)."""
        if self.rel_own_share == 0:
            return math.inf if self.top_own_share > 0 else math.nan
        return self.top_own_share / self.rel_own_share

    def to_dict(self) -> dict[str, object]:
        return {
            "query_lang": self.query_lang,
            "depth": self.depth,
            "top_own_share": self.top_own_share,
            "rel_own_share": self.rel_own_share,
            "excess": self.excess,
            "bias": self.bias,
            "ratio": self.ratio,
            "queries": self.queries,
        }


def language_bias(
    run: Mapping[str, Ranking],
    qrels: Qrels,
    query_lang: str,
    doc_langs: Mapping[str, str | None],
    depth: int = BIAS_DEPTH,
) -> LanguageBias:
    """:class:`LanguageBias` of ``run`` for queries in ``query_lang`` over the judged queries of ``qrels``.

    ``doc_langs`` maps docid -> canonical language (a hit's own ``lang`` is used when it has one); a
    relevant document of unknown language counts as not in ``query_lang``.
    """
    own = normalize_language(query_lang)
    top_shares: list[float] = []
    rel_shares: list[float] = []
    for qid, judged in qrels.items():
        relevant = [docid for docid, rel in judged.items() if rel > 0]
        if relevant:
            rel_shares.append(sum(doc_langs.get(docid) == own for docid in relevant) / len(relevant))
        hits = run.get(qid, Ranking(source="none")).hits[:depth]
        if hits:
            top_shares.append(sum((hit.lang or doc_langs.get(hit.docid)) == own for hit in hits) / len(hits))
    return LanguageBias(
        query_lang=query_lang,
        depth=depth,
        top_own_share=sum(top_shares) / len(top_shares) if top_shares else math.nan,
        rel_own_share=sum(rel_shares) / len(rel_shares) if rel_shares else math.nan,
        queries=len(top_shares),
    )


@dataclass(frozen=True)
class PoolRow(Measured):
    """One query language against the pool, with its language bias."""

    bias: LanguageBias


@dataclass(frozen=True)
class PoolReport(Report):
    """Every chosen query language against one index of every chosen corpus."""

    corpora: tuple[str, ...]
    documents: dict[str, int]
    rows: tuple[PoolRow, ...]

    def runs(self) -> dict[str, RunResult]:
        return {f"{row.query_lang}-pool": row.run for row in self.rows}

    def to_dict(self) -> dict[str, object]:
        return {
            **super().to_dict(),
            "corpora": list(self.corpora),
            "documents": dict(self.documents),
            "rows": [
                {
                    "query_lang": row.query_lang,
                    self.measure: row.score,
                    "queries": row.num_queries,
                    "language_bias": row.bias.to_dict(),
                    "latency": row.latency.to_dict(),
                }
                for row in self.rows
            ],
        }

    def to_markdown(self) -> str:
        lines = [
            f"| query language | queries | {self.measure} | top-10 own-language share | relevant own-language "
            "share | excess | bias | p50 ms | p95 ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in self.rows:
            b = row.bias
            lines.append(
                f"| {row.query_lang} | {row.num_queries} | {row.score:.3f} | {b.top_own_share:.3f} | "
                f"{b.rel_own_share:.3f} | {b.excess:+.3f} | {b.bias:+.3f} | {row.latency.p50_ms:.1f} | "
                f"{row.latency.p95_ms:.1f} |"
            )
        lines += ["", BIAS_LEGEND]
        return "\n".join(lines) + "\n"


BIAS_LEGEND = (
    "Language bias over the top 10: own-language share = mean over queries of the fraction of the top 10 in "
    "the query's language; relevant own-language share = mean over queries of the fraction of its relevant "
    "documents in that language; excess = their difference; bias = the excess divided by the room it had "
    "(1 - relevant share when positive, the relevant share when negative), in [-1, 1]: 0 = the query's "
    "language is as represented as among the relevant documents, 1 = the top 10 is all in it."
)


def pool_corpora(collection: Collection, langs: Sequence[str] | None) -> list[str]:
    """Corpus names of ``collection`` whose document language is in ``langs`` (all when None)."""
    names = collection.corpus_names()
    if not langs:
        return names
    wanted = _unique(langs, "document")
    known = collection.document_languages()
    unknown = [lang for lang in wanted if lang not in known]
    if unknown:
        raise CollectionError(
            f"{collection.name} has no corpus in {unknown}; document languages: {', '.join(known)}"
        )
    return [name for name in names if name.split(_FOR, 1)[0] in wanted]


def multilingual_pool(
    collection: Collection,
    langs: Sequence[str] | None = None,
    query_langs: Sequence[str] | None = None,
    *,
    channels: Sequence[str] = ("bm25",),
    cache_dir: str | Path,
    config: IndexConfig | None = None,
    measure: str = "nDCG@10",
    k: int = 100,
    batch_size: int = 1,
    depth: int = BIAS_DEPTH,
) -> PoolReport:
    """Each query language against ONE index of the corpora of ``langs`` (all by default).

    Judgments are the union of those corpora's qrels, restricted to each language's topics. ``query_langs``
    defaults to every query language of the collection that has judged queries in the pool.
    """
    corpora = pool_corpora(collection, langs)
    qrels: Qrels = {}
    for _, judgments in collection.corpus_qrels(corpora):
        for qid, docs in judgments.items():
            qrels.setdefault(qid, {}).update(docs)
    if query_langs:
        chosen = _unique(query_langs, "query")
    else:
        chosen = [
            q for q in collection.query_languages() if any(qid in qrels for qid in collection.queries(q))
        ]
    if not chosen:
        raise CollectionError(f"{collection.name}: no query language has judgments for corpora {corpora}")
    config = _config(config, channels)
    tag = "+".join(corpora) if len(corpora) <= 4 else f"{len(corpora)}corpora"
    index = cached_index(collection, corpora, cache_dir, config, f"{collection.name}-pool-{tag}")
    rows = []
    with Searcher(index, channels=list(channels)) as searcher:
        documents = dict(searcher.languages)
        for query_lang in chosen:
            topics = collection.queries(query_lang)
            judged = {qid: qrels[qid] for qid in topics if qid in qrels}
            if not judged:
                raise CollectionError(
                    f"{collection.name}: no {query_lang!r} query is judged for corpora {corpora}; pick other "
                    "query languages or corpora"
                )
            run = run_topics(searcher, topics, k=k, channels=list(channels), batch_size=batch_size)
            doc_langs = _languages_of(searcher, run.rankings, judged, depth)
            bias = language_bias(run.rankings, judged, query_lang, doc_langs, depth)
            rows.append(PoolRow.of(query_lang, run, judged, measure, bias=bias))
    return PoolReport(collection.name, measure, tuple(channels), tuple(corpora), documents, tuple(rows))


# --- helpers -----------------------------------------------------------------------------------------


def _languages_of(
    searcher: Searcher, run: Mapping[str, Ranking], qrels: Qrels, depth: int
) -> dict[str, str | None]:
    """docid -> language (from the index's docstore) for the relevant documents and top hits lacking one."""
    wanted = {docid for judged in qrels.values() for docid, rel in judged.items() if rel > 0}
    for ranking in run.values():
        wanted.update(hit.docid for hit in ranking.hits[:depth] if not hit.lang)
    docs = searcher.docstore.get_many(wanted)
    absent = wanted - set(docs)
    if absent:
        logger.warning(
            "%d judged documents are not in the pool index (e.g. %s)", len(absent), sorted(absent)[:3]
        )
    return {docid: doc.lang for docid, doc in docs.items()}


def _unique(langs: Sequence[str], what: str) -> list[str]:
    if isinstance(langs, str):
        langs = [langs]
    chosen = [lang.strip() for lang in langs if lang and lang.strip()]
    if not chosen:
        raise EvalError(f"no {what} languages given; name at least one (e.g. en,de)")
    return list(dict.fromkeys(chosen))


def _config(config: IndexConfig | None, channels: Sequence[str]) -> IndexConfig:
    if not channels:
        raise EvalError("no channels given; name at least one (e.g. bm25)")
    if config is None:
        return IndexConfig(channels=tuple(channels))
    lacking = [channel for channel in channels if channel not in config.channels]
    if lacking:
        raise EvalError(f"channels {lacking} are not in the index config's channels {list(config.channels)}")
    return config
