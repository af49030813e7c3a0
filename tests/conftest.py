"""Shared fixtures: the bundled sample, slices of ../shared/data, one sample index per session."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from xlir.indexing.documents import Document

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE = REPO / "xlir" / "data" / "sample"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "xquad").is_dir():
        pytest.skip(f"{SHARED_DATA} is not there (the shared data sits beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample (6 languages x 48 XQuAD paragraphs) built once with the default config."""
    from xlir.indexing.builder import build_index
    from xlir.indexing.readers import open_corpus

    target = tmp_path_factory.mktemp("indexes") / "sample"
    build_index(open_corpus(SAMPLE), target)
    return target


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


_SYLLABLES = ["ka", "lo", "mi", "ne", "po", "ru", "sa", "ti", "vo", "ze", "bra", "kel", "dor", "fin", "gul"]


def nonsense_texts(n: int, *, seed: int, words: int = 600, length: tuple[int, int] = (8, 16)) -> list[str]:
    """``n`` texts of made-up words (a vocabulary from ``words`` draws of 2-3 syllables), each ``length`` words
    long (inclusive range); the same texts for the same arguments."""
    rng = random.Random(seed)
    vocabulary = sorted(
        {"".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))) for _ in range(words)}
    )
    return [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(*length))) for _ in range(n)]


def documents_in(texts: list[str], langs: tuple[str, ...] = ("en", "de", "fr")) -> list[Document]:
    """One document per text, ids ``d000``, ``d001``..., languages taking turns."""
    return [Document(id=f"d{i:03d}", text=t, lang=langs[i % len(langs)]) for i, t in enumerate(texts)]


def save_tiny_splade(folder: Path, texts: list[str], vocab_size: int, pair: str | None = None) -> Path:
    """A real BertForMaskedLM (1 layer, 32 wide, random weights from seed 0) with a WordPiece tokenizer of
    ``vocab_size`` trained on ``texts`` (``pair``: its template for two sequences), saved in ``folder``."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair=pair,
        special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))],
    )
    fast = transformers.BertTokenizerFast(tokenizer_object=tokenizer, model_max_length=64)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    transformers.BertForMaskedLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def save_tiny_sentence_encoder(
    folder: Path, texts: list[str], vocab_size: int, prompts: dict[str, str] | None = None
) -> tuple[Path, Path]:
    """A real BertModel (2 layers, 32 wide, random weights from seed 0) with a WordPiece vocabulary of
    ``vocab_size`` trained on ``texts``, saved as a Hugging Face folder (``folder / "hf"``) and as a
    mean-pooled sentence-transformers encoder with ``prompts`` (``folder / "st"``): both folders."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(0)
    hf = folder / "hf"
    hf.mkdir(parents=True)
    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=1, show_progress=False)
    trainer.save_model(str(hf))
    tokenizer = BertTokenizerFast(vocab_file=str(hf / "vocab.txt"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    transformer = Transformer(str(hf), max_seq_length=128)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling], prompts=prompts or {}, device="cpu")
    model.save(str(folder / "st"))
    return hf, folder / "st"
