"""The ``tatoeba`` task: every Tatoeba language X -> its English side, every system on every language.

Accuracy@1 and nDCG@10: the means over languages, the focus languages one by one, and accuracy@1 per
language for the systems in :data:`PER_LANGUAGE`. ``--tatoeba-channels`` picks the xlir channels (with one
channel there is no fused run), ``--tatoeba-langs`` the languages.
"""

from __future__ import annotations

import logging
import shutil
import statistics
from collections.abc import Mapping
from pathlib import Path

from xlir.eval.baselines import E5Direct, PyseriniBM25, read_corpus
from xlir.eval.collection import Collection
from xlir.eval.grid import cached_index
from xlir.eval.metrics import evaluate
from xlir.eval.tasks.base import Task, TaskContext, TaskResult, judged, means, pair_table, xlir_runs
from xlir.eval.trec import Run
from xlir.indexing.config import IndexConfig
from xlir.retrieval.searcher import Searcher

log = logging.getLogger(__name__)

#: Systems shown in the per-language table (the others are in the means).
PER_LANGUAGE = (
    "Pyserini BM25 (direct)",
    "mE5-small (direct)",
    "xlir dense",
    "xlir sparse",
    "xlir multivector",
    "xlir fused",
)


def run(context: TaskContext) -> TaskResult:
    settings = context.settings
    tatoeba = Collection(context.data / "tatoeba")
    e5 = E5Direct(settings.depth)
    acc: dict[str, dict[str, float]] = {}
    ndcg10: dict[str, dict[str, float]] = {}
    languages = list(settings.tatoeba_langs) if settings.tatoeba_langs else tatoeba.query_languages()
    channels = settings.tatoeba_channels
    for lang in languages:
        topics, corpus, qrels = tatoeba.pair(lang, "eng")
        topics = context.first(topics)
        qrels = judged(qrels, topics)
        index = cached_index(
            tatoeba, [corpus.stem], context.cache, IndexConfig(channels=channels), name=f"tatoeba-{lang}"
        )
        ids, texts = read_corpus(corpus)
        work = context.work / f"pyserini-tatoeba-{lang}"
        runs = {
            "Pyserini BM25 (direct)": PyseriniBM25(corpus, "en", work, settings.depth).run(topics),
            "mE5-small (direct)": e5.run(topics, ids, e5.encode(texts, "passage")),
            **(
                xlir_runs(index, topics, channels, settings.depth)
                if len(channels) > 1
                else _single(index, topics, channels[0], settings.depth)
            ),
        }
        shutil.rmtree(work, ignore_errors=True)
        for system, ranked in runs.items():
            result = evaluate(ranked, qrels, ["Success@1", "nDCG@10"])
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
    focus = [lang for lang in settings.tatoeba_focus if lang in languages]
    if focus:
        lines += ["", *pair_table(acc, focus, "accuracy@1, X -> English (focus languages)")]
        lines += ["", *pair_table(ndcg10, focus, "nDCG@10, X -> English (focus languages)")]
    shown = [s for s in complete if s in PER_LANGUAGE]
    lines += [
        "",
        "accuracy@1 per language:",
        "",
        "| language | " + " | ".join(s.replace("xlir ", "") for s in shown) + " |",
        "|---|" + "---:|" * len(shown),
        *[f"| {lang} | " + " | ".join(f"{acc[s][lang]:.3f}" for s in shown) + " |" for lang in languages],
    ]
    scores = means({s: acc[s] for s in complete}, "{} acc@1")
    scores.update(means({s: ndcg10[s] for s in complete}, "{} nDCG@10"))
    return TaskResult("\n".join(lines), scores)


def _single(index: Path, topics: Mapping[str, str], channel: str, depth: int) -> dict[str, Run]:
    """The one channel's run (a fused run of one channel would be the same run)."""
    with Searcher(index) as searcher:
        return {f"xlir {channel}": searcher.rankings(topics, k=depth, channels=[channel])}


TASK = Task("tatoeba", ("depth", "tatoeba_channels", "tatoeba_langs", "tatoeba_focus"), run)
