"""The ``multivector`` task: the late-interaction channel's own study (issue 5's reproduction).

The channel with its trained head and with raw mE5 token states (untrained MaxSim), against dense, on the
XQuAD pairs and the Tatoeba focus languages; each index's size per token against fp16 vectors; MaxSim
search latency over the XQuAD pool and a Tatoeba pool (``--mv-tatoeba-per-lang`` sentences per language,
0 = all), already-encoded and end to end.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from xlir.eval.baselines import read_corpus
from xlir.eval.collection import Collection
from xlir.eval.grid import cached_index
from xlir.eval.metrics import evaluate
from xlir.eval.tasks.base import (
    Task,
    TaskContext,
    TaskResult,
    judged,
    means,
    ndcg,
    pair_names,
    pair_table,
    timed,
)
from xlir.eval.trec import Run
from xlir.indexing.builder import build_index
from xlir.indexing.channels.multivector.searcher import MultiVectorSearcher
from xlir.indexing.config import IndexConfig, MultiVectorConfig
from xlir.indexing.documents import Document
from xlir.indexing.ranking import Ranking
from xlir.models.encoders.heads import DEFAULT_HEAD, HEADS_DIR
from xlir.models.encoders.token_base import TokenEncoder
from xlir.models.encoders.tokens import HFTokenEncoder
from xlir.retrieval.searcher import Searcher

log = logging.getLogger(__name__)

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


class MultiVectorSystems:
    """The multivector channel with the trained head and with raw states, and dense, over one corpus.

    Both multivector indexes are real builds (``cached_index``); queries are searched with each index's
    own :class:`~xlir.indexing.channels.multivector.searcher.MultiVectorSearcher` at its default settings. A query's mE5 token
    states are computed once and projected by each searcher's encoder (head, or normalization only), which
    is exactly what ``batch_search`` does in two passes.
    """

    def __init__(
        self, collection: Collection, corpus: str, cache: Path, name: str, k: int, depth: int
    ) -> None:
        self.k, self.depth = k, depth
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
            runs[system] = {q: searcher.search_vectors(v, self.k) for q, v in zip(qids, vectors, strict=True)}
            if exhaustive and system == MV_HEAD:
                runs[MV_EXHAUSTIVE] = _exhaustive_maxsim(searcher, qids, vectors, self.k)
        runs["xlir dense"] = self.dense.rankings(topics, k=self.depth, channels=["dense"])
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


def _exhaustive_maxsim(
    searcher: MultiVectorSearcher, qids: list[str], vectors: list[np.ndarray], k: int
) -> Run:
    """Every document re-scored by MaxSim over its decompressed tokens (no candidate stage): the compression's
    own loss, separated from the pruning's."""
    every = np.arange(len(searcher.docids))
    out: Run = {}
    for qid, v in zip(qids, vectors, strict=True):
        scores = searcher.maxsim(v, every)
        top = np.argsort(-scores, kind="stable")[:k]
        out[qid] = Ranking.from_scores(
            "multivector",
            [(searcher.docids[i], float(scores[i])) for i in top],
        )
    return out


def run(context: TaskContext) -> TaskResult:
    """Issue 5: the multivector channel (trained head, raw states) against dense, index size and latency."""
    settings, cache, limit = context.settings, context.cache, context.limit
    focus, k, depth = settings.tatoeba_focus, settings.mv_k, settings.depth
    xquad, tatoeba_ = Collection(context.data / "xquad"), Collection(context.data / "tatoeba")
    states = QueryStates()
    systems = (MV_HEAD, MV_RAW, "xlir dense")
    xquad_ndcg: dict[str, dict[str, float]] = {}
    opened: dict[str, MultiVectorSystems] = {}
    encoded: dict[str, list[np.ndarray]] = {}  # query language -> head-projected query vectors (latency)
    try:
        for query_lang, doc_lang in settings.xquad_pairs:
            topics, _, qrels = xquad.pair(query_lang, doc_lang)
            topics = context.first(topics)
            qrels = judged(qrels, topics)
            if doc_lang not in opened:
                opened[doc_lang] = MultiVectorSystems(xquad, doc_lang, cache, f"xquad-{doc_lang}", k, depth)
            pair_states = states.get(opened[doc_lang], ("xquad", query_lang), topics)
            encoded.setdefault(query_lang, _project(opened[doc_lang].searchers[MV_HEAD], pair_states))
            pair = f"{query_lang}:{doc_lang}"
            for system, ranked in opened[doc_lang].runs(topics, pair_states).items():
                xquad_ndcg.setdefault(system, {})[pair] = ndcg(ranked, qrels)
            log.info("multivector %s: %s", pair, {s: round(v[pair], 3) for s, v in xquad_ndcg.items()})
        sizes = [_mv_size(f"XQuAD {lang}", s.searchers[MV_HEAD]) for lang, s in opened.items()]
        sizes += [_mv_size(f"XQuAD {lang}, raw", s.searchers[MV_RAW]) for lang, s in opened.items()]
    finally:
        for opened_systems in opened.values():
            opened_systems.close()

    acc: dict[str, dict[str, float]] = {}
    tat_ndcg: dict[str, dict[str, float]] = {}
    tatoeba_vectors: list[list[np.ndarray]] = []
    for lang in focus:
        topics, corpus, qrels = tatoeba_.pair(lang, "eng")
        topics = context.first(topics)
        qrels = judged(qrels, topics)
        lang_systems = MultiVectorSystems(tatoeba_, corpus.stem, cache, f"tatoeba-{lang}", k, depth)
        try:
            lang_states = states.get(lang_systems, ("tatoeba", lang), topics)
            tatoeba_vectors.append(_project(lang_systems.searchers[MV_HEAD], lang_states))
            for system, ranked in lang_systems.runs(topics, lang_states).items():
                result = evaluate(ranked, qrels, ["Success@1", "nDCG@10"])
                acc.setdefault(system, {})[lang] = result["Success@1"]
                tat_ndcg.setdefault(system, {})[lang] = result["nDCG@10"]
            if lang == focus[0]:
                sizes.append(_mv_size(f"Tatoeba eng-for-{lang}", lang_systems.searchers[MV_HEAD]))
        finally:
            lang_systems.close()
        log.info("multivector tatoeba %s: %s", lang, {s: round(v[lang], 3) for s, v in acc.items()})

    # Latency: queries already encoded above, searched one at a time over the pooled indexes.
    latency_rows = []
    pool = cached_index(xquad, xquad.corpus_names(), cache, MV_POOL_CONFIG, name="xquad-pool-mv")
    xquad_latency = _round_robin(list(encoded.values()), settings.mv_latency_queries)
    xquad_texts = _round_robin([list(xquad.queries(q).values()) for q in encoded], settings.mv_e2e_queries)
    latency_rows.append(_mv_latency("XQuAD, all 12 corpora", pool, xquad_latency, xquad_texts, sizes))
    sample = _tatoeba_pool(tatoeba_, cache, settings.mv_tatoeba_per_lang)
    tatoeba_latency = _round_robin(tatoeba_vectors, settings.mv_latency_queries)
    tatoeba_texts = _round_robin([list(tatoeba_.queries(q).values()) for q in focus], settings.mv_e2e_queries)
    latency_rows.append(
        _mv_latency(
            _tatoeba_pool_label(settings.mv_tatoeba_per_lang), sample, tatoeba_latency, tatoeba_texts, sizes
        )
    )

    pairs = pair_names(settings.xquad_pairs)
    exhaustive = _head_exhaustive()
    lines = pair_table({s: xquad_ndcg[s] for s in systems}, pairs, "XQuAD nDCG@10, queries:documents")
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
        *pair_table({s: acc[s] for s in systems}, list(focus), "Tatoeba accuracy@1, X -> English"),
        "",
        *pair_table({s: tat_ndcg[s] for s in systems}, list(focus), "Tatoeba nDCG@10, X -> English"),
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
        f"one query at a time: search = `search_vectors` on {settings.mv_latency_queries:,} already-encoded queries "
        f"(the XQuAD queries of {', '.join(encoded)}; the Tatoeba queries of {', '.join(focus)}, "
        f"round-robin); end to end = `search(text)` (encoding included) on the first {settings.mv_e2e_queries}:",
        "",
        "| corpus | documents | tokens | search p50 ms | search p95 ms | search CPU ms/query | "
        "end-to-end p50 ms | end-to-end p95 ms | end-to-end CPU ms/query |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *latency_rows,
        "",
        "CPU ms/query is process CPU time (all threads) over the loop divided by the queries; wall-clock "
        "percentiles include waiting for a CPU on a shared machine.",
    ]
    scores = means({s: xquad_ndcg[s] for s in systems}, "{} XQuAD nDCG@10")
    scores.update(means({s: acc[s] for s in systems}, "{} Tatoeba acc@1"))
    scores.update(means({s: tat_ndcg[s] for s in systems}, "{} Tatoeba nDCG@10"))
    return TaskResult("\n".join(lines), scores)


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
        wall, cpu = timed(lambda v: searcher.search_vectors(v, 10), vectors)
        e2e, e2e_cpu = timed(lambda text: searcher.search(text, 10), texts)
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
    path = HEADS_DIR / DEFAULT_HEAD / "head.json"
    if not path.is_file():
        return {}
    measured = json.loads(path.read_text()).get("measured", {})
    return dict(measured.get("xquad_ndcg10_exhaustive_maxsim", {}))


TASK = Task(
    "multivector",
    (
        "depth",
        "xquad_pairs",
        "tatoeba_focus",
        "mv_tatoeba_per_lang",
        "mv_k",
        "mv_latency_queries",
        "mv_e2e_queries",
    ),
    run,
)
