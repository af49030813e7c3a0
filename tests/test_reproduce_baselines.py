"""The baselines of the reproduction tasks (``xlir.eval.baselines``) agree with xlir where they should: Pyserini over a multilingual pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from xlir.eval.baselines import PyseriniPool
from xlir.eval.collection import Collection
from xlir.indexing.builder import build_index
from xlir.indexing.config import IndexConfig
from xlir.indexing.readers import open_corpus
from xlir.retrieval.searcher import Searcher


def test_pyserini_pool_ranks_like_xlir_bm25_over_every_language(sample: Path, tmp_path: Path) -> None:
    collection = Collection(sample)
    corpora = {lang: collection.corpus_path(lang) for lang in collection.document_languages()}
    assert len(corpora) == 6
    index = tmp_path / "index"
    build_index(open_corpus(sample), index, IndexConfig(channels=("bm25",)))
    topics = {qid: text for qid, text in list(collection.queries("en").items())[:5]}
    topics["de-q"] = next(iter(collection.queries("de").values()))
    baseline = PyseriniPool(corpora, tmp_path / "pyserini").run(topics)
    with Searcher(index) as searcher:
        xlir = searcher.rankings(topics, k=100, channels=["bm25"])
    for qid in topics:
        assert len({docid.split("-")[0] for docid in baseline[qid].docids}) >= 2, (
            "hits from several languages"
        )
        assert baseline[qid].docids[:10] == xlir[qid].docids[:10]
        assert [h.score for h in baseline[qid].hits[:10]] == [
            pytest.approx(h.score, rel=1e-5) for h in xlir[qid].hits[:10]
        ]
