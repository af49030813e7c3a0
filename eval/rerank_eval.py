"""Measure the reranking stage against the best first stage on XQuAD; write the ``rerank`` results section.

    python -m eval.rerank_eval --data ../shared/data

Full XQuAD x top-100 reranking (7 pairs x 1,190 queries x 100 pairs) is far beyond a 2-core CPU, so this
measures a fixed, documented subset and always reports the first stage on the same subset beside it:

* cross-lingual pairs (de:en, zh:en, ar:en, th:en, hi:en, en:de, en:zh): ``--queries`` queries per pair,
  taken at a fixed stride through the query file (XQuAD's queries are grouped by article, so the first N
  would all be about one article); the first stage is xlir fused (bm25+dense+sparse through ``Searcher``,
  the cached per-language indexes of ``eval.grid.cached_index``); its top ``--k`` are reranked;
* the multilingual pool (all 12 XQuAD corpora, 2,880 paragraphs; bm25+dense, the sparse channel's pool
  build is too slow for this CPU budget): ``--queries`` queries in each of ``--pool-langs``, first stage
  fused (and dense alone for reference), top ``--pool-k`` reranked; a question's relevant documents are
  its paragraph in every language;
* rows: first stage, the reranker (averaged checkpoints, the shipped weights), the reranker interpolated
  with the first-stage score at the weight chosen on English validation during training (recorded in
  reranker.json), and the last checkpoint (checkpoint averaging vs not, on the pairs);
* latency: reranking k=100 for ``--latency-queries`` queries, wall and CPU seconds per query.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from eval.collections import Collection
from eval.grid import cached_index, language_bias
from eval.metrics import evaluate
from eval.reproduce import XQUAD_PAIRS, _judged
from eval.results import replace_section
from indexing.config import IndexConfig
from retrieval.ranking import ChannelScore, Hit, Ranking
from retrieval.rerank import RERANK_SOURCE, AdapterReranker, Reranker, reranker_for
from retrieval.searcher import Searcher

log = logging.getLogger("eval.rerank_eval")

Run = dict[str, Ranking]
PAIR_CHANNELS = ("bm25", "dense", "sparse")
POOL_CHANNELS = ("bm25", "dense")
DEFAULT_CACHE = Path.home() / ".cache" / "xlir" / "eval-indexes"


def strided(topics: Mapping[str, str], n: int) -> dict[str, str]:
    """``n`` topics at a fixed stride through ``topics`` (deterministic, spread over every article)."""
    items = list(topics.items())
    if n >= len(items):
        return dict(items)
    step = len(items) / n
    return dict(items[int(i * step)] for i in range(n))


def ndcg(run: Run, qrels: Mapping[str, Mapping[str, int]]) -> float:
    return evaluate(run, qrels, ["nDCG@10"])["nDCG@10"]


def rerank_run(searcher: Searcher, topics: Mapping[str, str], first: Run, k: int) -> Run:
    """Each query's first-stage ranking reranked (top ``k``) through ``Searcher.rerank_ranking``."""
    return {qid: searcher.rerank_ranking(topics[qid], first[qid], rerank_k=k) for qid in topics}


def interpolated(first: Run, reranked: Run, weight: float) -> Run:
    """Reranked hits reordered by ``(1 - weight) * z(rerank) + weight * z(first stage)`` (same scores)."""
    out: Run = {}
    for qid, ranking in reranked.items():
        base = {h.docid: h.score for h in first[qid].hits}
        scored = [h for h in ranking.hits if RERANK_SOURCE in h.sources]
        rest = [h for h in ranking.hits if RERANK_SOURCE not in h.sources]
        if len(scored) < 2:
            out[qid] = ranking
            continue
        r = np.array([h.sources[RERANK_SOURCE].score for h in scored])
        f = np.array([base[h.docid] for h in scored])
        mixed = (1 - weight) * _z(r) + weight * _z(f)
        order = np.argsort(-mixed, kind="stable")
        hits = [
            Hit(
                scored[i].docid,
                float(mixed[i]),
                scored[i].lang,
                {**scored[i].sources, "interp": ChannelScore(n, 0)},
            )
            for n, i in enumerate(order, start=1)
        ]
        out[qid] = Ranking(ranking.source + "+interp", tuple(hits + rest))
    return out


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() if x.std() > 1e-12 else 1.0)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def chosen_weight(reranker: Reranker) -> float:
    """The interpolation weight with the best mean English validation MRR@10 recorded at training."""
    info = getattr(reranker, "info", {}) or {}
    valid = (info.get("valid_mrr10_averaged") or {}).get("mean") or {}
    options = {0.0 if key == "rerank" else float(key[6:]): v for key, v in valid.items() if key != "dense"}
    return max(options, key=lambda w: (options[w], -w)) if options else 0.0


def table(rows: Mapping[str, Mapping[str, float]], columns: Sequence[str], title: str) -> list[str]:
    lines = [f"| {title} | " + " | ".join(columns) + " | mean |", "|---|" + "---:|" * (len(columns) + 1)]
    for name, values in rows.items():
        cells = " | ".join(f"{values[c]:.3f}" for c in columns)
        lines.append(f"| {name} | {cells} | {statistics.mean(values[c] for c in columns):.3f} |")
    return lines


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m eval.rerank_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="shared/data (holds xquad/)")
    parser.add_argument("--queries", type=int, default=20, help="queries per pair / per pool language")
    parser.add_argument("--k", type=int, default=20, help="first-stage hits reranked per pair query")
    parser.add_argument("--pool-k", type=int, default=30, help="first-stage hits reranked per pool query")
    parser.add_argument("--pool-langs", default="de,ar,zh")
    parser.add_argument("--reranker", default="default")
    parser.add_argument("--no-last", action="store_true", help="skip the last-checkpoint comparison")
    parser.add_argument("--latency-queries", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument(
        "--results", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "RESULTS.md"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    torch.set_num_threads(2)
    xquad = Collection(args.data / "xquad")
    reranker = reranker_for(args.reranker, device="auto")
    weight = chosen_weight(reranker)
    last: Reranker | None = None
    if not args.no_last and isinstance(reranker, AdapterReranker) and (reranker.path / "last").is_dir():
        last = AdapterReranker(str(reranker.path / "last"))
    started, cpu0 = time.perf_counter(), _cpu()
    pairs: dict[str, dict[str, float]] = {}
    pair_names = [f"{q}:{d}" for q, d in XQUAD_PAIRS]
    latency: list[tuple[float, float]] = []
    for query_lang, doc_lang in XQUAD_PAIRS:
        topics, _, qrels = xquad.pair(query_lang, doc_lang)
        topics = strided(topics, args.queries)
        qrels = _judged(qrels, topics)
        index = cached_index(
            xquad, [doc_lang], args.cache, IndexConfig(channels=PAIR_CHANNELS), f"xquad-{doc_lang}"
        )
        name = f"{query_lang}:{doc_lang}"
        with Searcher(index, reranker=reranker) as searcher:
            first = searcher.rankings(topics, k=100)
            dense = searcher.rankings(topics, k=100, channels=["dense"])
            reranked = rerank_run(searcher, topics, first, args.k)
            runs = {
                "xlir dense (first stage)": dense,
                "xlir fused bm25+dense+sparse (first stage)": first,
                "fused + rerank (averaged checkpoints)": reranked,
                f"fused + rerank, interpolated (weight {weight:g})": interpolated(first, reranked, weight),
            }
            if last is not None:
                with Searcher(index, reranker=last) as other:
                    runs["fused + rerank (last checkpoint)"] = rerank_run(other, topics, first, args.k)
            if len(latency) < args.latency_queries:
                for qid in list(topics)[: args.latency_queries - len(latency)]:
                    w, c = time.perf_counter(), _cpu()
                    searcher.rerank_ranking(topics[qid], first[qid], rerank_k=100)
                    latency.append((time.perf_counter() - w, _cpu() - c))
        for system, run in runs.items():
            pairs.setdefault(system, {})[name] = ndcg(run, qrels)
        log.info("%s: %s", name, {s: round(v[name], 3) for s, v in pairs.items()})
    pool_langs = [lang.strip() for lang in args.pool_langs.split(",") if lang.strip()]
    pool_index = cached_index(
        xquad, xquad.corpus_names(), args.cache, IndexConfig(channels=POOL_CHANNELS), "xquad-pool-bm25-dense"
    )
    pool_qrels = xquad.pool().qrels
    pool: dict[str, dict[str, float]] = {}
    bias: dict[str, dict[str, float]] = {}
    with Searcher(pool_index, reranker=reranker) as searcher:
        doc_langs = {doc.id: doc.lang for doc in searcher.docstore}
        for lang in pool_langs:
            topics = strided(xquad.queries(lang), args.queries)
            qrels = _judged(pool_qrels, topics)
            first = searcher.rankings(topics, k=100)
            reranked = rerank_run(searcher, topics, first, args.pool_k)
            runs = {
                "xlir dense (first stage)": searcher.rankings(topics, k=100, channels=["dense"]),
                "xlir fused bm25+dense (first stage)": first,
                "fused + rerank (averaged checkpoints)": reranked,
                f"fused + rerank, interpolated (weight {weight:g})": interpolated(first, reranked, weight),
            }
            for system, run in runs.items():
                pool.setdefault(system, {})[lang] = ndcg(run, qrels)
                bias.setdefault(system, {})[lang] = language_bias(run, qrels, lang, doc_langs).bias
            log.info("pool %s: %s", lang, {s: round(v[lang], 3) for s, v in pool.items()})
    wall, cpu = time.perf_counter() - started, _cpu() - cpu0
    info = getattr(reranker, "info", {}) or {}
    avg_valid = (info.get("valid_mrr10_averaged") or {}).get("mean", {})
    last_valid = (info.get("valid_mrr10_last") or {}).get("mean", {})
    lines = [
        f"Reranker: `{reranker.name}` ({json.dumps(getattr(reranker, 'describe', dict)())}); trained by "
        f"`{info.get('command', '?')}` on English only. Subset: {args.queries} queries per pair / per pool "
        f"language at a fixed stride through each query file; pairs rerank the fused top {args.k}, the pool "
        f"the fused top {args.pool_k} (the first stage's top 100 follow unchanged). The first stage is "
        "measured on the same queries. Command: `python -m eval.rerank_eval --data ../shared/data "
        f"--queries {args.queries} --k {args.k} --pool-k {args.pool_k} --pool-langs {args.pool_langs}`.",
        "",
        *table(pairs, pair_names, "nDCG@10, XQuAD pairs (subset)"),
        "",
        *table(pool, pool_langs, "nDCG@10, multilingual pool (subset)"),
        "",
        *table(bias, pool_langs, "pool language bias (1 = top 10 all in the query's language)"),
        "",
        f"English validation MRR@10 at training (held-out MS MARCO + SQuAD queries, dense top "
        f"{info.get('settings', {}).get('valid_depth', '?')} reranked): dense {avg_valid.get('dense', '?')}, "
        f"averaged checkpoints {avg_valid.get('rerank', '?')}, last checkpoint {last_valid.get('rerank', '?')}; "
        f"interpolation weight chosen there: {weight:g}.",
        "",
    ]
    if latency:
        walls, cpus = [w for w, _ in latency], [c for _, c in latency]
        lines.append(
            f"Reranking latency, k=100 (XQuAD paragraphs, max length {getattr(reranker, 'max_length', '?')}, "
            f"batch 16, 2 threads, shared 2-core CPU, {len(latency)} queries): wall {statistics.median(walls):.1f} s "
            f"per query (median), CPU {statistics.median(cpus):.1f} s per query; with a time budget "
            "(`rerank_budget_s` / `--rerank-budget`) the unscored tail keeps the first-stage order."
        )
    lines.append(f"This run: {wall / 60:.1f} min wall, {cpu / 60:.1f} min CPU.")
    body = "\n".join(lines)
    replace_section(args.results, "rerank", body)
    print(body)
    return body


if __name__ == "__main__":  # pragma: no cover
    main()
