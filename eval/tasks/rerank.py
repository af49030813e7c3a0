"""The ``rerank`` task: the fused first stage vs fused + rerank, on the same queries.

Reranking every query's top 100 (7 XQuAD pairs x 1,190 queries, the 12-language pool, 112 Tatoeba
languages) is days of a 2-core CPU, so this task measures fixed, documented subsets and always reports the
first stage on the same queries beside it:

* the XQuAD pairs (``xquad_pairs``): ``rerank_queries`` per pair at a fixed stride through the query
  file (XQuAD's queries are grouped by article; the first N would be one article);
* the multilingual pool (all 12 XQuAD corpora as one index): ``rerank_pool_queries`` per query language;
  a question's relevant documents are its paragraph in every language; language bias beside nDCG@10;
* Tatoeba: ``rerank_tatoeba_queries`` per language in the focus languages (``tatoeba_focus``) -> English,
  accuracy@1 and nDCG@10.

(The names are :class:`~xlir.eval.experiments.Settings` fields.) The first stage is ``Searcher``'s fused
ranking over every channel of the same indexes the other tasks use; its top ``rerank_k`` (100) are
reranked by the reranker named by ``reranker``. Rows: the channels and the fused first
stage, fused + rerank as ``--rerank`` returns it (averaged checkpoints, the reranker's score interpolated
with the first stage's at the weight chosen on English validation at training), the reranker's score
alone, and the last checkpoint's score alone beside the averaged one's (on ``rerank_last_queries`` per
pair).
Paired t-tests and randomization tests compare fused + rerank, and the score alone, with the fused first
stage over all subset queries. Latency: wall and CPU seconds per query for k=100 over the pairs, and
:func:`latency_study` on pool queries (a gated reranker cold and with its passage cache warm).
"""

from __future__ import annotations

import logging
import resource
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from xlir.eval.collection import Collection
from xlir.eval.grid import cached_index, language_bias
from xlir.eval.metrics import evaluate, paired_ttest, randomization_test
from xlir.eval.tasks.base import Task, TaskContext, TaskResult, means, pair_names, pair_table
from xlir.eval.trec import Run
from xlir.indexing.config import IndexConfig
from xlir.indexing.ranking import ChannelScore, Hit, Ranking
from xlir.models.rerankers.adapter import AdapterReranker
from xlir.models.rerankers.base import Reranker
from xlir.models.rerankers.registry import reranker_for
from xlir.retrieval.fusion import z_normalize
from xlir.retrieval.rerank import RERANK_SOURCE, first_stage_weight
from xlir.retrieval.searcher import Searcher

log = logging.getLogger(__name__)

FIRST = "xlir fused (first stage)"
#: what ``--rerank`` returns: the reranker's score interpolated with the first stage's at the weight chosen on
#: English validation at training (reranker.json ``first_stage_weight``)
RERANKED = "fused + rerank"
ALONE = "fused + rerank, reranker score alone"
LAST = "reranker score alone, last checkpoint"
AVERAGED = "reranker score alone, averaged checkpoints (shipped)"


def strided(topics: Mapping[str, str], n: int) -> dict[str, str]:
    """``n`` topics at a fixed stride through ``topics`` (deterministic, spread over every article)."""
    items = list(topics.items())
    if n >= len(items):
        return dict(items)
    step = len(items) / n
    return dict(items[int(i * step)] for i in range(n))


def interpolated(first: Run, reranked: Run, weight: float) -> Run:
    """Reranked hits reordered by ``(1 - weight) * z(rerank) + weight * z(first stage)``."""
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
        mixed = (1 - weight) * z_normalize(r) + weight * z_normalize(f)
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


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class RerankSubsets:
    """Collects nDCG@10 (and accuracy@1, bias) per system and per column, and per-query scores for tests."""

    def __init__(self, reranker: Reranker, last: Reranker | None, k: int, depth: int = 100) -> None:
        self.reranker, self.last, self.k, self.depth = reranker, last, k, depth
        self.weight = first_stage_weight(reranker)
        self.latency: list[tuple[float, float]] = []
        self.per_query: dict[str, dict[str, float]] = {FIRST: {}, RERANKED: {}, ALONE: {}}

    def rerank(self, searcher: Searcher, topics: Mapping[str, str], first: Run, timed: bool = False) -> Run:
        out: Run = {}
        for qid, text in topics.items():
            wall, cpu = time.perf_counter(), _cpu()
            out[qid] = searcher.rerank_ranking(text, first[qid], rerank_k=self.k, interpolate=0.0)
            if timed:
                self.latency.append((time.perf_counter() - wall, _cpu() - cpu))
        return out

    def runs(
        self,
        searcher: Searcher,
        topics: Mapping[str, str],
        channels: Sequence[str],
        timed: bool = False,
        last_topics: Mapping[str, str] | None = None,
    ) -> dict[str, Run]:
        runs = {f"xlir {c}": searcher.rankings(topics, k=self.depth, channels=[c]) for c in channels}
        runs[FIRST] = first = searcher.rankings(
            topics, k=self.depth, searched={c: runs[f"xlir {c}"] for c in channels}
        )
        # the reranker scores each query once; --rerank's interpolation is applied to those scores
        runs[ALONE] = alone = self.rerank(searcher, topics, first, timed)
        runs[RERANKED] = interpolated(first, alone, self.weight)
        if self.last is not None and last_topics:
            with Searcher(searcher.index_dir, reranker=self.last) as other:
                runs[LAST] = {
                    q: other.rerank_ranking(t, first[q], rerank_k=self.k) for q, t in last_topics.items()
                }
                runs[f"{FIRST}, same queries as the last checkpoint"] = {q: first[q] for q in last_topics}
                runs[AVERAGED] = {q: alone[q] for q in last_topics}
        return runs

    def score(
        self,
        runs: Mapping[str, Run],
        qrels: Mapping[str, Mapping[str, int]],
        column: str,
        measures: Sequence[str],
    ) -> dict[str, dict[str, float]]:
        """{measure: {system: value}} for one column; per-query nDCG@10 of fused and reranked are kept."""
        out: dict[str, dict[str, float]] = {m: {} for m in measures}
        for system, run in runs.items():
            judged = {q: qrels[q] for q in run if q in qrels}
            result = evaluate(run, judged, list(measures))
            for m in measures:
                out[m][system] = result[m]
            if system in self.per_query:
                for qid, value in result.per_query["nDCG@10"].items():
                    self.per_query[system][f"{column}/{qid}"] = value
        return out


def run(context: TaskContext) -> TaskResult:
    """Fused vs fused + rerank on the XQuAD pairs, the pool and Tatoeba subsets (see the module docstring)."""
    settings, cache, channels = context.settings, context.cache, context.settings.channels
    queries, pool_queries = context.cap(settings.rerank_queries), context.cap(settings.rerank_pool_queries)
    tatoeba_queries = context.cap(settings.rerank_tatoeba_queries)
    last_queries = context.cap(settings.rerank_last_queries)
    k, latency_queries, reranker_name = settings.rerank_k, settings.rerank_latency_queries, settings.reranker
    xquad, tatoeba = Collection(context.data / "xquad"), Collection(context.data / "tatoeba")
    reranker = reranker_for(reranker_name, device="auto")
    last = None
    if isinstance(reranker, AdapterReranker) and (reranker.path / "last").is_dir():
        last = type(reranker)(str(reranker.path / "last"))  # the same kind (adapter or gated)
    subsets = RerankSubsets(reranker, last, k, settings.depth)
    config = IndexConfig(channels=tuple(channels))
    started, cpu0 = time.perf_counter(), _cpu()

    pairs: dict[str, dict[str, float]] = {}
    pair_columns = pair_names(settings.xquad_pairs)
    for query_lang, doc_lang in settings.xquad_pairs:
        topics, _, qrels = xquad.pair(query_lang, doc_lang)
        topics = strided(topics, queries)
        index = cached_index(xquad, [doc_lang], cache, config, f"xquad-{doc_lang}")
        name = f"{query_lang}:{doc_lang}"
        with Searcher(index, reranker=reranker) as searcher:
            runs = subsets.runs(
                searcher, topics, channels, timed=True, last_topics=strided(topics, last_queries)
            )
        for system, value in subsets.score(runs, qrels, name, ["nDCG@10"])["nDCG@10"].items():
            pairs.setdefault(system, {})[name] = value
        log.info("rerank %s: %s", name, {s: round(v[name], 3) for s, v in pairs.items()})

    pool_langs = xquad.query_languages()
    pool_index = cached_index(xquad, xquad.corpus_names(), cache, config, "xquad-pool")
    pool_qrels = xquad.pool().qrels
    pool: dict[str, dict[str, float]] = {}
    bias: dict[str, dict[str, float]] = {}
    with Searcher(pool_index, reranker=reranker) as searcher:
        doc_langs = {doc.id: doc.lang for doc in searcher.docstore}
        for lang in pool_langs:
            topics = strided(xquad.queries(lang), pool_queries)
            runs = subsets.runs(searcher, topics, channels)
            for system, value in subsets.score(runs, pool_qrels, f"pool-{lang}", ["nDCG@10"])[
                "nDCG@10"
            ].items():
                pool.setdefault(system, {})[lang] = value
            for system, run in runs.items():
                bias.setdefault(system, {})[lang] = language_bias(run, pool_qrels, lang, doc_langs).bias
            log.info("rerank pool %s: %s", lang, {s: round(v[lang], 3) for s, v in pool.items()})

    latency_topics = {
        f"{lang}/{qid}": text
        for lang in pool_langs
        for qid, text in strided(xquad.queries(lang), latency_queries).items()
    }
    latency = latency_study(pool_index, latency_topics, reranker_name, k) if latency_queries else []

    tat_acc: dict[str, dict[str, float]] = {}
    tat_ndcg: dict[str, dict[str, float]] = {}
    languages = list(settings.tatoeba_focus)
    for lang in languages:
        topics, corpus, qrels = tatoeba.pair(lang, "eng")
        topics = strided(topics, tatoeba_queries)
        index = cached_index(tatoeba, [corpus.stem], cache, config, name=f"tatoeba-{lang}")
        with Searcher(index, reranker=reranker) as searcher:
            runs = subsets.runs(searcher, topics, channels)
        scored = subsets.score(runs, qrels, f"tatoeba-{lang}", ["Success@1", "nDCG@10"])
        for system in runs:
            tat_acc.setdefault(system, {})[lang] = scored["Success@1"][system]
            tat_ndcg.setdefault(system, {})[lang] = scored["nDCG@10"][system]
    wall, cpu = time.perf_counter() - started, _cpu() - cpu0

    first, reranked = subsets.per_query[FIRST], subsets.per_query[RERANKED]
    alone = subsets.per_query[ALONE]
    t_p, r_p = paired_ttest(reranked, first), randomization_test(reranked, first)
    t_alone, r_alone = paired_ttest(alone, first), randomization_test(alone, first)
    info = getattr(reranker, "info", {}) or {}
    avg_valid = (info.get("valid_mrr10_averaged") or {}).get("mean", {})
    last_valid = (info.get("valid_mrr10_last") or {}).get("mean", {})
    last_rows = {s: v for s, v in pairs.items() if "same queries" in s or s in (LAST, AVERAGED)}
    main_pairs = {s: v for s, v in pairs.items() if s not in last_rows}
    lines = [
        f"Reranker `{reranker.name}`, trained on English only by `{info.get('command', '?')}`. "
        f"Subsets (fixed stride through each query file): {queries} queries per XQuAD pair, {pool_queries} per "
        f"pool query language, {tatoeba_queries} per Tatoeba language; the fused top {k} is reranked; the first "
        "stage is measured on the same queries.",
        "",
        *pair_table(main_pairs, pair_columns, f"nDCG@10, XQuAD pairs ({queries} queries each)"),
        "",
        *pair_table(pool, pool_langs, f"nDCG@10, 12-language pool ({pool_queries} queries per language)"),
        "",
        *pair_table(
            bias, pool_langs, "pool language bias (0 = none, 1 = top 10 all in the query's language)"
        ),
        "",
        f"| Tatoeba -> English ({', '.join(languages)}) | languages | accuracy@1 | nDCG@10 |",
        "|---|---:|---:|---:|",
        *[
            f"| {s} | {len(languages)} | {statistics.mean(tat_acc[s].values()):.3f} | "
            f"{statistics.mean(tat_ndcg[s].values()):.3f} |"
            for s in tat_acc
        ],
        "",
        f"Every subset query above ({len(first)}), mean nDCG@10: fused first stage "
        f"{statistics.mean(first.values()):.3f}; fused + rerank (weight {subsets.weight:g}) "
        f"{statistics.mean(reranked.values()):.3f}, paired t-test p = {t_p:.2g}, randomization test "
        f"p = {r_p:.2g}; the reranker's score alone {statistics.mean(alone.values()):.3f}, paired t-test "
        f"p = {t_alone:.2g}, randomization test p = {r_alone:.2g}.",
        "",
        f"Checkpoint averaging (shipped) vs the last checkpoint, zero-shot, the reranker's score alone, "
        f"{last_queries} queries per pair:",
        "",
        *pair_table(last_rows, pair_columns, "nDCG@10, XQuAD pairs"),
        "",
        f"English validation MRR@10 at training (held-out MS MARCO + SQuAD queries, the dense top "
        f"{info.get('settings', {}).get('valid_depth', '?')} reranked): dense {avg_valid.get('dense', '?')}, "
        f"averaged checkpoints {avg_valid.get('rerank', '?')}, last checkpoint {last_valid.get('rerank', '?')}; "
        f"first-stage weight chosen there (used by `--rerank`): {subsets.weight:g}.",
    ]
    if subsets.latency:
        walls, cpus = [w for w, _ in subsets.latency], [c for _, c in subsets.latency]
        lines += [
            "",
            f"Reranking latency, k={k}, XQuAD paragraphs ({len(walls)} queries, max length "
            f"{getattr(reranker, 'max_length', '?')}, {'bf16' if _bf16(reranker) else 'fp32'}, 2 threads): wall "
            f"p50 {np.percentile(walls, 50):.2f} s, p95 {np.percentile(walls, 95):.2f} s per query; CPU "
            f"{statistics.median(cpus):.2f} s per query (median). With a time budget (`rerank_budget_s`, the "
            "server's `rerank_budget_ms`) the unscored tail keeps the first-stage order.",
        ]
    if latency:
        lines += [
            "",
            f"Reranking latency on the pool ({latency_queries} query per language, the fused top {k}); a gated "
            "reranker cold (every passage's lower layers computed) and warm (passages' lower-layer states kept "
            "from earlier queries, as a server keeps them for documents that come back):",
            "",
            *latency,
        ]
    lines += ["", f"This task: {wall / 60:.1f} min wall, {cpu / 60:.1f} min CPU."]
    scores = means(main_pairs, "pairs {}")
    scores.update(means(pool, "pool {}"))
    scores.update(means(tat_acc, "tatoeba {} acc@1"))
    return TaskResult("\n".join(lines), scores)


def latency_study(
    index: Path, topics: Mapping[str, str], reranker_name: str = "default", k: int = 100
) -> list[str]:
    """Reranking latency per query for ``k`` hits, a gated reranker cold (no passage states kept from
    earlier queries: every passage's lower layers computed) and warm (the same queries again, every passage's
    lower-layer states kept); other rerankers have no cache and are timed once. Markdown lines."""
    from xlir.models.rerankers.gated import GatedReranker

    reranker = reranker_for(reranker_name, device="auto")
    gated = isinstance(reranker, GatedReranker)
    cold_reranker = GatedReranker(str(reranker.path), cache_passages=0) if gated else reranker
    rows = []
    first: Run = {}
    for label, which in (("cold", cold_reranker), ("warm", reranker)) if gated else (("", reranker),):
        with Searcher(index, reranker=which) as searcher:
            first = first or searcher.rankings(topics, k=k)
            if label == "warm":  # fill the cache once, then time
                for qid, text in topics.items():
                    searcher.rerank_ranking(text, first[qid], rerank_k=k, interpolate=0.0)
            walls = []
            for qid, text in topics.items():
                started = time.perf_counter()
                searcher.rerank_ranking(text, first[qid], rerank_k=k, interpolate=0.0)
                walls.append(time.perf_counter() - started)
        rows.append(
            f"| {reranker.name} {label} | {len(walls)} | {np.percentile(walls, 50):.2f} | "
            f"{np.percentile(walls, 95):.2f} |"
        )
    precision = "bf16" if _bf16(reranker) else "fp32"
    return [
        f"| reranking latency, k={k}, {precision}, 2 threads | queries | wall p50 s | wall p95 s |",
        "|---|---:|---:|---:|",
        *rows,
    ]


def _bf16(reranker: Reranker) -> bool:
    from xlir.models.devices import bf16_supported

    precision = getattr(reranker, "precision", "fp32")
    return precision == "bf16" or (
        precision == "auto" and bf16_supported(str(getattr(reranker, "device", "cpu")))
    )


TASK = Task(
    "rerank",
    (
        "depth",
        "channels",
        "xquad_pairs",
        "tatoeba_focus",
        "rerank_queries",
        "rerank_pool_queries",
        "rerank_tatoeba_queries",
        "rerank_last_queries",
        "rerank_k",
        "rerank_latency_queries",
        "reranker",
    ),
    run,
)
