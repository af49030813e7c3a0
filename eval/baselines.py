"""The baselines the reproduction tasks run beside xlir: Pyserini BM25 and mE5-small, each used directly.

* :class:`PyseriniBM25`: a LuceneIndexer over one corpus with its language's analyzer, LuceneSearcher;
* :class:`PyseriniPool`: one such index per document language of a multilingual pool, hits merged by score;
* :class:`E5Direct`: multilingual-e5-small through sentence-transformers, cosine over every document.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from xlir.eval.trec import Run
from xlir.indexing.ranking import Ranking


class PyseriniBM25:
    """Pyserini used directly: a LuceneIndexer over one corpus with its language's analyzer, LuceneSearcher."""

    def __init__(self, corpus: Path, lang: str, work: Path, depth: int = 100) -> None:
        from xlir.eval.bench_bm25 import pyserini_index, pyserini_searcher
        from xlir.indexing.channels.bm25.analyzers import LUCENE_ANALYZERS

        self.lang, self.depth = lang, depth
        pyserini_index({lang: corpus}, work)
        self._searcher = pyserini_searcher(work / lang, lang) if lang in LUCENE_ANALYZERS else None
        if self._searcher is None:  # the neutral analyzer: same Java analyzer object xlir uses
            from pyserini.search.lucene import LuceneSearcher

            from xlir.indexing.channels.bm25.analyzers import analyzer_for, java_analyzer

            self._searcher = LuceneSearcher(str(work / lang))
            self._searcher.object.set_analyzer(java_analyzer(analyzer_for(lang)))
            self._searcher.set_bm25(0.9, 0.4)

    def run(self, topics: Mapping[str, str]) -> Run:
        from xlir.indexing.channels.bm25.analyzers import analyzer_for, prepare_text

        analyzer = analyzer_for(self.lang)
        return {
            qid: Ranking.from_scores(
                "pyserini",
                [(h.docid, h.score) for h in self._searcher.search(prepare_text(analyzer, text), self.depth)],
            )
            for qid, text in topics.items()
        }


class PyseriniPool:
    """Pyserini used directly over a multilingual pool: one index per document language, each with its
    language's analyzer, the query run against every one and the hits merged by BM25 score."""

    def __init__(self, corpora: Mapping[str, Path], work: Path, depth: int = 100) -> None:
        self.depth = depth
        self._systems = [PyseriniBM25(path, lang, work / lang, depth) for lang, path in corpora.items()]

    def run(self, topics: Mapping[str, str]) -> Run:
        per_language = [system.run(topics) for system in self._systems]
        return {
            qid: Ranking.from_scores(
                "pyserini",
                sorted(
                    ((h.docid, h.score) for run in per_language for h in run[qid].hits),
                    key=lambda pair: -pair[1],
                )[: self.depth],
            )
            for qid in topics
        }


class E5Direct:
    """multilingual-e5-small through sentence-transformers, used directly: cosine over all documents."""

    def __init__(self, depth: int = 100) -> None:
        from xlir.models.registry import load_sentence_transformer

        self.model = load_sentence_transformer()
        self.depth = depth

    def encode(self, texts: list[str], prompt: str) -> np.ndarray:
        return self.model.encode(
            texts, prompt_name=prompt, batch_size=32, normalize_embeddings=True, show_progress_bar=False
        )

    def run(self, topics: Mapping[str, str], doc_ids: list[str], doc_vectors: np.ndarray) -> Run:
        qids = list(topics)
        scores = self.encode([topics[q] for q in qids], "query") @ doc_vectors.T
        run: Run = {}
        for qid, row in zip(qids, scores, strict=True):
            top = np.argsort(-row)[: self.depth]
            run[qid] = Ranking.from_scores("e5", [(doc_ids[i], float(row[i])) for i in top])
        return run


def read_corpus(path: Path) -> tuple[list[str], list[str]]:
    """The ids and texts of a ``corpus/*.jsonl`` file, in file order."""
    ids, texts = [], []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            doc = json.loads(line)
            ids.append(doc["id"])
            texts.append(doc["text"])
    return ids, texts
