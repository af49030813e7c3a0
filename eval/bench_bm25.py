"""Benchmark: xlir's BM25 channel against Pyserini called directly, in one run.

Indexing throughput (documents/s, the whole xlir build: reading, docstore, per-language Lucene
sub-indexes, verification, manifest) and single-thread search throughput (queries/s, k=100) on all 12
XQuAD corpora and on the Tatoeba corpus (all English sides + all sentences, 112 languages), plus
monolingual nDCG@10 of both on XQuAD en, de, zh, ar. Each measurement alternates xlir and Pyserini and
keeps the median of ``--repeat`` rounds; ratios are xlir / Pyserini from the same run.

    python -m xlir.eval.bench_bm25 --data ../shared/data --results docs/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xlir.eval.collection import Collection
from xlir.eval.metrics import evaluate
from xlir.eval.results import replace_section
from xlir.indexing.builder import build_index
from xlir.indexing.channels.bm25.analyzers import analyzer_for, indexer_args, prepare_text
from xlir.indexing.channels.bm25.java import ensure_jvm
from xlir.indexing.config import IndexConfig
from xlir.indexing.ranking import Ranking
from xlir.indexing.readers import open_corpus
from xlir.models.languages import normalize_language
from xlir.models.paths import data_root
from xlir.retrieval.searcher import Searcher

MONOLINGUAL = ("en", "de", "zh", "ar")
BM25_ONLY = IndexConfig(channels=("bm25",))
K = 100


def pyserini_index(corpus_files: dict[str, Path], out: Path, api: str = "dict") -> int:
    """Pyserini used directly: one LuceneIndexer per language file, the same analyzer xlir picks.

    ``api="dict"``: ``add_batch_dict`` (one Java document object built per document through JNI), the
    baseline of the bar; ``api="raw"``: ``add_batch_raw`` with one ``json.dumps`` string per document,
    the same Anserini entry point xlir uses.
    """
    ensure_jvm()  # before any pyserini import, or jnius starts the system's (too old) Java
    from pyserini.index.lucene import LuceneIndexer

    count = 0
    for lang, path in corpus_files.items():
        analyzer = analyzer_for(lang)
        target = out / lang
        indexer = LuceneIndexer(
            str(target), args=["-index", str(target), *indexer_args(analyzer)], threads=os.cpu_count() or 1
        )
        add = indexer.add_batch_dict if api == "dict" else indexer.add_batch_raw
        encode: Callable[[dict[str, str]], Any] = (lambda d: d) if api == "dict" else json.dumps
        batch: list[Any] = []
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                doc = json.loads(line)
                batch.append(encode({"id": doc["id"], "contents": prepare_text(analyzer, doc["text"])}))
                if len(batch) == 2000:
                    add(batch)
                    count += len(batch)
                    batch = []
        add(batch)
        count += len(batch)
        indexer.close()
    return count


def pyserini_searcher(path: Path, lang: str):  # noqa: ANN201
    ensure_jvm()
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(path))
    if lang != "en":
        searcher.set_language(lang)
    searcher.set_bm25(0.9, 0.4)
    return searcher


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """CPU seconds of this process (all its threads, the JVM's included) spent in ``fn``.

    CPU time rather than wall time: on a shared machine other processes' load moves wall time by 2x
    between rounds, while the work each system does stays what it is.
    """
    start = time.process_time()
    value = fn()
    return time.process_time() - start, value


def bench_indexing(name: str, corpus_dir: Path, files: dict[str, Path], work: Path, repeat: int) -> dict:
    """Indexing rates (documents per CPU second) of xlir and of Pyserini's dict and raw-JSON APIs."""
    rates: dict[str, list[float]] = {"xlir": [], "pyserini": [], "pyserini_raw": []}
    documents = 0
    # Round -1 warms the JVM (class loading, JIT) for all and is not counted.
    for round_ in range(-1, repeat):
        dirs = {system: work / f"{name}-{system}-{round_}" for system in rates}
        xlir_dir = dirs["xlir"]

        def xlir() -> float:
            seconds, manifest = timed(lambda: build_index(open_corpus(corpus_dir), xlir_dir, BM25_ONLY))  # noqa: B023
            return manifest.documents / seconds

        def pyserini(api: str, target: Path, indexed: list[int]) -> Callable[[], float]:
            def run() -> float:
                seconds, count = timed(lambda: pyserini_index(files, target, api))
                indexed.append(count)
                return count / seconds

            return run

        indexed: list[int] = []
        runs = {
            "xlir": xlir,
            "pyserini": pyserini("dict", dirs["pyserini"], indexed),
            "pyserini_raw": pyserini("raw", dirs["pyserini_raw"], indexed),
        }
        # Rotate which goes first: a later one runs on a JVM the earlier ones have just warmed.
        order = list(runs)[round_ % 3 :] + list(runs)[: round_ % 3]
        measured = {system: runs[system]() for system in order}
        documents = json.loads((xlir_dir / "manifest.json").read_text())["documents"]
        assert indexed == [documents, documents], (indexed, documents)
        if round_ >= 0:
            for system, rate in measured.items():
                rates[system].append(rate)
        if round_ < repeat - 1:
            for path in dirs.values():
                shutil.rmtree(path)
    median = {system: statistics.median(values) for system, values in rates.items()}
    return {
        "documents": documents,
        **median,
        "ratio": median["xlir"] / median["pyserini"],
        "ratio_raw": median["xlir"] / median["pyserini_raw"],
    }


def bench_search(
    xlir_index: Path, pys_index: Path, lang: str, topics: dict[str, str], repeat: int
) -> tuple[dict, dict[str, Ranking], dict[str, Ranking]]:
    queries = list(topics.items())
    xlir_runs: dict[str, Ranking] = {}
    pys_runs: dict[str, Ranking] = {}
    xlir_rates, pys_rates = [], []
    with Searcher(xlir_index, channels=["bm25"]) as searcher:
        pys = pyserini_searcher(pys_index / lang, lang)

        def pyserini_run() -> None:
            # A consumer of Pyserini reads each hit's id and score (a JVM call per field), as xlir does.
            for qid, text in queries:
                pys_runs[qid] = Ranking.from_scores(
                    "pyserini", [(h.docid, h.score) for h in pys.search(text, K)]
                )

        def xlir_run() -> None:
            for qid, text in queries:
                xlir_runs[qid] = searcher.ranking(text, K, [lang])

        xlir_run()  # warm-up of both (JIT, caches), not counted
        pyserini_run()
        for round_ in range(repeat):
            order = [(xlir_run, xlir_rates), (pyserini_run, pys_rates)]
            for run, rates in order if round_ % 2 == 0 else order[::-1]:
                seconds, _ = timed(run)
                rates.append(len(queries) / seconds)
        pys.close()
    xlir, base = statistics.median(xlir_rates), statistics.median(pys_rates)
    return (
        {"queries": len(queries), "xlir": xlir, "pyserini": base, "ratio": xlir / base},
        xlir_runs,
        pys_runs,
    )


def tatoeba_corpus(collection: Collection, out: Path) -> dict[str, Path]:
    """All English sides as one English corpus, all sentences as one corpus per language."""
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    with (out / "en.jsonl").open("w", encoding="utf-8") as english:
        for path in sorted((collection.root / "corpus").glob("eng-for-*.jsonl")):
            for line in path.open(encoding="utf-8"):
                doc = json.loads(line)
                english.write(
                    json.dumps({"id": doc["id"], "text": doc["text"], "lang": "en"}, ensure_ascii=False)
                    + "\n"
                )
    files["en"] = out / "en.jsonl"
    for lang in collection.query_languages():
        code = normalize_language(lang)
        path = out / f"{code}.jsonl"
        with path.open("a", encoding="utf-8") as sentences:
            for qid, text in collection.queries(lang).items():
                sentences.write(
                    json.dumps({"id": qid, "text": text, "lang": code}, ensure_ascii=False) + "\n"
                )
        files[code] = path
    return files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=data_root())
    parser.add_argument("--results", type=Path, default=Path("docs/RESULTS.md"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--tatoeba-queries", type=int, default=2000, help="Tatoeba queries timed (spread over languages)."
    )
    args = parser.parse_args(argv)
    ensure_jvm()
    xquad = Collection(args.data / "xquad")
    tatoeba = Collection(args.data / "tatoeba")
    rows_index, rows_search, rows_quality = [], [], []
    with tempfile.TemporaryDirectory(prefix="xlir-bench-") as tmp:
        work = Path(tmp)
        files = {lang: xquad.corpus_path(lang) for lang in xquad.document_languages()}
        result = bench_indexing("xquad", xquad.root / "corpus", files, work, args.repeat)
        rows_index.append(("XQuAD, 12 languages", result))
        for lang in MONOLINGUAL:
            topics, _, qrels = xquad.pair(lang, lang)
            speed, xlir_run, pys_run = bench_search(
                work / f"xquad-xlir-{args.repeat - 1}",
                work / f"xquad-pyserini-{args.repeat - 1}",
                lang,
                topics,
                args.repeat,
            )
            rows_search.append((f"XQuAD {lang}:{lang}", speed))
            rows_quality.append(
                (
                    lang,
                    evaluate(pys_run, qrels, ["nDCG@10"])["nDCG@10"],
                    evaluate(xlir_run, qrels, ["nDCG@10"])["nDCG@10"],
                )
            )
        for path in work.glob("xquad-*"):
            shutil.rmtree(path)

        files = tatoeba_corpus(tatoeba, work / "tatoeba-corpus")
        result = bench_indexing("tatoeba", work / "tatoeba-corpus", files, work, args.repeat)
        rows_index.append((f"Tatoeba, {len(files) - 1} languages + English", result))
        every = {}
        for lang in tatoeba.query_languages():
            every.update(tatoeba.queries(lang))
        step = max(1, len(every) // args.tatoeba_queries)
        sampled = dict(list(every.items())[::step][: args.tatoeba_queries])
        speed, _, _ = bench_search(
            work / f"tatoeba-xlir-{args.repeat - 1}",
            work / f"tatoeba-pyserini-{args.repeat - 1}",
            "en",
            sampled,
            args.repeat,
        )
        rows_search.append(("Tatoeba X -> English side", speed))

    replace_section(args.results, "bm25-benchmark", render(rows_index, rows_search, rows_quality, args))


def render(rows_index: list, rows_search: list, rows_quality: list, args: argparse.Namespace) -> str:
    from importlib.metadata import version

    lines = [
        "## BM25: xlir vs Pyserini called directly",
        "",
        f"Command: `python -m xlir.eval.bench_bm25 --data {args.data} --repeat {args.repeat}` "
        f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"pyserini {version('pyserini')}). Rates are per CPU second of the process (all threads, JVM included), "
        "not wall time, because the machine is shared. "
        f"Median of {args.repeat} alternating rounds; ratio = xlir / Pyserini "
        "from the same run. xlir's indexing time is its whole build (reading, language routing, docstore, "
        "Lucene sub-indexes, document-count verification, manifest); Pyserini's is `LuceneIndexer.add_batch_dict` "
        "per language with the same analyzer (the baseline of the bar), and, as a second reference, "
        "`add_batch_raw` with one `json.dumps` string per document: the Anserini entry point "
        "(`addRawDocuments`) xlir itself hands documents to, so that column is Pyserini at its cheapest. Search: one thread, k=100, the query language's sub-index only, "
        "after a full uncounted pass of both; each round alternates which goes first; both read every hit's id "
        "and score.",
        "",
        "| indexing | documents | xlir docs/s | Pyserini docs/s | ratio "
        "| Pyserini raw JSON docs/s | ratio vs raw |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows_index:
        lines.append(
            f"| {name} | {r['documents']:,} | {r['xlir']:,.0f} | {r['pyserini']:,.0f} | {r['ratio']:.2f} "
            f"| {r['pyserini_raw']:,.0f} | {r['ratio_raw']:.2f} |"
        )
    lines += ["", "| search | queries | xlir q/s | Pyserini q/s | ratio |", "|---|---:|---:|---:|---:|"]
    for name, r in rows_search:
        lines.append(
            f"| {name} | {r['queries']:,} | {r['xlir']:,.0f} | {r['pyserini']:,.0f} | {r['ratio']:.2f} |"
        )
    lines += ["", "| XQuAD monolingual nDCG@10 | Pyserini | xlir |", "|---|---:|---:|"]
    for lang, base, ours in rows_quality:
        lines.append(f"| {lang}:{lang} | {base:.3f} | {ours:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
