"""Every channel restricted to an ``allowed`` set of document ids, during retrieval (issue 21, F2).

A metadata corpus slice (XQuAD paragraphs in en, de, es with a year and a field per paragraph, from
``tests/metadata_corpus.py``) is built once with every channel; the neural channels use tiny models with
real architectures and random weights (a 2-layer BERT for dense and multivector, a 1-layer SPLADE).
A filter keeping about 1% of the documents must give exactly ``k`` hits, all allowed, on every channel;
where a channel is exhaustive the hits equal a brute-force ranking of the allowed documents.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_sentence_encoder, save_tiny_splade
from metadata_corpus import FIELDS, metadata_for, write_metadata_corpus

from xlir.indexing.builder import build_index
from xlir.indexing.channels.base import ChannelSearcher, open_searcher
from xlir.indexing.config import DenseConfig, IndexConfig, MultiVectorConfig, SparseConfig, TranslateConfig
from xlir.indexing.ranking import Ranking
from xlir.indexing.readers import open_corpus

K = 5
LANGS = ("en", "de", "es")
CHANNELS = ("bm25", "dense", "sparse", "multivector", "translate")
NEURAL_QUERY = "the history of the university and its football championship"
#: Only English queries here: the translate channel never looks for a query translator.
ENGLISH = [("en", 1.0)]


def _selected(docid: str) -> bool:
    meta = metadata_for(docid)
    return meta["year"] == 2000 and meta["field"] in FIELDS[:4]


@pytest.fixture(scope="module")
def corpus(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    path = write_metadata_corpus(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", LANGS)
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


@pytest.fixture(scope="module")
def allowed(corpus: list[dict]) -> frozenset[str]:
    chosen = frozenset(r["id"] for r in corpus if _selected(r["id"]))
    assert K <= len(chosen) <= 0.02 * len(corpus), "the filter keeps about 1% of the corpus"
    return chosen


@pytest.fixture(scope="module")
def lexical_query(corpus: list[dict], allowed: frozenset[str]) -> str:
    """Three long words of every allowed document: each one shares terms with the query."""
    words = []
    for record in sorted(corpus, key=lambda r: r["id"]):
        if record["id"] in allowed:
            found = sorted(set(re.findall(r"\w{6,}", record["text"])), key=lambda w: (-len(w), w))
            words.extend(found[:3])
    return " ".join(words)


@pytest.fixture(scope="module")
def tiny_models(corpus: list[dict], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A random-weight BERT (HF folder for multivector, sentence-transformers folder for dense) and a
    random-weight SPLADE, with WordPiece vocabularies trained on the corpus."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    texts = [r["text"] for r in corpus]
    root = tmp_path_factory.mktemp("tiny-models")
    hf, st = save_tiny_sentence_encoder(root, texts, vocab_size=2000)
    splade = save_tiny_splade(root / "splade", texts, vocab_size=300)
    torch.manual_seed(0)  # room for whole paragraphs (the SPLADE encoder reads up to 512 tokens)
    splade_config = BertConfig.from_pretrained(splade, max_position_embeddings=512)
    BertForMaskedLM(splade_config).save_pretrained(splade)
    return {"bert": str(hf), "st": str(st), "splade": str(splade)}


def _dense(model: str, kind: str) -> DenseConfig:
    return DenseConfig(model=model, index=kind, max_length=128, device="cpu")


@pytest.fixture(scope="module")
def index(corpus: list[dict], tiny_models: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("filtered")
    path = root / "corpus.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in corpus), "utf-8")
    config = IndexConfig(
        channels=CHANNELS,
        dense=_dense(tiny_models["st"], "flat"),
        sparse=SparseConfig(model=tiny_models["splade"], doc_top_k=48, query_top_k=48),
        multivector=MultiVectorConfig(
            model=tiny_models["bert"],
            head=None,
            nbits=4,
            centroids=64,
            doc_max_length=128,
            query_max_length=32,
            device="cpu",
        ),
        translate=TranslateConfig(target="en"),
    )
    build_index(open_corpus(path), root / "index", config)
    return root / "index"


def _open(index: Path, channel: str) -> ChannelSearcher:
    manifest = json.loads((index / "manifest.json").read_text("utf-8"))
    return open_searcher(channel, index / channel, manifest["channels"][channel])


@pytest.fixture(scope="module")
def searchers(index: Path):
    opened = {channel: _open(index, channel) for channel in CHANNELS}
    yield opened
    for searcher in opened.values():
        searcher.close()


@pytest.fixture(params=CHANNELS)
def channel(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def searcher(channel: str, searchers: dict) -> ChannelSearcher:
    return searchers[channel]


@pytest.fixture
def query(channel: str, lexical_query: str) -> str:
    """Words of the allowed documents for the lexical channels, a sentence for the neural ones."""
    return lexical_query if channel in ("bm25", "translate") else NEURAL_QUERY


def _pairs(ranking: Ranking) -> list[tuple[str, float]]:
    return [(hit.docid, round(hit.score, 4)) for hit in ranking]


def _top(scored: dict[str, float], k: int) -> list[tuple[str, float]]:
    best = sorted(scored.items(), key=lambda item: (-item[1], item[0]))[:k]
    return [(docid, round(score, 4)) for docid, score in best]


def _reference(searcher: ChannelSearcher, channel: str, query: str, keep: frozenset[str]) -> dict[str, float]:
    """Brute-force scores of the documents in ``keep`` that the channel would rank for ``query``."""
    if channel in ("bm25", "translate"):  # every matching document, unrestricted, then filtered
        everything = searcher.search(query, 10_000, query_lang=ENGLISH[0])
        return {hit.docid: hit.score for hit in everything if hit.docid in keep}
    if channel == "dense":
        vectors = searcher.index.reconstruct_n(0, searcher.index.ntotal)
        query_vector = searcher.encoder.encode_queries([query])[0]
        scores = vectors @ query_vector
        return {d: float(scores[i]) for i, d in enumerate(searcher.docids) if d in keep}
    if channel == "sparse":
        scores = (searcher.encoder.encode_queries([query]).tocsr() @ searcher._index).toarray()[0]
        return {d: float(scores[i]) for i, d in enumerate(searcher._docids) if d in keep and scores[i] > 0}
    assert channel == "multivector"
    positions = np.array([i for i, d in enumerate(searcher.docids) if d in keep], dtype=np.int64)
    query_vectors = searcher.encoder.encode_queries([query])[0]
    scores = searcher.maxsim(query_vectors, positions)
    return {searcher.docids[p]: float(s) for p, s in zip(positions.tolist(), scores.tolist(), strict=True)}


def test_one_percent_filter_returns_k_hits_equal_to_brute_force(
    channel: str, searcher: ChannelSearcher, query: str, allowed: frozenset[str]
) -> None:
    reference = _reference(searcher, channel, query, allowed)
    assert len(reference) >= K, "the test query must match at least k allowed documents"
    [ranking] = searcher.batch_search([query], K, query_langs=ENGLISH, allowed=allowed)
    assert len(ranking) == K and {hit.docid for hit in ranking} <= allowed
    assert _pairs(ranking) == _top(reference, K)
    single = searcher.search(query, K, query_lang=ENGLISH[0], allowed=set(allowed))
    assert _pairs(single) == _pairs(ranking)


def test_languages_and_allowed_ids_compose(
    channel: str, searcher: ChannelSearcher, query: str, allowed: frozenset[str], corpus: list[dict]
) -> None:
    langs = {r["id"]: r["lang"] for r in corpus}
    both = frozenset(d for d in allowed if langs[d] in ("de", "es"))
    [ranking] = searcher.batch_search([query], K, ["de", "es"], query_langs=ENGLISH, allowed=allowed)
    assert {hit.docid for hit in ranking} <= both and {hit.lang for hit in ranking} <= {"de", "es"}
    assert _pairs(ranking) == _top(_reference(searcher, channel, query, both), K)


def test_empty_unknown_and_everything_allowed(
    channel: str, searcher: ChannelSearcher, query: str, allowed: frozenset[str], corpus: list[dict]
) -> None:
    assert (
        searcher.batch_search([query, query], K, query_langs=ENGLISH * 2, allowed=set())
        == [Ranking(source=channel)] * 2
    )
    assert len(searcher.search(query, K, ["fr"], query_lang=ENGLISH[0], allowed=allowed)) == 0
    strangers = {"no-such-document", "en-zz99p99"}
    [known] = searcher.batch_search([query], K, query_langs=ENGLISH, allowed=allowed)
    [mixed] = searcher.batch_search([query], K, query_langs=ENGLISH, allowed=allowed | strangers)
    assert _pairs(mixed) == _pairs(known)
    assert searcher.batch_search([query], K, query_langs=ENGLISH, allowed=strangers)[0].hits == ()
    if channel != "multivector":  # exhaustive channels: everything allowed = no restriction at all
        everything = frozenset(r["id"] for r in corpus)
        [free] = searcher.batch_search([query], K, query_langs=ENGLISH)
        [full] = searcher.batch_search([query], K, query_langs=ENGLISH, allowed=everything)
        assert len(free) == K and _pairs(full) == _pairs(free)


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_approximate_dense_indexes_return_k_allowed_hits(
    kind: str,
    index: Path,
    corpus: list[dict],
    allowed: frozenset[str],
    searchers: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The built flat channel's vectors re-indexed as ``kind`` (the writer's own index builder)."""
    import faiss

    from xlir.indexing.channels.dense import searcher as dense_searcher
    from xlir.indexing.channels.dense.writer import build_faiss_index

    flat = searchers["dense"]
    shutil.copytree(index / "dense", tmp_path / "dense")
    built, built_kind, extra = build_faiss_index(flat.index.reconstruct_n(0, flat.index.ntotal), kind)
    assert built_kind == kind
    faiss.write_index(built, str(tmp_path / "dense" / "index.faiss"))
    searcher = open_searcher("dense", tmp_path / "dense", {**flat.details, **extra, "index": kind})
    [ranking] = searcher.batch_search([NEURAL_QUERY], K, allowed=allowed)
    assert len(ranking) == K and {hit.docid for hit in ranking} <= allowed
    scores = [hit.score for hit in ranking]
    assert scores == sorted(scores, reverse=True)
    if kind == "hnsw":  # few allowed: the stored (exact) vectors of every allowed document are scored
        [exact] = flat.batch_search([NEURAL_QUERY], K, allowed=allowed)
        assert _pairs(ranking) == _pairs(exact)
    # a broad filter takes the approximate path (with the exhaustive one behind it when short)
    monkeypatch.setattr(dense_searcher, "EXHAUSTIVE_MAX", 16)
    monkeypatch.setattr(dense_searcher, "EXHAUSTIVE_SHARE", 0.01)
    half = frozenset(r["id"] for r in corpus[::2])
    for found in searcher.batch_search([NEURAL_QUERY, corpus[1]["text"]], K, ["de"], allowed=half):
        assert len(found) == K and all(h.docid in half and h.lang == "de" for h in found)
    searcher.close()


def test_multivector_candidates_restricted_to_allowed_documents(
    index: Path, corpus: list[dict], allowed: frozenset[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PLAID candidate generation (not the exhaustive path) under a broad and a selective filter."""
    from xlir.indexing.channels.multivector import searcher as mv_searcher

    monkeypatch.setattr(mv_searcher, "EXHAUSTIVE_MAX", 0)
    manifest = json.loads((index / "manifest.json").read_text("utf-8"))
    details = manifest["channels"]["multivector"]
    searcher = mv_searcher.MultiVectorSearcher(index / "multivector", details, ndocs=8, device="cpu")
    half = frozenset(r["id"] for r in corpus[1::2])
    for found in searcher.batch_search([NEURAL_QUERY, corpus[3]["text"]], K, allowed=half):
        assert len(found) == K and {h.docid for h in found} <= half
    [few] = searcher.batch_search([NEURAL_QUERY], K, allowed=allowed)
    assert len(few) == K and {h.docid for h in few} <= allowed
    [deep] = searcher.batch_search([NEURAL_QUERY], 2 * len(allowed), allowed=allowed)
    assert set(deep.docids) == allowed, "k above the allowed count: every allowed document comes back"
    searcher.close()
