"""The ``dense-throughput`` task: the dense channel's encoding overhead inside an index build.

The same XQuAD paragraphs are encoded by mE5-small used directly and inside ``build_index`` (encoding +
FAISS), in alternating rounds; the table gives the medians. Timings are not regression data (too noisy
on shared CPUs), so this task returns no means.
"""

from __future__ import annotations

import statistics
import time

from xlir.eval.baselines import E5Direct, read_corpus
from xlir.eval.collection import Collection
from xlir.eval.tasks.base import Task, TaskContext, TaskResult
from xlir.indexing.builder import build_index
from xlir.indexing.config import IndexConfig
from xlir.indexing.documents import Document


def run(context: TaskContext) -> TaskResult:
    settings = context.settings
    xquad = Collection(context.data / "xquad")
    docs = [
        Document(id=doc_id, text=text, lang=lang)
        for lang in settings.throughput_languages
        for doc_id, text in zip(*read_corpus(xquad.corpus_path(lang)), strict=True)
    ][: context.limit or settings.throughput_documents]
    e5 = E5Direct()
    texts = [doc.text for doc in docs]
    direct, inside = [], []
    for round_ in range(settings.throughput_rounds):
        started = time.perf_counter()
        e5.encode(texts, "passage")
        direct.append(len(texts) / (time.perf_counter() - started))
        manifest = build_index(docs, context.work / f"dense-{round_}", IndexConfig(channels=("dense",)))
        inside.append(len(texts) / manifest.channels["dense"]["build_seconds"])
    ratio = statistics.median(inside) / statistics.median(direct)
    body = (
        f"{len(texts)} XQuAD paragraphs ({', '.join(settings.throughput_languages)}), batch 32, CPU, "
        f"{settings.throughput_rounds} alternating rounds, medians: sentence-transformers used directly "
        f"{statistics.median(direct):.1f} docs/s; the dense channel inside `build_index` (encoding + FAISS) "
        f"{statistics.median(inside):.1f} docs/s; ratio {ratio:.2f}."
    )
    return TaskResult(body, {})


TASK = Task("dense-throughput", ("throughput_languages", "throughput_documents", "throughput_rounds"), run)
