"""Regenerate the result tables in docs/RESULTS.md: every system, every task, baselines in the same run.

    python -m xlir.eval.reproduce --data ../shared/data                 # all tasks (hours of CPU on 2 cores)
    python -m xlir.eval.reproduce --tasks xquad-pairs --check           # and compare with eval/regressions.json

Systems: Pyserini BM25 used directly and mE5-small used directly through sentence-transformers (the
baselines), then each xlir channel (bm25, dense, sparse, multivector) and the fused first stage (RRF over
the channels, what ``Searcher`` returns by default). Tasks:

- ``xquad-pairs``: XQuAD cross-lingual pairs (queries in X, paragraphs in Y), nDCG@10 per pair.
- ``xquad-pool``: all 12 XQuAD corpora as one index; nDCG@10 and language bias per query language;
  build time, size and query latency per channel (this index is built fresh in every run).
- ``tatoeba``: every Tatoeba language X -> its English side: accuracy@1 and nDCG@10 per language, every
  system on every language.
- ``rerank``: the fused first stage vs fused + rerank (top 100) on fixed query subsets of the three
  above (:mod:`xlir.eval.rerank_eval`), with significance tests, checkpoint averaging vs last, and latency.
- ``dense-throughput``, ``multivector``: the dense channel's encoding overhead; the late-interaction
  channel's own study (trained head vs raw states, bytes per token, MaxSim latency).

Each task's table replaces its own section of the results file as soon as it is done; ``--check``
compares the measured means with ``eval/regressions.json`` (the 2CR idea: expected scores are data) and
exits 1 on a difference beyond the tolerance there. Each task's entry there holds the arguments that
reproduce it (``args``) and its expected means (``expected``); ``--update-expected`` writes both, and the
slow test ``tests/test_regression.py`` reruns each entry's own command.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from xlir.eval.collection import Collection
from xlir.eval.grid import cached_index, language_bias
from xlir.eval.metrics import evaluate
from xlir.eval.results import replace_section
from xlir.indexing.channels.multivector.searcher import MultiVectorSearcher
from xlir.indexing.config import IndexConfig, MultiVectorConfig
from xlir.models.encoders.tokens import HFTokenEncoder, TokenEncoder
from xlir.models.paths import xlir_home
from xlir.retrieval.fusion import rrf
from xlir.retrieval.ranking import Ranking
from xlir.retrieval.searcher import Searcher

log = logging.getLogger("xlir.eval.reproduce")
T = TypeVar("T")

TASKS = ("xquad-pairs", "xquad-pool", "tatoeba", "rerank", "dense-throughput", "multivector")
XQUAD_PAIRS = (
    ("de", "en"),
    ("zh", "en"),
    ("ar", "en"),
    ("th", "en"),
    ("hi", "en"),
    ("en", "de"),
    ("en", "zh"),
)
TATOEBA_FOCUS = ("fra", "cmn", "ara", "tur")
CHANNELS = ("bm25", "dense", "sparse", "multivector")
#: Systems shown in the per-language Tatoeba table (the others are in the means).
TATOEBA_PER_LANGUAGE = (
    "Pyserini BM25 (direct)",
    "mE5-small (direct)",
    "xlir dense",
    "xlir sparse",
    "xlir multivector",
    "xlir fused",
)
DEPTH = 100
REGRESSIONS = Path(__file__).with_name("regressions.json")

Run = dict[str, Ranking]


# --- baselines -----------------------------------------------------------------------------------------


class PyseriniBM25:
    """Pyserini used directly: a LuceneIndexer over one corpus with its language's analyzer, LuceneSearcher."""

    def __init__(self, corpus: Path, lang: str, work: Path) -> None:
        from xlir.eval.bench_bm25 import pyserini_index, pyserini_searcher
        from xlir.indexing.analyzers import LUCENE_ANALYZERS

        self.lang = lang
        pyserini_index({lang: corpus}, work)
        self._searcher = pyserini_searcher(work / lang, lang) if lang in LUCENE_ANALYZERS else None
        if self._searcher is None:  # the neutral analyzer: same Java analyzer object xlir uses
            from pyserini.search.lucene import LuceneSearcher

            from xlir.indexing.analyzers import analyzer_for, java_analyzer

            self._searcher = LuceneSearcher(str(work / lang))
            self._searcher.object.set_analyzer(java_analyzer(analyzer_for(lang)))
            self._searcher.set_bm25(0.9, 0.4)

    def run(self, topics: Mapping[str, str]) -> Run:
        from xlir.indexing.analyzers import analyzer_for, prepare_text

        analyzer = analyzer_for(self.lang)
        return {
            qid: Ranking.from_scores(
                "pyserini",
                [(h.docid, h.score) for h in self._searcher.search(prepare_text(analyzer, text), DEPTH)],
            )
            for qid, text in topics.items()
        }


class PyseriniPool:
    """Pyserini used directly over a multilingual pool: one index per document language, each with its
    language's analyzer, the query run against every one and the hits merged by BM25 score."""

    def __init__(self, corpora: Mapping[str, Path], work: Path) -> None:
        self._systems = [PyseriniBM25(path, lang, work / lang) for lang, path in corpora.items()]

    def run(self, topics: Mapping[str, str]) -> Run:
        per_language = [system.run(topics) for system in self._systems]
        return {
            qid: Ranking.from_scores(
                "pyserini",
                sorted(
                    ((h.docid, h.score) for run in per_language for h in run[qid].hits),
                    key=lambda pair: -pair[1],
                )[:DEPTH],
            )
            for qid in topics
        }


class E5Direct:
    """multilingual-e5-small through sentence-transformers, used directly: cosine over all documents."""

    def __init__(self) -> None:
        from xlir.models.registry import load_sentence_transformer

        self.model = load_sentence_transformer()

    def encode(self, texts: list[str], prompt: str) -> np.ndarray:
        return self.model.encode(
            texts, prompt_name=prompt, batch_size=32, normalize_embeddings=True, show_progress_bar=False
        )

    def run(self, topics: Mapping[str, str], doc_ids: list[str], doc_vectors: np.ndarray) -> Run:
        qids = list(topics)
        scores = self.encode([topics[q] for q in qids], "query") @ doc_vectors.T
        run: Run = {}
        for qid, row in zip(qids, scores, strict=True):
            top = np.argsort(-row)[:DEPTH]
            run[qid] = Ranking.from_scores("e5", [(doc_ids[i], float(row[i])) for i in top])
        return run


def read_corpus(path: Path) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            doc = json.loads(line)
            ids.append(doc["id"])
            texts.append(doc["text"])
    return ids, texts


# --- xlir systems ----------------------------------------------------------------------------------------


def xlir_runs(index: Path, topics: Mapping[str, str], channels: Sequence[str] = CHANNELS) -> dict[str, Run]:
    """One run per channel, the fused run exactly as ``Searcher`` returns it, and fusion variants."""
    runs: dict[str, Run] = {}
    with Searcher(index) as searcher:
        for channel in channels:
            runs[f"xlir {channel}"] = searcher.rankings(topics, k=DEPTH, channels=[channel])
        # What the product returns: every channel, BM25 limited to the query's language (Searcher._scope);
        # the channels searched the same way as alone are not searched again.
        runs["xlir fused"] = searcher.rankings(
            topics, k=DEPTH, searched={c: runs[f"xlir {c}"] for c in channels}
        )
    qids = list(topics)
    if "bm25" in channels:
        runs["xlir rrf, bm25 unscoped"] = {
            q: rrf([runs[f"xlir {c}"][q] for c in channels]).top(DEPTH) for q in qids
        }
    if "dense" in channels and "sparse" in channels:
        runs["xlir fused dense+sparse"] = {
            q: rrf([runs["xlir dense"][q], runs["xlir sparse"][q]]).top(DEPTH) for q in qids
        }
    return runs


def ndcg(run: Run, qrels: Mapping[str, Mapping[str, int]]) -> float:
    return evaluate(run, qrels, ["nDCG@10"])["nDCG@10"]


# --- tasks -----------------------------------------------------------------------------------------------


def xquad_pairs(data: Path, cache: Path, work: Path, limit: int | None) -> tuple[str, dict[str, float]]:
    xquad = Collection(data / "xquad")
    config = IndexConfig(channels=CHANNELS)
    e5 = E5Direct()
    doc_vectors: dict[str, tuple[list[str], np.ndarray]] = {}
    pyserini: dict[str, PyseriniBM25] = {}
    table: dict[str, dict[str, float]] = {}
    encode_rates: list[tuple[str, float, float]] = []
    for query_lang, doc_lang in XQUAD_PAIRS:
        topics, corpus, qrels = xquad.pair(query_lang, doc_lang)
        topics = _limit(topics, limit)
        qrels = _judged(qrels, topics)
        index = cached_index(xquad, [doc_lang], cache, config, name=f"xquad-{doc_lang}")
        if doc_lang not in doc_vectors:
            ids, texts = read_corpus(corpus)
            started = time.perf_counter()
            doc_vectors[doc_lang] = (ids, e5.encode(texts, "passage"))
            dense = json.loads((index / "manifest.json").read_text())["channels"]["dense"]
            encode_rates.append(
                (doc_lang, len(ids) / (time.perf_counter() - started), dense["docs_per_second"])
            )
            pyserini[doc_lang] = PyseriniBM25(corpus, doc_lang, work / f"pyserini-{doc_lang}")
        runs = {
            "Pyserini BM25 (direct)": pyserini[doc_lang].run(topics),
            "mE5-small (direct)": e5.run(topics, *doc_vectors[doc_lang]),
            **xlir_runs(index, topics),
        }
        pair = f"{query_lang}:{doc_lang}"
        for system, run in runs.items():
            table.setdefault(system, {})[pair] = ndcg(run, qrels)
        log.info("%s: %s", pair, {s: round(v[pair], 3) for s, v in table.items()})
    pairs = [f"{q}:{d}" for q, d in XQUAD_PAIRS]
    lines = _pair_table(table, pairs, "nDCG@10")
    fused, dense = table["xlir fused"], table["xlir dense"]
    lines += [
        "",
        "Fused minus dense, per pair: " + ", ".join(f"{p} {fused[p] - dense[p]:+.3f}" for p in pairs),
    ]
    lines += [
        "",
        "Dense encoding inside an xlir index build vs sentence-transformers used directly on the same "
        "documents (this run; the xlir figure is from when its cached index was built):",
        "",
        "| corpus | direct docs/s | xlir build docs/s |",
        "|---|---:|---:|",
        *[f"| {lang} | {direct:.1f} | {ours:.1f} |" for lang, direct, ours in encode_rates],
    ]
    means = {system: statistics.mean(v.values()) for system, v in table.items()}
    return "\n".join(lines), means


def xquad_pool(
    data: Path, cache: Path, work: Path, limit: int | None, reuse: bool = False
) -> tuple[str, dict[str, float]]:
    from xlir.indexing.manifest import Manifest

    xquad = Collection(data / "xquad")
    pool = xquad.pool()
    # built fresh (its build time and size are measured) and left in the cache for the rerank task;
    # ``reuse`` takes a cached build as it is, and the efficiency table then says when that build ran
    config = IndexConfig(channels=CHANNELS)
    target = cached_index(xquad, xquad.corpus_names(), cache, config, "xquad-pool", fresh=not reuse)
    manifest = Manifest.read(target)
    built = time.strftime("%Y-%m-%d %H:%M", time.localtime((target / "manifest.json").stat().st_mtime))
    langs = xquad.query_languages()
    # the baselines over the same pool: Pyserini per language merged by score, mE5 over every paragraph
    corpora = {lang: xquad.corpus_path(lang) for lang in xquad.document_languages()}
    pyserini = PyseriniPool(corpora, work / "pyserini-pool")
    e5 = E5Direct()
    ids, texts = [], []
    for path in corpora.values():
        more_ids, more_texts = read_corpus(path)
        ids += more_ids
        texts += more_texts
    started = time.perf_counter()
    doc_vectors = e5.encode(texts, "passage")
    direct = len(texts) / (time.perf_counter() - started)
    scores: dict[str, dict[str, float]] = {}
    bias: dict[str, dict[str, float]] = {}
    latency: dict[str, list[float]] = {}
    with Searcher(target) as searcher:
        doc_langs = {doc.id: doc.lang for doc in searcher.docstore}
        for lang in langs:
            topics = _limit(xquad.queries(lang), limit)
            qrels = _judged(pool.qrels, topics)
            runs = {
                "Pyserini BM25 (direct)": pyserini.run(topics),
                "mE5-small (direct)": e5.run(topics, ids, doc_vectors),
                **xlir_runs(target, topics),
            }
            for system, run in runs.items():
                scores.setdefault(system, {})[lang] = ndcg(run, qrels)
                bias.setdefault(system, {})[lang] = language_bias(run, qrels, lang, doc_langs).bias
        sample = list(_limit(xquad.queries("en"), 200).values())
        for combo in [[c] for c in CHANNELS] + [list(CHANNELS)]:
            latency["+".join(combo)], _ = _timed(
                lambda text, combo=combo: searcher.ranking(text, k=10, channels=combo), sample
            )
    lines = _pair_table(scores, langs, "nDCG@10, query language -> all 12 corpora")
    lines += [
        "",
        *_pair_table(bias, langs, "language bias (0 = none, 1 = top 10 all in the query's language)"),
    ]
    lines += [
        "",
        f"Efficiency (this pool index, {manifest.documents:,} documents, "
        + (f"a cached build of {built} reused (--reuse-pool-index)):" if reuse else "built in this run):"),
        "",
        "| channel | build s | docs/s | size MB | bytes/doc |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, details in manifest.channels.items():
        seconds, size = details["build_seconds"], details["bytes"]
        lines.append(
            f"| {name} | {seconds:.1f} | {manifest.documents / seconds:,.1f} | {size / 1e6:.1f} | "
            f"{size / manifest.documents:,.0f} |"
        )
    lines += ["", "| channels | p50 ms | p95 ms |", "|---|---:|---:|"]
    for combo, times in latency.items():
        lines.append(f"| {combo} | {np.percentile(times, 50):.1f} | {np.percentile(times, 95):.1f} |")
    inside = manifest.documents / manifest.channels["dense"]["build_seconds"]
    lines += [
        "",
        f"Dense encoding throughput, same {len(texts):,} texts, same run: sentence-transformers used directly "
        f"{direct:.1f} docs/s, inside the xlir build (encoding + FAISS) {inside:.1f} docs/s, "
        f"ratio {inside / direct:.2f}.",
    ]
    means = {system: statistics.mean(v.values()) for system, v in scores.items()}
    return "\n".join(lines), means


def tatoeba(
    data: Path,
    cache: Path,
    work: Path,
    limit: int | None,
    channels: Sequence[str] = CHANNELS,
    only: Sequence[str] | None = None,
) -> tuple[str, dict]:
    """Every language -> its English side, every system on every language: accuracy@1 and nDCG@10."""
    tatoeba = Collection(data / "tatoeba")
    e5 = E5Direct()
    acc: dict[str, dict[str, float]] = {}
    ndcg10: dict[str, dict[str, float]] = {}
    languages = list(only) if only else tatoeba.query_languages()
    channels = tuple(channels)
    for lang in languages:
        topics, corpus, qrels = tatoeba.pair(lang, "eng")
        topics = _limit(topics, limit)
        qrels = _judged(qrels, topics)
        index = cached_index(
            tatoeba, [corpus.stem], cache, IndexConfig(channels=channels), name=f"tatoeba-{lang}"
        )
        ids, texts = read_corpus(corpus)
        runs = {
            "Pyserini BM25 (direct)": PyseriniBM25(corpus, "en", work / f"pyserini-tatoeba-{lang}").run(
                topics
            ),
            "mE5-small (direct)": e5.run(topics, ids, e5.encode(texts, "passage")),
            **(
                xlir_runs(index, topics, channels)
                if len(channels) > 1
                else _single(index, topics, channels[0])
            ),
        }
        shutil.rmtree(work / f"pyserini-tatoeba-{lang}", ignore_errors=True)
        for system, run in runs.items():
            result = evaluate(run, qrels, ["Success@1", "nDCG@10"])
            acc.setdefault(system, {})[lang] = result["Success@1"]
            ndcg10.setdefault(system, {})[lang] = result["nDCG@10"]
        log.info("tatoeba %s: %s", lang, {s: round(v[lang], 3) for s, v in acc.items() if lang in v})
    complete = [s for s in acc if len(acc[s]) == len(languages)]
    lines = [
        f"All {len(languages)} languages -> English, every system on every language (mean over languages):",
        "",
        "| system | languages | accuracy@1 | nDCG@10 |",
        "|---|---:|---:|---:|",
        *[
            f"| {s} | {len(languages)} | {statistics.mean(acc[s].values()):.3f} | "
            f"{statistics.mean(ndcg10[s].values()):.3f} |"
            for s in complete
        ],
    ]
    focus = [lang for lang in TATOEBA_FOCUS if lang in languages]
    if focus:
        lines += ["", *_pair_table(acc, focus, "accuracy@1, X -> English (focus languages)")]
        lines += ["", *_pair_table(ndcg10, focus, "nDCG@10, X -> English (focus languages)")]
    shown = [s for s in complete if s in TATOEBA_PER_LANGUAGE]
    lines += [
        "",
        "accuracy@1 per language:",
        "",
        "| language | " + " | ".join(s.replace("xlir ", "") for s in shown) + " |",
        "|---|" + "---:|" * len(shown),
        *[f"| {lang} | " + " | ".join(f"{acc[s][lang]:.3f}" for s in shown) + " |" for lang in languages],
    ]
    means = {f"{s} acc@1": statistics.mean(acc[s].values()) for s in complete}
    means.update({f"{s} nDCG@10": statistics.mean(ndcg10[s].values()) for s in complete})
    return "\n".join(lines), means


def dense_throughput(
    data: Path, work: Path, limit: int | None, rounds: int = 2
) -> tuple[str, dict[str, float]]:
    """Encoding inside an xlir build vs the same model encoding the same texts directly, alternating."""
    from xlir.indexing.builder import build_index
    from xlir.indexing.documents import Document

    xquad = Collection(data / "xquad")
    docs = [
        Document(id=doc_id, text=text, lang=lang)
        for lang in ("en", "de", "zh")
        for doc_id, text in zip(*read_corpus(xquad.corpus_path(lang)), strict=True)
    ][: limit or 500]
    e5 = E5Direct()
    texts = [doc.text for doc in docs]
    direct, inside = [], []
    for round_ in range(rounds):
        started = time.perf_counter()
        e5.encode(texts, "passage")
        direct.append(len(texts) / (time.perf_counter() - started))
        manifest = build_index(docs, work / f"dense-{round_}", IndexConfig(channels=("dense",)))
        inside.append(len(texts) / manifest.channels["dense"]["build_seconds"])
    ratio = statistics.median(inside) / statistics.median(direct)
    body = (
        f"{len(texts)} XQuAD paragraphs (en, de, zh), batch 32, CPU, {rounds} alternating rounds, medians: "
        f"sentence-transformers used directly {statistics.median(direct):.1f} docs/s; the dense channel inside "
        f"`build_index` (encoding + FAISS) {statistics.median(inside):.1f} docs/s; ratio {ratio:.2f}."
    )
    return body, {}  # timings are not regression data: too noisy on shared CPUs


# --- the multivector (late-interaction) channel: issue 5's reproduction ------------------------------

MV_HEAD = "xlir multivector, trained head"
MV_RAW = "xlir multivector, raw states (untrained MaxSim)"
MV_EXHAUSTIVE = "xlir multivector, trained head, all documents re-scored (diagnostic)"
MV_CONFIGS = {
    # The trained head is the channel's default (head="auto"); dense rides in the same index.
    MV_HEAD: IndexConfig(channels=("multivector", "dense")),
    MV_RAW: IndexConfig(channels=("multivector",), multivector=MultiVectorConfig(head=None)),
}
MV_SUFFIX = {MV_HEAD: "mv", MV_RAW: "mv-raw"}
MV_POOL_CONFIG = IndexConfig(channels=("multivector",))
#: Hits asked of the multivector channel: the search default (the re-scored set is max(k, ndocs / 4), so
#: asking for 100 would re-score more documents than a user's search does; nDCG@10 needs 10).
MV_K = 10
MV_LATENCY_QUERIES = 1000
MV_E2E_QUERIES = 100
#: Tatoeba latency corpus: this many English-side and this many source sentences per language (0 = all).
MV_TATOEBA_PER_LANG = (
    0  # 0 = the whole Tatoeba corpus (~178k texts; about 15 min to build and time on 2 cores)
)


class MultiVectorSystems:
    """The multivector channel with the trained head and with raw states, and dense, over one corpus.

    Both multivector indexes are real builds (``cached_index``); queries are searched with each index's
    own :class:`~xlir.indexing.channels.multivector.searcher.MultiVectorSearcher` at its default settings. A query's mE5 token
    states are computed once and projected by each searcher's encoder (head, or normalization only), which
    is exactly what ``batch_search`` does in two passes.
    """

    def __init__(self, collection: Collection, corpus: str, cache: Path, name: str) -> None:
        self.indexes = {
            system: cached_index(collection, [corpus], cache, config, name=f"{name}-{MV_SUFFIX[system]}")
            for system, config in MV_CONFIGS.items()
        }
        self.searchers: dict[str, MultiVectorSearcher] = {}
        for system, index in self.indexes.items():
            details = json.loads((index / "manifest.json").read_text())["channels"]["multivector"]
            self.searchers[system] = MultiVectorSearcher(index / "multivector", details)
        self.dense = Searcher(self.indexes[MV_HEAD], channels=["dense"])

    def runs(
        self, topics: Mapping[str, str], states: list[np.ndarray], exhaustive: bool = False
    ) -> dict[str, Run]:
        qids = list(topics)
        runs: dict[str, Run] = {}
        for system, searcher in self.searchers.items():
            vectors = _project(searcher, states)
            runs[system] = {q: searcher.search_vectors(v, MV_K) for q, v in zip(qids, vectors, strict=True)}
            if exhaustive and system == MV_HEAD:
                runs[MV_EXHAUSTIVE] = _exhaustive_maxsim(searcher, qids, vectors)
        runs["xlir dense"] = self.dense.rankings(topics, k=DEPTH, channels=["dense"])
        return runs

    def close(self) -> None:
        for searcher in self.searchers.values():
            searcher.close()
        self.dense.close()


class QueryStates:
    """Raw mE5 token states of topic sets, computed once per (collection, language) and shared by systems."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], dict[str, np.ndarray]] = {}

    def get(
        self, systems: MultiVectorSystems, key: tuple[str, str], topics: Mapping[str, str]
    ) -> list[np.ndarray]:
        head, raw = systems.searchers[MV_HEAD].encoder, systems.searchers[MV_RAW].encoder
        if not isinstance(head, HFTokenEncoder) or not isinstance(raw, HFTokenEncoder):
            raise TypeError(
                "the multivector task compares mE5 token-state encoders ('hf'); rebuild with encoder 'hf'"
            )
        if _query_settings(head) != _query_settings(raw):
            raise RuntimeError(
                "the trained-head and raw multivector indexes encode queries differently "
                f"({_query_settings(head)} vs {_query_settings(raw)}); rebuild both with the same model settings"
            )
        known = self._states.setdefault(key, {})
        missing = [qid for qid in topics if qid not in known]
        if missing:
            started = time.perf_counter()
            states = head.token_states([topics[q] for q in missing], is_query=True)
            known.update(zip(missing, states, strict=True))
            log.info("%s: %d query token states in %.0f s", key, len(missing), time.perf_counter() - started)
        return [known[qid] for qid in topics]


def _project(searcher: MultiVectorSearcher, states: list[np.ndarray]) -> list[np.ndarray]:
    """Raw token states as ``searcher``'s encoder turns them into query vectors (its head, then unit rows)."""
    encoder = searcher.encoder
    if not isinstance(encoder, HFTokenEncoder):
        raise TypeError(f"{searcher.directory} was not built with an mE5 token-state encoder ('hf')")
    return encoder.project(states)


def _query_settings(encoder: TokenEncoder) -> dict[str, object]:
    described = encoder.describe()
    return {k: described.get(k) for k in ("model_path", "prompts", "query_augment", "query_max_length")}


def _exhaustive_maxsim(searcher: MultiVectorSearcher, qids: list[str], vectors: list[np.ndarray]) -> Run:
    """Every document re-scored by MaxSim over its decompressed tokens (no candidate stage): the compression's
    own loss, separated from the pruning's."""
    every = np.arange(len(searcher.docids))
    run: Run = {}
    for qid, v in zip(qids, vectors, strict=True):
        scores = searcher.maxsim(v, every)
        top = np.argsort(-scores, kind="stable")[:MV_K]
        run[qid] = Ranking.from_scores(
            "multivector",
            [(searcher.docids[i], float(scores[i])) for i in top],
        )
    return run


def multivector(
    data: Path, cache: Path, limit: int | None, tatoeba_per_lang: int = MV_TATOEBA_PER_LANG
) -> tuple[str, dict[str, float]]:
    """Issue 5: the multivector channel (trained head, raw states) against dense, index size and latency."""
    xquad, tatoeba_ = Collection(data / "xquad"), Collection(data / "tatoeba")
    states = QueryStates()
    systems = (MV_HEAD, MV_RAW, "xlir dense")
    xquad_ndcg: dict[str, dict[str, float]] = {}
    opened: dict[str, MultiVectorSystems] = {}
    encoded: dict[str, list[np.ndarray]] = {}  # query language -> head-projected query vectors (latency)
    try:
        for query_lang, doc_lang in XQUAD_PAIRS:
            topics, _, qrels = xquad.pair(query_lang, doc_lang)
            topics = _limit(topics, limit)
            qrels = _judged(qrels, topics)
            if doc_lang not in opened:
                opened[doc_lang] = MultiVectorSystems(xquad, doc_lang, cache, f"xquad-{doc_lang}")
            pair_states = states.get(opened[doc_lang], ("xquad", query_lang), topics)
            encoded.setdefault(query_lang, _project(opened[doc_lang].searchers[MV_HEAD], pair_states))
            pair = f"{query_lang}:{doc_lang}"
            for system, run in opened[doc_lang].runs(topics, pair_states).items():
                xquad_ndcg.setdefault(system, {})[pair] = ndcg(run, qrels)
            log.info("multivector %s: %s", pair, {s: round(v[pair], 3) for s, v in xquad_ndcg.items()})
        sizes = [_mv_size(f"XQuAD {lang}", s.searchers[MV_HEAD]) for lang, s in opened.items()]
        sizes += [_mv_size(f"XQuAD {lang}, raw", s.searchers[MV_RAW]) for lang, s in opened.items()]
    finally:
        for opened_systems in opened.values():
            opened_systems.close()

    acc: dict[str, dict[str, float]] = {}
    tat_ndcg: dict[str, dict[str, float]] = {}
    tatoeba_vectors: list[list[np.ndarray]] = []
    for lang in TATOEBA_FOCUS:
        topics, corpus, qrels = tatoeba_.pair(lang, "eng")
        topics = _limit(topics, limit)
        qrels = _judged(qrels, topics)
        lang_systems = MultiVectorSystems(tatoeba_, corpus.stem, cache, f"tatoeba-{lang}")
        try:
            lang_states = states.get(lang_systems, ("tatoeba", lang), topics)
            tatoeba_vectors.append(_project(lang_systems.searchers[MV_HEAD], lang_states))
            for system, run in lang_systems.runs(topics, lang_states).items():
                result = evaluate(run, qrels, ["Success@1", "nDCG@10"])
                acc.setdefault(system, {})[lang] = result["Success@1"]
                tat_ndcg.setdefault(system, {})[lang] = result["nDCG@10"]
            if lang == TATOEBA_FOCUS[0]:
                sizes.append(_mv_size(f"Tatoeba eng-for-{lang}", lang_systems.searchers[MV_HEAD]))
        finally:
            lang_systems.close()
        log.info("multivector tatoeba %s: %s", lang, {s: round(v[lang], 3) for s, v in acc.items()})

    # Latency: queries already encoded above, searched one at a time over the pooled indexes.
    latency_rows = []
    pool = cached_index(xquad, xquad.corpus_names(), cache, MV_POOL_CONFIG, name="xquad-pool-mv")
    xquad_latency = _round_robin(list(encoded.values()), MV_LATENCY_QUERIES)
    xquad_texts = _round_robin([list(xquad.queries(q).values()) for q in encoded], MV_E2E_QUERIES)
    latency_rows.append(_mv_latency("XQuAD, all 12 corpora", pool, xquad_latency, xquad_texts, sizes))
    sample = _tatoeba_pool(tatoeba_, cache, tatoeba_per_lang)
    tatoeba_latency = _round_robin(tatoeba_vectors, MV_LATENCY_QUERIES)
    tatoeba_texts = _round_robin([list(tatoeba_.queries(q).values()) for q in TATOEBA_FOCUS], MV_E2E_QUERIES)
    latency_rows.append(
        _mv_latency(_tatoeba_pool_label(tatoeba_per_lang), sample, tatoeba_latency, tatoeba_texts, sizes)
    )

    pairs = [f"{q}:{d}" for q, d in XQUAD_PAIRS]
    exhaustive = _head_exhaustive()
    lines = _pair_table({s: xquad_ndcg[s] for s in systems}, pairs, "XQuAD nDCG@10, queries:documents")
    if exhaustive and not limit:
        lines.append(
            "| trained head, exhaustive uncompressed MaxSim (head.json, its own script) | "
            + " | ".join(f"{exhaustive[p]:.3f}" for p in pairs)
            + f" | {statistics.mean(exhaustive[p] for p in pairs):.3f} |"
        )
    head, raw, dense = xquad_ndcg[MV_HEAD], xquad_ndcg[MV_RAW], xquad_ndcg["xlir dense"]
    lines += [
        "",
        "Trained head minus raw states, per pair: "
        + ", ".join(f"{p} {head[p] - raw[p]:+.3f}" for p in pairs),
        "",
        "Trained head minus dense, per pair: " + ", ".join(f"{p} {head[p] - dense[p]:+.3f}" for p in pairs),
        "",
        *_pair_table({s: acc[s] for s in systems}, list(TATOEBA_FOCUS), "Tatoeba accuracy@1, X -> English"),
        "",
        *_pair_table({s: tat_ndcg[s] for s in systems}, list(TATOEBA_FOCUS), "Tatoeba nDCG@10, X -> English"),
        "",
        "Index size (codes + packed residuals per token, from the manifest; the whole channel directory, "
        "codec and inverted lists included, divided by tokens), against fp16 token vectors (384 x 2 bytes):",
        "",
        "| index | documents | tokens | centroids | nbits | bytes/token | channel bytes/token | fp16 bytes/token "
        "| ratio | reconstruction cosine |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {s['name']} | {s['documents']:,} | {s['tokens']:,} | {s['centroids']:,} | {s['nbits']} | "
            f"{s['bytes_per_token']} | {s['disk_per_token']:.1f} | {s['fp16']} | {s['fp16'] / s['bytes_per_token']:.1f}x "
            f"| {s['cosine']:.3f} |"
            for s in sizes
        ],
        "",
        f"MaxSim search latency, trained head, default settings (ncells, ndocs, cell_fraction as recorded), k=10, "
        f"one query at a time: search = `search_vectors` on {MV_LATENCY_QUERIES:,} already-encoded queries "
        f"(the XQuAD queries of {', '.join(encoded)}; the Tatoeba queries of {', '.join(TATOEBA_FOCUS)}, "
        f"round-robin); end to end = `search(text)` (encoding included) on the first {MV_E2E_QUERIES}:",
        "",
        "| corpus | documents | tokens | search p50 ms | search p95 ms | search CPU ms/query | "
        "end-to-end p50 ms | end-to-end p95 ms | end-to-end CPU ms/query |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *latency_rows,
        "",
        "CPU ms/query is process CPU time (all threads) over the loop divided by the queries; wall-clock "
        "percentiles include waiting for a CPU on a shared machine.",
    ]
    means = {f"{s} XQuAD nDCG@10": statistics.mean(xquad_ndcg[s].values()) for s in systems}
    means.update({f"{s} Tatoeba acc@1": statistics.mean(acc[s].values()) for s in systems})
    means.update({f"{s} Tatoeba nDCG@10": statistics.mean(tat_ndcg[s].values()) for s in systems})
    return "\n".join(lines), means


def _mv_size(name: str, searcher: MultiVectorSearcher) -> dict[str, object]:
    """Bytes per token of a built multivector channel: the manifest's figure and the directory's."""
    details, directory = searcher.details, searcher.directory
    disk = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
    return {
        "name": name,
        "documents": details["documents"],
        "tokens": details["tokens"],
        "centroids": details["centroids"],
        "nbits": details["nbits"],
        "bytes_per_token": details["bytes_per_token"],
        "disk_per_token": disk / details["tokens"],
        "fp16": details["fp16_bytes_per_token"],
        "cosine": details["reconstruction_cosine"],
    }


def _timed(call: Callable[[T], object], items: Sequence[T]) -> tuple[list[float], float]:
    """``call`` on each item in turn: wall milliseconds per call, and process CPU milliseconds per call."""
    wall = []
    cpu_started = time.process_time()
    for item in items:
        started = time.perf_counter()
        call(item)
        wall.append((time.perf_counter() - started) * 1000)
    return wall, (time.process_time() - cpu_started) * 1000 / len(items)


def _mv_latency(
    name: str, index: Path, vectors: list[np.ndarray], texts: list[str], sizes: list[dict[str, object]]
) -> str:
    """One latency row (and the index's size row appended to ``sizes``)."""
    details = json.loads((index / "manifest.json").read_text())["channels"]["multivector"]
    searcher = MultiVectorSearcher(index / "multivector", details)
    try:
        sizes.append(_mv_size(name, searcher))
        for v in vectors[:20]:  # warm-up: page in the memory-mapped codes and residuals
            searcher.search_vectors(v, 10)
        wall, cpu = _timed(lambda v: searcher.search_vectors(v, 10), vectors)
        e2e, e2e_cpu = _timed(lambda text: searcher.search(text, 10), texts)
    finally:
        searcher.close()
    return (
        f"| {name} | {details['documents']:,} | {details['tokens']:,} | {np.percentile(wall, 50):.1f} | "
        f"{np.percentile(wall, 95):.1f} | {cpu:.1f} | {np.percentile(e2e, 50):.1f} | {np.percentile(e2e, 95):.1f} | "
        f"{e2e_cpu:.1f} |"
    )


def _round_robin(groups: Sequence[Sequence[object]], n: int) -> list:
    """Up to ``n`` items taken from the groups in turn (first of each, then second of each, ...)."""
    out: list = []
    for i in range(max((len(g) for g in groups), default=0)):
        out += [g[i] for g in groups if i < len(g)]
    return out[:n]


def _tatoeba_pool_label(per_lang: int) -> str:
    if per_lang:
        return f"Tatoeba, 112 languages, {per_lang} English + {per_lang} source sentences each"
    return "Tatoeba, 112 languages, every English side and sentence"


def _tatoeba_pool(tatoeba_: Collection, cache: Path, per_lang: int) -> Path:
    """The multivector index over Tatoeba's English sides and source sentences (a per-language sample when
    ``per_lang`` > 0), built once under ``cache`` (keyed by the corpus files, the sample and the config)."""
    import hashlib

    from xlir.indexing.builder import build_index
    from xlir.indexing.documents import Document

    langs = tatoeba_.query_languages()
    sources = [tatoeba_.corpus_path("eng", lang) for lang in langs]
    sources += [tatoeba_.root / "queries" / f"{lang}.tsv" for lang in langs]
    key_source = {
        "files": [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in sources],
        "per_lang": per_lang,
        "config": MV_POOL_CONFIG.to_dict(),
    }
    key = hashlib.sha256(json.dumps(key_source, sort_keys=True).encode()).hexdigest()[:12]
    target = cache / f"tatoeba-pool{per_lang or 'all'}-mv-{key}"
    if (target / "manifest.json").is_file():
        return target

    def documents() -> Iterator[Document]:
        for lang in langs:
            ids, texts = read_corpus(tatoeba_.corpus_path("eng", lang))
            cut = per_lang or len(ids)
            for doc_id, text in zip(ids[:cut], texts[:cut], strict=True):
                yield Document(id=doc_id, text=text, lang="en")
            for qid, text in list(tatoeba_.queries(lang).items())[:cut]:
                yield Document(id=qid, text=text, lang=lang)

    log.info("building the Tatoeba multivector pool %s", target)
    build_index(documents(), target, MV_POOL_CONFIG, overwrite=True, sources=[str(p) for p in sources])
    return target


def _head_exhaustive() -> dict[str, float]:
    """The shipped head's XQuAD nDCG@10 as its head.json records it (exhaustive, uncompressed MaxSim)."""
    from xlir.models.encoders.tokens import DEFAULT_HEAD, HEADS_DIR

    path = HEADS_DIR / DEFAULT_HEAD / "head.json"
    if not path.is_file():
        return {}
    measured = json.loads(path.read_text()).get("measured", {})
    return dict(measured.get("xquad_ndcg10_exhaustive_maxsim", {}))


def _single(index: Path, topics: Mapping[str, str], channel: str) -> dict[str, Run]:
    with Searcher(index) as searcher:
        return {f"xlir {channel}": searcher.rankings(topics, k=DEPTH, channels=[channel])}


def _limit(topics: Mapping[str, str], limit: int | None) -> dict[str, str]:
    items = list(topics.items())
    return dict(items if limit is None else items[:limit])


def _cap(n: int, limit: int | None) -> int:
    """A task's own query count, never above ``--limit`` when one is given."""
    return n if limit is None else min(n, limit)


def _judged(
    qrels: Mapping[str, Mapping[str, int]], topics: Mapping[str, str]
) -> dict[str, Mapping[str, int]]:
    """The judgments of the topics that were run (a --limit run must not count the others as zeros)."""
    return {qid: qrels[qid] for qid in topics if qid in qrels}


def _pair_table(table: Mapping[str, Mapping[str, float]], columns: Sequence[str], title: str) -> list[str]:
    lines = [f"| {title} | " + " | ".join(columns) + " | mean |", "|---|" + "---:|" * (len(columns) + 1)]
    for system, values in table.items():
        if not all(c in values for c in columns):
            continue
        cells = " | ".join(f"{values[c]:.3f}" for c in columns)
        lines.append(f"| {system} | {cells} | {statistics.mean(values[c] for c in columns):.3f} |")
    return lines


# --- driver ----------------------------------------------------------------------------------------------


#: Options that say where things are on this machine, or what to do with the scores: not part of an
#: experiment's command in the regression file.
_LOCAL_OPTIONS = {"--tasks": True, "--data": True, "--cache": True, "--results": True}
_LOCAL_FLAGS = {"--check", "--update-expected", "--reuse-pool-index"}


def task_args(argv: Sequence[str], task: str) -> list[str]:
    """The arguments that reproduce ``task`` alone: ``--tasks task`` and every experiment option of ``argv``."""
    out, skip = ["--tasks", task], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in _LOCAL_FLAGS:
            continue
        if name in _LOCAL_OPTIONS:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def expected_scores(task: str) -> tuple[list[str], dict[str, float]]:
    """The regression file's entry for ``task``: its command's arguments and its expected means."""
    entry = json.loads(REGRESSIONS.read_text()).get(task, {})
    return list(entry.get("args", ["--tasks", task])), dict(entry.get("expected", {}))


def record_expected(task: str, args: list[str], means: Mapping[str, float]) -> None:
    """Write ``task``'s command and measured means into the regression file (the other tasks stay)."""
    regressions = json.loads(REGRESSIONS.read_text()) if REGRESSIONS.exists() else {"tolerance": 0.005}
    regressions[task] = {"args": args, "expected": {k: round(v, 4) for k, v in means.items()}}
    REGRESSIONS.write_text(json.dumps(regressions, indent=2) + "\n")


def check(task: str, means: Mapping[str, float]) -> list[str]:
    tolerance = json.loads(REGRESSIONS.read_text()).get("tolerance", 0.005)
    problems = []
    for system, value in expected_scores(task)[1].items():
        if system not in means:
            problems.append(f"{task}: {system} was not measured")
        elif abs(means[system] - value) > tolerance:
            problems.append(f"{task}: {system} {means[system]:.4f}, expected {value:.4f} +- {tolerance}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--results", type=Path, default=Path("docs/RESULTS.md"))
    parser.add_argument(
        "--tasks", default=",".join(TASKS), help=f"comma-separated subset of {', '.join(TASKS)}"
    )
    parser.add_argument(
        "--cache", type=Path, default=None, help="index cache (default $XLIR_HOME/eval-indexes)"
    )
    parser.add_argument("--limit", type=int, default=None, help="queries per topic set (a quick smoke run)")
    parser.add_argument(
        "--tatoeba-channels", default=",".join(CHANNELS), help="xlir channels run on the Tatoeba languages"
    )
    parser.add_argument(
        "--tatoeba-langs", default=None, help="comma-separated Tatoeba languages (default: all)"
    )
    parser.add_argument(
        "--mv-tatoeba-per-lang",
        type=int,
        default=MV_TATOEBA_PER_LANG,
        help="multivector latency over Tatoeba: English sides and sentences per language (0 = all ~178k texts)",
    )
    parser.add_argument(
        "--rerank-queries", type=int, default=30, help="rerank task: queries per XQuAD pair (a fixed stride)"
    )
    parser.add_argument(
        "--rerank-pool-queries", type=int, default=10, help="rerank task: queries per pool query language"
    )
    parser.add_argument(
        "--rerank-tatoeba-queries", type=int, default=25, help="rerank task: queries per Tatoeba language"
    )
    parser.add_argument(
        "--rerank-last-queries",
        type=int,
        default=10,
        help="rerank task: queries per XQuAD pair for the last checkpoint (vs the averaged one)",
    )
    parser.add_argument(
        "--reranker",
        default="default",
        help="rerank task: the reranker measured (a shipped name or a folder from `xlir train reranker`)",
    )
    parser.add_argument(
        "--reuse-pool-index",
        action="store_true",
        help="xquad-pool: search a cached pool index instead of building it anew (its build time is then "
        "the cached build's, and the table says so)",
    )
    parser.add_argument("--check", action="store_true", help="compare the means with eval/regressions.json")
    parser.add_argument("--update-expected", action="store_true", help="write the measured means as expected")
    args = parser.parse_args(argv)
    from xlir.eval.rerank_eval import rerank_task

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
    if args.update_expected and args.limit is not None:
        parser.error("--update-expected records full runs only; drop --limit")
    cache = args.cache or xlir_home() / "eval-indexes"
    argv = list(argv if argv is not None else sys.argv[1:])
    command = "python -m xlir.eval.reproduce " + " ".join(argv)
    problems: list[str] = []
    measured: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="xlir-reproduce-") as tmp:
        work = Path(tmp)
        runners: dict[str, Callable[[], tuple[str, dict[str, float]]]] = {
            "xquad-pairs": lambda: xquad_pairs(args.data, cache, work, args.limit),
            "xquad-pool": lambda: xquad_pool(args.data, cache, work, args.limit, args.reuse_pool_index),
            "dense-throughput": lambda: dense_throughput(args.data, work, args.limit),
            "multivector": lambda: multivector(args.data, cache, args.limit, args.mv_tatoeba_per_lang),
            "rerank": lambda: rerank_task(
                args.data,
                cache,
                CHANNELS,
                None,
                queries=_cap(args.rerank_queries, args.limit),
                pool_queries=_cap(args.rerank_pool_queries, args.limit),
                tatoeba_queries=_cap(args.rerank_tatoeba_queries, args.limit),
                last_queries=_cap(args.rerank_last_queries, args.limit),
                reranker_name=args.reranker,
            ),
            "tatoeba": lambda: tatoeba(
                args.data,
                cache,
                work,
                args.limit,
                args.tatoeba_channels.split(","),
                args.tatoeba_langs.split(",") if args.tatoeba_langs else None,
            ),
        }
        for task in tasks:
            started = time.perf_counter()
            body, means = runners[task]()
            minutes = (time.perf_counter() - started) / 60
            header = (
                f"## {task}\n\nCommand: `{command}` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores, "
                f"{minutes:.0f} min{', first ' + str(args.limit) + ' queries per set' if args.limit else ''}).\n\n"
            )
            if args.limit is None:
                replace_section(args.results, f"reproduce-{task}", header + body)
            else:
                print(header + body)
            measured[task] = means
            if args.check:
                problems += check(task, means)
            if args.update_expected:  # after each task, so a long run that is stopped keeps what it measured
                record_expected(task, task_args(argv, task), means)
    for problem in problems:
        print(f"REGRESSION {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
