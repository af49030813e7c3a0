"""Regenerate the result tables in docs/RESULTS.md: every system, every task, baselines in the same run.

    python -m eval.reproduce --data ../shared/data                 # all tasks (hours of CPU on 2 cores)
    python -m eval.reproduce --tasks xquad-pairs --check           # and compare with eval/regressions.json

Systems: Pyserini BM25 used directly and mE5-small used directly through sentence-transformers (the
baselines), then each xlir channel (bm25, dense, sparse) and the fused first stage (RRF over the
channels, what ``Searcher`` returns by default). Tasks:

- ``xquad-pairs``: XQuAD cross-lingual pairs (queries in X, paragraphs in Y), nDCG@10 per pair.
- ``xquad-pool``: all 12 XQuAD corpora as one index; nDCG@10 and language bias per query language;
  build time, size and query latency per channel (this index is built fresh in every run).
- ``tatoeba``: every Tatoeba language X -> its English side: accuracy@1 and nDCG@10 per language.

Each task's table replaces its own section of the results file as soon as it is done; ``--check``
compares the measured means with ``eval/regressions.json`` (the 2CR idea: expected scores are data) and
exits 1 on a difference beyond the tolerance there.
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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from eval.collections import Collection
from eval.grid import cached_index, language_bias
from eval.metrics import evaluate
from eval.results import replace_section
from indexing.config import IndexConfig
from retrieval.fusion import rrf
from retrieval.ranking import Ranking
from retrieval.searcher import Searcher

log = logging.getLogger("eval.reproduce")

TASKS = ("xquad-pairs", "xquad-pool", "tatoeba", "dense-throughput")
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
CHANNELS = ("bm25", "dense", "sparse")
DEPTH = 100
REGRESSIONS = Path(__file__).with_name("regressions.json")

Run = dict[str, Ranking]


# --- baselines -----------------------------------------------------------------------------------------


class PyseriniBM25:
    """Pyserini used directly: a LuceneIndexer over one corpus with its language's analyzer, LuceneSearcher."""

    def __init__(self, corpus: Path, lang: str, work: Path) -> None:
        from eval.bench_bm25 import pyserini_index, pyserini_searcher
        from indexing.analyzers import LUCENE_ANALYZERS

        self.lang = lang
        pyserini_index({lang: corpus}, work)
        self._searcher = pyserini_searcher(work / lang, lang) if lang in LUCENE_ANALYZERS else None
        if self._searcher is None:  # the neutral analyzer: same Java analyzer object xlir uses
            from pyserini.search.lucene import LuceneSearcher

            from indexing.analyzers import analyzer_for, java_analyzer

            self._searcher = LuceneSearcher(str(work / lang))
            self._searcher.object.set_analyzer(java_analyzer(analyzer_for(lang)))
            self._searcher.set_bm25(0.9, 0.4)

    def run(self, topics: Mapping[str, str]) -> Run:
        from indexing.analyzers import analyzer_for, prepare_text

        analyzer = analyzer_for(self.lang)
        return {
            qid: Ranking.from_scores(
                "pyserini",
                [(h.docid, h.score) for h in self._searcher.search(prepare_text(analyzer, text), DEPTH)],
            )
            for qid, text in topics.items()
        }


class E5Direct:
    """multilingual-e5-small through sentence-transformers, used directly: cosine over all documents."""

    def __init__(self) -> None:
        from indexing.models import load_sentence_transformer

        self.model = load_sentence_transformer()

    def encode(self, texts: list[str], prompt: str) -> np.ndarray:
        return self.model.encode(texts, prompt_name=prompt, batch_size=32, normalize_embeddings=True)

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
        # What the product returns: every channel, BM25 limited to the query's language (Searcher._scope).
        runs["xlir fused"] = searcher.rankings(topics, k=DEPTH)
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


def xquad_pool(data: Path, work: Path, limit: int | None) -> tuple[str, dict[str, float]]:
    xquad = Collection(data / "xquad")
    pool = xquad.pool()
    target = work / "xquad-pool"
    from indexing.builder import build_index
    from indexing.readers import read_collection_corpus

    manifest = build_index(read_collection_corpus(xquad.root), target, IndexConfig(channels=CHANNELS))
    langs = xquad.query_languages()
    scores: dict[str, dict[str, float]] = {}
    bias: dict[str, dict[str, float]] = {}
    latency: dict[str, list[float]] = {}
    with Searcher(target) as searcher:
        doc_langs = {doc.id: doc.lang for doc in searcher.docstore}
        for lang in langs:
            topics = _limit(xquad.queries(lang), limit)
            qrels = _judged(pool.qrels, topics)
            runs = xlir_runs(target, topics)
            for system, run in runs.items():
                scores.setdefault(system, {})[lang] = ndcg(run, qrels)
                bias.setdefault(system, {})[lang] = language_bias(run, qrels, lang, doc_langs).bias
        sample = list(_limit(xquad.queries("en"), 200).values())
        for combo in [["bm25"], ["dense"], ["sparse"], list(CHANNELS)]:
            times = []
            for text in sample:
                start = time.perf_counter()
                searcher.ranking(text, k=10, channels=combo)
                times.append((time.perf_counter() - start) * 1000)
            latency["+".join(combo)] = times
    lines = _pair_table(scores, langs, "nDCG@10, query language -> all 12 corpora")
    lines += [
        "",
        *_pair_table(bias, langs, "language bias (0 = none, 1 = top 10 all in the query's language)"),
    ]
    lines += [
        "",
        f"Efficiency (this pool index, {manifest.documents:,} documents, built in this run):",
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
    shutil.rmtree(target, ignore_errors=True)
    texts = [text for lang in xquad.document_languages() for text in read_corpus(xquad.corpus_path(lang))[1]]
    started = time.perf_counter()
    E5Direct().encode(texts, "passage")
    direct = len(texts) / (time.perf_counter() - started)
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
    channels_all: Sequence[str],
    only: Sequence[str] | None = None,
) -> tuple[str, dict]:
    """Every language -> English; the costly channels (sparse, baselines) on the focus languages only."""
    tatoeba = Collection(data / "tatoeba")
    e5 = E5Direct()
    acc: dict[str, dict[str, float]] = {}
    ndcg10: dict[str, dict[str, float]] = {}
    languages = list(only) if only else tatoeba.query_languages()
    for lang in languages:
        focus = lang in TATOEBA_FOCUS
        channels = CHANNELS if focus else tuple(channels_all)
        topics, corpus, qrels = tatoeba.pair(lang, "eng")
        topics = _limit(topics, limit)
        qrels = _judged(qrels, topics)
        index = cached_index(
            tatoeba, [corpus.stem], cache, IndexConfig(channels=channels), name=f"tatoeba-{lang}"
        )
        runs = (
            xlir_runs(index, topics, channels) if len(channels) > 1 else _single(index, topics, channels[0])
        )
        if focus:
            ids, texts = read_corpus(corpus)
            runs["mE5-small (direct)"] = e5.run(topics, ids, e5.encode(texts, "passage"))
            runs["Pyserini BM25 (direct)"] = PyseriniBM25(
                corpus, "en", work / f"pyserini-tatoeba-{lang}"
            ).run(topics)
        for system, run in runs.items():
            result = evaluate(run, qrels, ["Success@1", "nDCG@10"])
            acc.setdefault(system, {})[lang] = result["Success@1"]
            ndcg10.setdefault(system, {})[lang] = result["nDCG@10"]
        log.info("tatoeba %s: %s", lang, {s: round(v[lang], 3) for s, v in acc.items() if lang in v})
    lines = _pair_table(acc, list(TATOEBA_FOCUS), "accuracy@1, X -> English (focus languages)")
    lines += ["", *_pair_table(ndcg10, list(TATOEBA_FOCUS), "nDCG@10, X -> English (focus languages)")]
    lines += [
        "",
        f"All {len(languages)} languages -> English (mean over languages; channels run on every language: "
        f"{', '.join(channels_all)}):",
        "",
        "| system | languages | accuracy@1 | nDCG@10 |",
        "|---|---:|---:|---:|",
    ]
    for system in acc:
        if len(acc[system]) == len(languages):
            lines.append(
                f"| {system} | {len(languages)} | {statistics.mean(acc[system].values()):.3f} | "
                f"{statistics.mean(ndcg10[system].values()):.3f} |"
            )
    per_lang = ", ".join(f"{lang} {acc[f'xlir {channels_all[0]}'][lang]:.2f}" for lang in languages)
    lines += ["", f"accuracy@1 per language (xlir {channels_all[0]}): {per_lang}"]
    means = {f"{s} acc@1": statistics.mean(v.values()) for s, v in acc.items() if len(v) == len(languages)}
    means.update({f"{s} focus nDCG@10": statistics.mean(ndcg10[s][x] for x in TATOEBA_FOCUS) for s in ndcg10})
    return "\n".join(lines), means


def dense_throughput(
    data: Path, work: Path, limit: int | None, rounds: int = 2
) -> tuple[str, dict[str, float]]:
    """Encoding inside an xlir build vs the same model encoding the same texts directly, alternating."""
    from indexing.builder import build_index
    from indexing.documents import Document

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


def _single(index: Path, topics: Mapping[str, str], channel: str) -> dict[str, Run]:
    with Searcher(index) as searcher:
        return {f"xlir {channel}": searcher.rankings(topics, k=DEPTH, channels=[channel])}


def _limit(topics: Mapping[str, str], limit: int | None) -> dict[str, str]:
    items = list(topics.items())
    return dict(items if limit is None else items[:limit])


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


def check(task: str, means: Mapping[str, float]) -> list[str]:
    expected = json.loads(REGRESSIONS.read_text())
    tolerance = expected.get("tolerance", 0.005)
    problems = []
    for system, value in expected.get(task, {}).items():
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
        "--tatoeba-channels", default="bm25,dense", help="channels run on all Tatoeba languages"
    )
    parser.add_argument(
        "--tatoeba-langs", default=None, help="comma-separated Tatoeba languages (default: all)"
    )
    parser.add_argument("--check", action="store_true", help="compare the means with eval/regressions.json")
    parser.add_argument("--update-expected", action="store_true", help="write the measured means as expected")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
    cache = args.cache or Path(os.environ.get("XLIR_HOME", Path.home() / ".cache" / "xlir")) / "eval-indexes"
    command = "python -m eval.reproduce " + " ".join(argv if argv is not None else sys.argv[1:])
    problems: list[str] = []
    measured: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="xlir-reproduce-") as tmp:
        work = Path(tmp)
        runners: dict[str, Callable[[], tuple[str, dict[str, float]]]] = {
            "xquad-pairs": lambda: xquad_pairs(args.data, cache, work, args.limit),
            "xquad-pool": lambda: xquad_pool(args.data, work, args.limit),
            "dense-throughput": lambda: dense_throughput(args.data, work, args.limit),
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
                expected = (
                    json.loads(REGRESSIONS.read_text()) if REGRESSIONS.exists() else {"tolerance": 0.005}
                )
                expected[task] = {k: round(v, 4) for k, v in means.items()}
                REGRESSIONS.write_text(json.dumps(expected, indent=2) + "\n")
    for problem in problems:
        print(f"REGRESSION {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
