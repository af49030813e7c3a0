"""The ``xquad-pool`` task: all 12 XQuAD corpora as one index, every query language against all of them.

nDCG@10 and language bias per query language for every system; then the pool index's build time, size
and query latency per channel. The index is built fresh in every run (and left in the cache for the
rerank task) unless ``--reuse-pool-index`` takes a cached build, which the efficiency table then dates.
"""

from __future__ import annotations

import time

import numpy as np

from xlir.eval.baselines import E5Direct, PyseriniPool, read_corpus
from xlir.eval.collection import Collection
from xlir.eval.grid import cached_index, language_bias
from xlir.eval.tasks.base import (
    Task,
    TaskContext,
    TaskResult,
    judged,
    means,
    ndcg,
    pair_table,
    timed,
    xlir_runs,
)
from xlir.indexing.config import IndexConfig
from xlir.indexing.manifest import Manifest
from xlir.retrieval.searcher import Searcher


def run(context: TaskContext) -> TaskResult:
    settings, reuse = context.settings, context.reuse_pool_index
    xquad = Collection(context.data / "xquad")
    pool = xquad.pool()
    config = IndexConfig(channels=settings.channels)
    target = cached_index(xquad, xquad.corpus_names(), context.cache, config, "xquad-pool", fresh=not reuse)
    manifest = Manifest.read(target)
    built = time.strftime("%Y-%m-%d %H:%M", time.localtime((target / "manifest.json").stat().st_mtime))
    langs = xquad.query_languages()
    # the baselines over the same pool: Pyserini per language merged by score, mE5 over every paragraph
    corpora = {lang: xquad.corpus_path(lang) for lang in xquad.document_languages()}
    pyserini = PyseriniPool(corpora, context.work / "pyserini-pool", settings.depth)
    e5 = E5Direct(settings.depth)
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
            topics = context.first(xquad.queries(lang))
            qrels = judged(pool.qrels, topics)
            runs = {
                "Pyserini BM25 (direct)": pyserini.run(topics),
                "mE5-small (direct)": e5.run(topics, ids, doc_vectors),
                **xlir_runs(target, topics, settings.channels, settings.depth),
            }
            for system, ranked in runs.items():
                scores.setdefault(system, {})[lang] = ndcg(ranked, qrels)
                bias.setdefault(system, {})[lang] = language_bias(ranked, qrels, lang, doc_langs).bias
        sample = list(xquad.queries("en").values())[: settings.pool_latency_queries]
        for combo in [[c] for c in settings.channels] + [list(settings.channels)]:
            latency["+".join(combo)], _ = timed(
                lambda text, combo=combo: searcher.ranking(text, k=10, channels=combo), sample
            )
    lines = pair_table(scores, langs, "nDCG@10, query language -> all 12 corpora")
    lines += [
        "",
        *pair_table(bias, langs, "language bias (0 = none, 1 = top 10 all in the query's language)"),
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
    return TaskResult("\n".join(lines), means(scores))


TASK = Task("xquad-pool", ("depth", "channels", "pool_latency_queries"), run)
