"""The ``xquad-pairs`` task: XQuAD cross-lingual pairs (queries in X, paragraphs in Y), nDCG@10 per pair.

Every system on every pair: Pyserini BM25 and mE5-small used directly (the baselines), each xlir channel
alone, the fused first stage and two fusion variants; then the dense encoding rate of the direct model
beside the one recorded by each cached xlir index build.
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np

from xlir.eval.baselines import E5Direct, PyseriniBM25, read_corpus
from xlir.eval.collection import Collection
from xlir.eval.grid import cached_index
from xlir.eval.tasks.base import (
    Task,
    TaskContext,
    TaskResult,
    judged,
    means,
    ndcg,
    pair_names,
    pair_table,
    xlir_runs,
)
from xlir.indexing.config import IndexConfig

log = logging.getLogger(__name__)


def run(context: TaskContext) -> TaskResult:
    settings = context.settings
    xquad = Collection(context.data / "xquad")
    config = IndexConfig(channels=settings.channels)
    e5 = E5Direct(settings.depth)
    doc_vectors: dict[str, tuple[list[str], np.ndarray]] = {}
    pyserini: dict[str, PyseriniBM25] = {}
    table: dict[str, dict[str, float]] = {}
    encode_rates: list[tuple[str, float, float]] = []
    for query_lang, doc_lang in settings.xquad_pairs:
        topics, corpus, qrels = xquad.pair(query_lang, doc_lang)
        topics = context.first(topics)
        qrels = judged(qrels, topics)
        index = cached_index(xquad, [doc_lang], context.cache, config, name=f"xquad-{doc_lang}")
        if doc_lang not in doc_vectors:
            ids, texts = read_corpus(corpus)
            started = time.perf_counter()
            doc_vectors[doc_lang] = (ids, e5.encode(texts, "passage"))
            dense = json.loads((index / "manifest.json").read_text())["channels"]["dense"]
            encode_rates.append(
                (doc_lang, len(ids) / (time.perf_counter() - started), dense["docs_per_second"])
            )
            pyserini[doc_lang] = PyseriniBM25(
                corpus, doc_lang, context.work / f"pyserini-{doc_lang}", settings.depth
            )
        runs = {
            "Pyserini BM25 (direct)": pyserini[doc_lang].run(topics),
            "mE5-small (direct)": e5.run(topics, *doc_vectors[doc_lang]),
            **xlir_runs(index, topics, settings.channels, settings.depth),
        }
        pair = f"{query_lang}:{doc_lang}"
        for system, ranked in runs.items():
            table.setdefault(system, {})[pair] = ndcg(ranked, qrels)
        log.info("%s: %s", pair, {s: round(v[pair], 3) for s, v in table.items()})
    pairs = pair_names(settings.xquad_pairs)
    lines = pair_table(table, pairs, "nDCG@10")
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
    return TaskResult("\n".join(lines), means(table))


TASK = Task("xquad-pairs", ("depth", "channels", "xquad_pairs"), run)
