"""The Searcher facade over a real index of the bundled sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from xlir.indexing.manifest import IndexNotFoundError
from xlir.retrieval.query import MAX_QUERY_CHARS, QueryError
from xlir.retrieval.searcher import Searcher


@pytest.fixture(scope="module")
def searcher(sample_index: Path) -> Searcher:
    with Searcher(sample_index) as searcher:
        yield searcher


def test_monolingual_question_finds_its_paragraph(searcher: Searcher) -> None:
    result = searcher.search("How many points did the Panthers defense surrender?", k=5, langs=["en"])
    assert result.hits[0].docid == "en-a00p00"
    assert result.query_lang == "en"
    assert [h.rank for h in result.hits] == [1, 2, 3, 4, 5]
    assert all(h.lang == "en" for h in result.hits)
    assert result.hits[0].text.startswith("The Panthers defense")
    assert result.hits[0].sources["bm25"].rank == 1


def test_cross_lingual_query_reaches_other_languages_through_shared_names(searcher: Searcher) -> None:
    result = searcher.search("Panthers defense Kawann Short sacks", k=3, langs=["de"])
    assert result.hits[0].docid == "de-a00p00"
    assert result.hits[0].lang == "de"


def test_language_filter_accepts_any_code_form(searcher: Searcher) -> None:
    by_639_3 = searcher.ranking("Panthers", k=5, langs=["deu"])
    by_639_1 = searcher.ranking("Panthers", k=5, langs=["de"])
    assert by_639_3.docids == by_639_1.docids
    assert all(d.startswith("de-") for d in by_639_1.docids)


def test_unfiltered_search_merges_languages(searcher: Searcher) -> None:
    ranking = searcher.ranking("Panthers Kawann Short", k=20)
    assert len({docid.split("-")[0] for docid in ranking.docids}) >= 3
    scores = [hit.score for hit in ranking]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("query", "kwargs", "message"),
    [
        ("", {}, "empty"),
        ("   ", {}, "empty"),
        ("x" * (MAX_QUERY_CHARS + 1), {}, "limit"),
        ("Panthers", {"k": 0}, "k must be"),
        ("Panthers", {"langs": ["fr"]}, "no documents in language"),
        ("Panthers", {"langs": ["not-a-language!"]}, "language"),
        ("Panthers", {"channels": ["dense"]}, "unknown channel"),
    ],
)
def test_bad_queries_get_clear_errors(searcher: Searcher, query: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        searcher.search(query, **kwargs)


def test_opening_something_that_is_not_an_index(tmp_path: Path, sample_index: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="no such index"):
        Searcher(tmp_path / "nowhere")
    with pytest.raises(IndexNotFoundError, match="not an xlir index"):
        Searcher(tmp_path)
    with pytest.raises(QueryError, match="has no channel"):
        Searcher(sample_index, channels=["dense"])


def test_batch_rankings_equal_one_by_one(searcher: Searcher) -> None:
    queries = {
        "q1": "How many points did the Panthers defense surrender?",
        "q2": "Wer gewann den Super Bowl?",
        "q3": "Panthers",
    }
    batched = searcher.rankings(queries, k=5, langs=["en", "de"])
    for qid, text in queries.items():
        single = searcher.ranking(text, k=5, langs=["en", "de"])
        assert batched[qid].docids == single.docids
        assert [h.score for h in batched[qid]] == pytest.approx([h.score for h in single])
    with pytest.raises(QueryError, match="empty"):
        searcher.rankings({"q": ""})


@pytest.fixture(scope="module")
def neural_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample with BM25 and the real default dense model (prepared once per machine)."""
    from conftest import SAMPLE

    from xlir.indexing.builder import build_index
    from xlir.indexing.config import IndexConfig
    from xlir.indexing.readers import open_corpus

    target = tmp_path_factory.mktemp("neural") / "sample"
    build_index(open_corpus(SAMPLE), target, IndexConfig(channels=("bm25", "dense")))
    return target


def test_fused_search_crosses_languages_and_keeps_bm25_to_the_query_language(neural_index: Path) -> None:
    question = "How many points did the Panthers defense surrender?"
    with Searcher(neural_index) as searcher:
        fused = searcher.search(question, k=20)
        assert fused.hits[0].docid == "en-a00p00"
        bm25_langs = {hit.lang for hit in fused.hits if "bm25" in hit.sources}
        assert bm25_langs == {"en"}, "fused BM25 evidence must come from the query's own language"
        assert {hit.lang for hit in fused.hits} > {"en"}, "dense brings other languages"
        chinese = searcher.search(question, k=3, langs=["zh"])
        assert chinese.hits[0].docid == "zh-a00p00"
        assert set(chinese.hits[0].sources) == {"dense"}
        alone = searcher.ranking(question, k=20, channels=["bm25"])
        assert {docid.split("-")[0] for docid in alone.docids} > {"en"}, "BM25 alone searches every language"
        batched = searcher.rankings({"q": question}, k=20)
        assert batched["q"].docids == searcher.ranking(question, k=20).docids
        # BM25 (English only) reorders the places English holds in the dense ranking, and takes no more
        dense = searcher.ranking(question, k=100, channels=["dense"])
        fused100 = searcher.ranking(question, k=100)
        assert [h.lang == "en" for h in fused100.hits[:20]] == [h.lang == "en" for h in dense.hits[:20]]
        assert [h.docid for h in fused100.hits[:20] if h.lang != "en"] == [
            h.docid for h in dense.hits[:20] if h.lang != "en"
        ]


def test_fused_rankings_reuse_channels_already_searched_alone(neural_index: Path) -> None:
    queries = {
        "q1": "How many points did the Panthers defense surrender?",
        "q2": "Wer gewann den Super Bowl?",
    }
    with Searcher(neural_index) as searcher:
        alone = {c: searcher.rankings(queries, k=100, channels=[c]) for c in ("bm25", "dense")}
        fresh = searcher.rankings(queries, k=100)
        dense = searcher._stage.channels["dense"]
        calls: list[int] = []
        original = dense.batch_search
        dense.batch_search = lambda texts, k, langs, **kw: (
            calls.append(len(texts)) or original(texts, k, langs)
        )
        try:
            reused = searcher.rankings(queries, k=100, searched=alone)
        finally:
            del dense.batch_search
    assert calls == [], "dense was searched alone already; the fused run must not encode the queries again"
    for qid in queries:
        assert reused[qid].docids == fresh[qid].docids
        assert [h.score for h in reused[qid]] == pytest.approx([h.score for h in fresh[qid]])
