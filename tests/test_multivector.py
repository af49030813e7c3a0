"""The multi-vector (late-interaction) channel: token encoders, PLAID-style codec, writer and searcher.

Tests build their own tiny models: a real BERT (hidden 32, 2 layers) and a real X-MOD (two language
adapters) with random weights and a WordPiece vocabulary trained on the test texts. Random weights still
map identical text to identical token vectors, which the retrieval tests rely on; the X-MOD test checks
that switching the language adapter changes the vectors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import documents_in, nonsense_texts

from xlir.indexing.builder import build_index
from xlir.indexing.channels.base import open_searcher
from xlir.indexing.channels.multivector.codec import ResidualCodec, default_centroids
from xlir.indexing.channels.multivector.searcher import MultiVectorSearcher
from xlir.indexing.config import IndexConfig, MultiVectorConfig
from xlir.indexing.documents import Document
from xlir.models.encoders.colbert_xm import ColBERTXMEncoder, xmod_language
from xlir.models.encoders.heads import DEFAULT_HEAD, default_head, load_head, make_head, save_head
from xlir.models.encoders.token_base import TokenEncoderError
from xlir.models.encoders.tokens import HFTokenEncoder, open_token_encoder


def _texts(n: int, seed: int = 11) -> list[str]:
    return nonsense_texts(n, seed=seed, words=400, length=(6, 14))


TEXTS = _texts(90)
DOCS = documents_in(TEXTS)
#: The size of the random-weight backbones below (BERT and X-MOD alike).
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def _tokenizer(folder: Path, texts: list[str]):
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(texts, vocab_size=800, min_frequency=1, show_progress=False)
    trainer.save_model(str(folder))
    return BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight BERT folder (transformers layout) with prompts, as the mE5 folder has."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = _tokenizer(folder, TEXTS + ["query passage"])
    config = BertConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=128, **TINY)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    prompts = {"prompts": {"query": "query: ", "passage": "passage: "}}
    (folder / "config_sentence_transformers.json").write_text(json.dumps(prompts), "utf-8")
    return folder


@pytest.fixture(scope="module")
def tiny_xmod(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight ColBERT-XM in colbert-ai's layout: X-MOD backbone under ``roberta.`` + ``linear``."""
    import torch
    from safetensors.torch import save_file
    from transformers import XmodConfig, XmodModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-xmod")
    tokenizer = _tokenizer(folder, TEXTS)
    config = XmodConfig(
        vocab_size=tokenizer.vocab_size,
        max_position_embeddings=130,
        **TINY,
        pad_token_id=tokenizer.pad_token_id,
        languages=["en_XX", "de_DE"],
        default_language="en_XX",
    )
    model = XmodModel(config, add_pooling_layer=False)
    with torch.no_grad():  # make the two adapters clearly different
        for layer in model.encoder.layer:
            for p in layer.output.adapter_modules["de_DE"].parameters():
                p.add_(torch.randn_like(p))
    state = {f"roberta.{k}": v.contiguous() for k, v in model.state_dict().items()}
    state["linear.weight"] = torch.randn(16, 32)
    save_file(state, str(folder / "model.safetensors"))
    config.architectures = ["HF_ColBERT"]
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "artifact.metadata").write_text(json.dumps({"query_maxlen": 16, "doc_maxlen": 64}), "utf-8")
    return folder


# --- encoders ---------------------------------------------------------------------------------------------


def test_hf_token_encoder_drops_special_tokens_and_normalizes(tiny_bert: Path) -> None:
    encoder = HFTokenEncoder(str(tiny_bert), device="cpu")
    assert encoder.prompts == {"query": "query: ", "passage": "passage: "}
    [doc] = encoder.encode_documents([TEXTS[0]])
    ids = encoder.tokenizer("passage: " + TEXTS[0])["input_ids"]
    assert doc.shape == (len(ids) - 2, 32)  # [CLS] and [SEP] dropped, prompt tokens kept
    assert np.allclose(np.linalg.norm(doc, axis=1), 1.0, atol=1e-5)
    [query] = encoder.encode_queries([TEXTS[0]])
    assert not np.allclose(query[-1], doc[-1])  # the prompt changes the context


def test_query_augmentation_pads_with_mask_tokens(tiny_bert: Path) -> None:
    encoder = HFTokenEncoder(str(tiny_bert), query_augment=24, device="cpu")
    [short] = encoder.encode_queries(["kalo mine"])
    assert short.shape[0] == 24 - 2  # 24 positions: [CLS] and [SEP] dropped, query tokens and masks kept
    assert np.allclose(np.linalg.norm(short, axis=1), 1.0, atol=1e-5)


def test_head_round_trip_and_projection(tiny_bert: Path, tmp_path: Path) -> None:
    import torch

    head = make_head(32, 8, hidden=16)
    with torch.no_grad():
        head.linear.weight.normal_()
    save_head(head, tmp_path / "h", {"backbone": str(tiny_bert), "query_augment": 0, "seed": 1})
    loaded, info = load_head(str(tmp_path / "h"))
    assert info["seed"] == 1 and info["out_dim"] == 8
    x = torch.randn(5, 32)
    assert torch.allclose(loaded(x), head(x))
    encoder = HFTokenEncoder(str(tiny_bert), head=str(tmp_path / "h"), device="cpu")
    [doc] = encoder.encode_documents([TEXTS[1]])
    assert encoder.dim == 8 and doc.shape[1] == 8
    with pytest.raises(TokenEncoderError, match="no ColBERT head"):
        load_head(str(tmp_path / "missing"))
    bad = make_head(48, 8)
    save_head(bad, tmp_path / "bad", {})
    with pytest.raises(TokenEncoderError, match="expects 48-d"):
        HFTokenEncoder(str(tiny_bert), head=str(tmp_path / "bad"), device="cpu")


def test_shipped_head_has_provenance_and_is_the_default_for_me5(tiny_bert: Path) -> None:
    import torch

    head, info = load_head(DEFAULT_HEAD)
    assert (info["in_dim"], info["out_dim"]) == (384, 384) and info["backbone"] == "multilingual-e5-small"
    assert info["command"].startswith("xlir train colbert") and isinstance(info["seed"], int)
    assert set(info["trained_on"]) == {"msmarco-dev-small", "squad-train-part"}
    assert (
        info["measured"]["xquad_ndcg10_exhaustive_maxsim"]["mean"]
        > info["measured"]["xquad_ndcg10_untrained_raw_states"]["mean"]
    )
    assert torch.isfinite(head.linear.weight).all()
    assert default_head("multilingual-e5-small") == DEFAULT_HEAD
    assert default_head("intfloat/multilingual-e5-small") == DEFAULT_HEAD
    assert default_head(str(tiny_bert)) is None  # another backbone gets raw states under "auto"
    assert HFTokenEncoder(str(tiny_bert), head="auto", device="cpu").head is None


def test_xmod_language_mapping() -> None:
    available = ["en_XX", "de_DE", "zh_CN"]
    assert xmod_language("de", available) == "de_DE"
    assert xmod_language("zh", available) == "zh_CN"
    assert xmod_language("fr", available) == "en_XX"  # no French adapter: English
    assert xmod_language(None, available) == "en_XX"
    assert xmod_language("fr", ["de_DE", "fr_XX"]) == "fr_XX"


def test_colbert_xm_switches_language_adapter_per_text(tiny_xmod: Path) -> None:
    encoder = open_token_encoder({"model": str(tiny_xmod)}, device="cpu")
    assert isinstance(encoder, ColBERTXMEncoder)
    assert encoder.dim == 16 and encoder.languages == ["en_XX", "de_DE"]
    text = TEXTS[3]
    en, de, fr, mixed_en, mixed_de = encoder.encode_documents(
        [text, text, text, text, text], ["en", "de", "fr", "en", "de"]
    )
    assert en.shape == de.shape and np.allclose(np.linalg.norm(en, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(en, de, atol=1e-3)  # the German adapter made different vectors
    assert np.allclose(en, fr, atol=1e-5)  # no French adapter: English fallback
    assert np.allclose(mixed_en, en, atol=1e-5) and np.allclose(
        mixed_de, de, atol=1e-5
    )  # per text in a batch
    [query] = encoder.encode_queries(["kalo"], ["de"])
    assert query.shape == (16, 16)  # padded with mask tokens to query_maxlen, every position kept
    # without a language the adapter comes from language identification
    german = "Die Bibliothek bleibt am Sonntag geschlossen, aber das Café hat geöffnet."
    assert encoder.adapters_for([german, "The library is closed on Sunday."], None) == ["de_DE", "en_XX"]


def test_colbert_xm_refuses_a_folder_without_projection(tiny_bert: Path) -> None:
    with pytest.raises(TokenEncoderError, match="not an X-MOD model"):
        ColBERTXMEncoder(str(tiny_bert), device="cpu")


# --- codec ------------------------------------------------------------------------------------------------


def _clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(20, dim))
    x = centers[rng.integers(0, 20, n)] + 0.35 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_codec_round_trip_error_is_bounded_and_shrinks_with_bits() -> None:
    x = _clustered(4000, 32)
    cos = {}
    for nbits in (1, 2, 4):
        codec = ResidualCodec.train(x, 64, nbits=nbits)
        codes, packed = codec.compress(x)
        assert packed.shape == (4000, 32 * nbits // 8) and packed.dtype == np.uint8
        restored = codec.decompress(codes, packed)
        cos[nbits] = float(np.mean(np.sum(x * restored, axis=1)))
    assert cos[1] > 0.85 and cos[2] > 0.93 and cos[4] > 0.98
    assert cos[1] < cos[2] < cos[4]
    assert default_centroids(1) == 1 and default_centroids(500_000) == 2048
    with pytest.raises(ValueError, match="nbits"):
        ResidualCodec.train(x, 8, nbits=3)


# --- writer and searcher through real builds ----------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    target = tmp_path_factory.mktemp("mv") / "index"
    config = IndexConfig(
        channels=("multivector",),
        multivector=MultiVectorConfig(model=str(tiny_bert), nbits=4, centroids=64, device="cpu"),
    )
    manifest = build_index(DOCS, target, config)
    return target, manifest.channels["multivector"]


def test_build_records_codec_and_sizes(built: tuple[Path, dict]) -> None:
    target, details = built
    assert details["documents"] == len(DOCS) and details["dim"] == 32 and details["centroids"] == 64
    assert details["bytes_per_token"] == 32 * 4 // 8 + 2  # residual nibbles + uint16 centroid id
    assert details["fp16_bytes_per_token"] == 64 and details["compression_ratio"] > 3.5
    assert details["reconstruction_cosine"] > 0.95
    manifest = json.loads((target / "manifest.json").read_text("utf-8"))
    assert manifest["config"]["multivector"]["nbits"] == 4


def test_round_trip_finds_each_document_by_its_text(built: tuple[Path, dict]) -> None:
    target, details = built
    searcher = open_searcher("multivector", target / "multivector", details)
    rankings = searcher.batch_search([d.text for d in DOCS[:20]], k=3)
    top = [r.hits[0].docid for r in rankings]
    assert sum(t == d.id for t, d in zip(top, DOCS[:20], strict=True)) >= 19
    hit = rankings[0].hits[0]
    assert hit.lang == DOCS[0].lang and hit.sources["multivector"].rank == 1
    assert [h.score for h in rankings[0].hits] == sorted((h.score for h in rankings[0].hits), reverse=True)


def test_scores_equal_exhaustive_maxsim(built: tuple[Path, dict]) -> None:
    target, details = built
    searcher = MultiVectorSearcher(target / "multivector", details, ndocs=10_000, device="cpu")
    [query] = searcher.encoder.encode_queries([TEXTS[5]])
    ranking = searcher.search_vectors(query, k=5)
    every = searcher.maxsim(query, np.arange(len(DOCS)))
    best = np.sort(every)[::-1][:5]
    assert np.allclose([h.score for h in ranking.hits], best, atol=1e-4)
    # the pruned default (ndocs) still agrees on the top hit
    pruned = MultiVectorSearcher(target / "multivector", details, ndocs=32, cell_fraction=0.25)
    assert pruned.search_vectors(query, 1).hits[0].docid == (ranking.hits[0].docid)


def test_language_filter(built: tuple[Path, dict]) -> None:
    target, details = built
    searcher = open_searcher("multivector", target / "multivector", details)
    ranking = searcher.search(DOCS[0].text, k=10, langs={"de"})
    assert len(ranking) == 10 and {h.lang for h in ranking.hits} == {"de"}
    assert DOCS[0].id not in ranking.docids  # an English document is filtered out
    both = searcher.search(DOCS[1].text, k=40, langs={"de", "fr"})
    assert len(both) == 40 and {h.lang for h in both.hits} == {"de", "fr"}
    assert len(searcher.search(DOCS[1].text, k=5, langs={"ja"})) == 0
    with pytest.raises(ValueError, match="empty"):
        searcher.search("   ")


def test_searcher_rejects_a_mismatched_encoder(built: tuple[Path, dict], tmp_path: Path) -> None:
    target, details = built
    head = make_head(32, 8)
    save_head(head, tmp_path / "h8", {})
    with pytest.raises(ValueError, match="8-d token vectors but the index holds 32-d"):
        MultiVectorSearcher(target / "multivector", {**details, "head": str(tmp_path / "h8")})
    broken = tmp_path / "broken"
    broken.mkdir()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        MultiVectorSearcher(broken, details)


# --- training ---------------------------------------------------------------------------------------------


def test_train_head_learns_a_synthetic_task() -> None:
    """Queries share a topic with their positive in 4 of 24 dimensions; the head must learn to keep those."""
    from xlir.training.colbert import Prepared, TrainSettings, train_head

    rng = np.random.default_rng(0)
    dim, n = 24, 120
    topics = rng.normal(size=(n, 4)).astype(np.float32)

    def tokens(i: int, k: int) -> np.ndarray:  # the topic in 4 dimensions drowned in strong noise elsewhere
        x = rng.normal(size=(k, dim)).astype(np.float32) * 3
        x[:, :4] = topics[i]
        return x

    docs = [tokens(i, 5) for i in range(n)]
    queries = [tokens(i, 2) for i in range(n)]
    train = [(queries[i], i, [j for j in range(n) if j != i][:10]) for i in range(100)]
    valid = [(queries[i], i) for i in range(100, n)]
    sets = [Prepared("synthetic", [str(i) for i in range(n)], docs, train, valid)]
    settings = TrainSettings(dim=8, epochs=25, batch_size=16, negatives=2, lr=2e-2, seed=1)
    head, report = train_head(sets, settings, "cpu")
    assert head.out_dim == 8 and len(report["epochs"]) == 25
    raw = report["raw_states_valid_mrr10"]["mean"]  # about 0.06: the noise dominates raw MaxSim
    assert report["best_valid_mrr10"]["mean"] >= report["pca_init_valid_mrr10"]["mean"]
    assert report["best_valid_mrr10"]["mean"] > 3 * raw


def test_shared_tokenizer_survives_threads_with_different_truncation(tiny_bert: Path) -> None:
    """The tokenizer _load_hf shares (sparse and multivector channels, every server thread) is serialized.

    Unwrapped, a fast tokenizer called from threads with different truncation settings raises
    "RuntimeError: Already borrowed" (the server load test's 500s).
    """
    import threading

    from xlir.models.encoders.token_base import SerializedTokenizer, load_hf_model

    tokenizer, _ = load_hf_model(str(tiny_bert), "cpu")
    assert isinstance(tokenizer, SerializedTokenizer)
    texts = [" ".join(_texts(30, seed=3))] * 8
    errors: list[str] = []

    def work(truncate: bool) -> None:
        try:
            for _ in range(150):
                if truncate:
                    ids = tokenizer(texts, truncation=True, max_length=12)["input_ids"]
                    assert all(len(row) == 12 for row in ids)
                else:
                    ids = tokenizer(texts, truncation=False, verbose=False)["input_ids"]
                    assert all(len(row) > 12 for row in ids)
        except Exception as exc:  # collected: an exception in a thread would not fail the test
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(i % 2 == 0,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert tokenizer.pad_token_id is not None, "attributes pass through"


def test_updates_add_replace_and_delete_without_a_rebuild(built: tuple[Path, dict], tmp_path: Path) -> None:
    """IndexUpdater through the multivector channel: new documents found, deleted gone, the rest unchanged."""
    import shutil

    from xlir.indexing.manifest import Manifest
    from xlir.indexing.updater import IndexUpdater

    source, _ = built
    index = tmp_path / "index"
    shutil.copytree(source, index)
    before = Manifest.read(index).channels["multivector"]
    probe = DOCS[7].text
    with_old = MultiVectorSearcher(index / "multivector", before, ndocs=10_000, device="cpu")
    old_scores = {h.docid: h.score for h in with_old.search(probe, k=len(DOCS)).hits}
    with_old.close()

    new = Document(id="new-1", text="zebra quantum harbor violin " * 3, lang="it")
    replaced = Document(id=DOCS[3].id, text="orchestra glacier lantern meadow " * 3, lang="de")
    updater = IndexUpdater(index)
    assert updater.upsert([new, replaced]).added == 1
    assert updater.delete([DOCS[7].id, "no-such-id"]).deleted == 1

    details = Manifest.read(index).channels["multivector"]
    assert details["documents"] == len(DOCS) and details["centroids"] == before["centroids"]
    searcher = MultiVectorSearcher(index / "multivector", details, ndocs=10_000, device="cpu")
    try:
        assert searcher.search(new.text, k=1).hits[0].docid == "new-1"
        assert searcher.search(new.text, k=1, langs={"it"}).hits[0].lang == "it"
        assert searcher.search(replaced.text, k=1).hits[0].docid == DOCS[3].id
        after = {h.docid: h.score for h in searcher.search(probe, k=len(DOCS) + 1).hits}
        assert DOCS[7].id not in after
        untouched = [d.id for d in DOCS if d.id not in (DOCS[3].id, DOCS[7].id)]
        assert all(after[d] == pytest.approx(old_scores[d], abs=1e-5) for d in untouched)
    finally:
        searcher.close()
