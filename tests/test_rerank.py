"""The reranking stage: adapter composition on a tiny real BERT, the time budget, batching, errors, the
shipped reranker on real text, and the Searcher integration."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from xlir.indexing.ranking import Ranking
from xlir.models.rerankers.adapter import AdapterReranker
from xlir.models.rerankers.base import (
    DEFAULT_RERANKER,
    RERANKERS_DIR,
    RerankerError,
    load_backbone,
    new_rank_adapter,
)
from xlir.models.rerankers.cross_encoder import CrossEncoderReranker
from xlir.models.rerankers.registry import reranker_for
from xlir.retrieval.rerank import RERANK_SOURCE, best_weight, first_stage_weight, rerank, rerank_status

WORDS = (
    "the a of in is was who what where when how many city river king year people music war paris berlin "
    "london built founded by largest population capital germany france england team won game score points "
    "die der und ist stadt fluss könig jahr"
).split()


def _tiny_backbone(folder: Path, seq_cls: bool = False) -> Path:
    """A real (tiny, randomly initialized) BERT with a WordPiece tokenizer, saved like a hub checkpoint."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, BertModel, PreTrainedTokenizerFast

    torch.manual_seed(0)
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
    )
    model = BertForSequenceClassification(config) if seq_cls else BertModel(config)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def _perturb(model, name: str, seed: int) -> None:  # noqa: ANN001
    """Adapters start as the identity (zero up-projection); give them random weights so they act."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if f"adapters.{name}." in n or f"heads.{name}." in n:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny backbone, a ranking adapter + head on it, and two language adapters (de, fr)."""
    from adapters import SeqBnConfig

    from xlir.training.reranker import save_reranker

    root = tmp_path_factory.mktemp("tiny-rerank")
    backbone = _tiny_backbone(root / "backbone")
    _, model, _ = load_backbone(str(backbone), "cpu")
    new_rank_adapter(model, reduction=4)
    _perturb(model, "rank", 1)
    info = {"name": "tiny-rank", "backbone": str(backbone), "max_length": 64, "prompts": {}}
    save_reranker(model, root / "rank", info)
    for seed, lang in enumerate(("de", "fr"), start=2):
        model.add_adapter(f"lang_{lang}", config=SeqBnConfig(reduction_factor=4))
        _perturb(model, f"lang_{lang}", seed)
        model.save_adapter(str(root / f"lang-{lang}"), f"lang_{lang}", with_head=False)
    return {
        "root": root,
        "backbone": backbone,
        "rank": root / "rank",
        "de": root / "lang-de",
        "fr": root / "lang-fr",
    }


QUERY = "who founded the city"
TEXTS = ["the city was founded by the king", "the river is the largest", "die stadt ist groß", "music war"]


def test_scores_are_deterministic_and_batch_size_invariant(tiny: dict[str, Path]) -> None:
    one = AdapterReranker(str(tiny["rank"]), batch_size=1, device="cpu")
    many = AdapterReranker(str(tiny["rank"]), batch_size=32, device="cpu")
    a, b = one.score(QUERY, TEXTS), many.score(QUERY, TEXTS)
    assert a.shape == (4,) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert len(set(np.round(a, 5))) == 4  # the pairs are told apart (the head runs in fp32 under bf16)
    assert one.score(QUERY, []).shape == (0,)
    # "auto" is bf16 autocast on CPUs with AMX: close to the float32 scores
    full = AdapterReranker(str(tiny["rank"]), device="cpu", precision="fp32").score(QUERY, TEXTS)
    np.testing.assert_allclose(a, full, atol=0.05)
    with pytest.raises(RerankerError, match="precision"):
        AdapterReranker(str(tiny["rank"]), device="cpu", precision="fp16")


def test_language_adapter_is_stacked_and_selected_by_document_language(tiny: dict[str, Path]) -> None:
    plain = AdapterReranker(str(tiny["rank"]), device="cpu")
    composed = AdapterReranker(str(tiny["rank"]), {"de": tiny["de"], "fr": tiny["fr"]}, device="cpu")
    assert composed.describe()["language_adapters"] == ["de", "fr"]
    base = plain.score(QUERY, TEXTS)
    with_de = composed.score(QUERY, TEXTS, doc_langs=["de"] * 4)
    with_fr = composed.score(QUERY, TEXTS, doc_langs=["fr"] * 4)
    assert not np.allclose(with_de, base, atol=1e-3)  # Stack(lang_de, rank) changes the scores
    assert not np.allclose(with_de, with_fr, atol=1e-3)  # and switching the language adapter does too
    # an unknown language (or none) falls back to the plain ranking adapter
    np.testing.assert_allclose(composed.score(QUERY, TEXTS, doc_langs=["th"] * 4), base, atol=1e-5)
    np.testing.assert_allclose(composed.score(QUERY, TEXTS), base, atol=1e-5)
    # mixed languages in one call: each pair gets its own document's adapter
    mixed = composed.score(QUERY, TEXTS, doc_langs=["de", "fr", None, "de"])
    np.testing.assert_allclose(mixed, [with_de[0], with_fr[1], base[2], with_de[3]], atol=1e-4)
    # the document language wins over the query language; the query's is used when the document's is unknown
    np.testing.assert_allclose(composed.score(QUERY, TEXTS, "fr", ["de"] * 4), with_de, atol=1e-4)
    np.testing.assert_allclose(composed.score(QUERY, TEXTS, "fr", [None] * 4), with_fr, atol=1e-4)
    by_query = AdapterReranker(str(tiny["rank"]), {"de": tiny["de"], "fr": tiny["fr"]}, select_by="query")
    np.testing.assert_allclose(by_query.score(QUERY, TEXTS, "fr", ["de"] * 4), with_fr, atol=1e-4)


def _ranking(n: int) -> Ranking:
    return Ranking.from_scores("fused", [(f"d{i}", 1.0 - i / 100) for i in range(n)])


def test_rerank_reorders_the_top_k_and_keeps_the_tail(tiny: dict[str, Path]) -> None:
    reranker = AdapterReranker(str(tiny["rank"]), device="cpu")
    texts = {f"d{i}": TEXTS[i % 4] + f" {WORDS[i]}" for i in range(8)}
    first = _ranking(8)
    out = rerank(first, QUERY, reranker, texts, k=5, batch_size=2)
    assert rerank_status(out) == "reranked" and out.source == "fused+rerank"
    scores = reranker.score(QUERY, [texts[f"d{i}"] for i in range(5)])
    assert out.docids[:5] == [f"d{i}" for i in np.argsort(-scores, kind="stable")]
    assert out.docids[5:] == ["d5", "d6", "d7"]  # below k: untouched
    assert [h.sources[RERANK_SOURCE].rank for h in out.hits[:5]] == [1, 2, 3, 4, 5]
    assert all(RERANK_SOURCE not in h.sources for h in out.hits[5:])
    assert all("fused" in h.sources for h in out.hits)  # first-stage evidence is kept
    assert rerank_status(first) == "none"
    # interpolated with the first stage: ordered by the mixed score, the reranker's own rank kept beside it
    mixed = rerank(first, QUERY, reranker, texts, k=5, interpolate=0.5)
    assert [h.score for h in mixed.hits[:5]] == sorted((h.score for h in mixed.hits[:5]), reverse=True)
    own = {h.docid: h.sources[RERANK_SOURCE] for h in mixed.hits[:5]}
    alone = {h.docid: h.sources[RERANK_SOURCE] for h in out.hits[:5]}
    assert {d: s.rank for d, s in own.items()} == {d: s.rank for d, s in alone.items()}


class SlowReranker:
    """A real reranker that takes at least ``delay`` seconds per call (a stand-in for a slow CPU)."""

    def __init__(self, inner: AdapterReranker, delay: float) -> None:
        self.inner, self.delay, self.name, self.calls = inner, delay, "slow", 0

    def score(
        self, query: str, texts: Sequence[str], query_lang: str | None = None, doc_langs=None
    ) -> np.ndarray:  # noqa: ANN001
        self.calls += 1
        time.sleep(self.delay)
        return self.inner.score(query, texts, query_lang, doc_langs)


def test_time_budget_falls_back_to_first_stage_order(tiny: dict[str, Path]) -> None:
    inner = AdapterReranker(str(tiny["rank"]), device="cpu")
    texts = {f"d{i}": TEXTS[i % 4] for i in range(20)}
    first = _ranking(20)
    none = rerank(first, QUERY, SlowReranker(inner, 0.0), texts, k=20, budget_s=0)
    assert none.docids == first.docids and rerank_status(none) == "partial"
    slow = SlowReranker(inner, 0.2)
    part = rerank(first, QUERY, slow, texts, k=20, batch_size=4, budget_s=0.5)
    scored = [h for h in part.hits if RERANK_SOURCE in h.sources]
    assert rerank_status(part) == "partial" and 1 <= slow.calls < 5
    assert len(scored) == 4 * slow.calls
    assert {h.docid for h in scored} == set(first.docids[: len(scored)])  # the first-stage best were scored
    assert part.docids[len(scored) :] == first.docids[len(scored) :]  # the rest keep their order
    whole = rerank(first, QUERY, SlowReranker(inner, 0.0), texts, k=20, batch_size=4, budget_s=60)
    assert rerank_status(whole) == "reranked"


def test_interpolation_with_the_first_stage(tiny: dict[str, Path]) -> None:
    reranker = AdapterReranker(str(tiny["rank"]), device="cpu")
    texts = {f"d{i}": TEXTS[i % 4] + f" {WORDS[i]}" for i in range(6)}
    first = _ranking(6)
    mostly_first = rerank(first, QUERY, reranker, texts, k=6, interpolate=1.0)
    assert mostly_first.docids == first.docids  # weight 1 = the first stage's order


def test_user_errors_are_named(tiny: dict[str, Path], tmp_path: Path) -> None:
    reranker = AdapterReranker(str(tiny["rank"]), device="cpu")
    first = _ranking(3)
    with pytest.raises(RerankerError, match="no text for document"):
        rerank(first, QUERY, reranker, {"d0": "x"}, k=3)
    with pytest.raises(RerankerError, match="k must be"):
        rerank(first, QUERY, reranker, {}, k=0)
    with pytest.raises(RerankerError, match="budget"):
        rerank(first, QUERY, reranker, {}, budget_s=-1)
    with pytest.raises(RerankerError, match="single string"):
        reranker.score(QUERY, "one text")
    with pytest.raises(RerankerError, match="doc_langs"):
        reranker.score(QUERY, TEXTS, doc_langs=["de"])
    with pytest.raises(RerankerError, match="no adapter reranker"):
        AdapterReranker(str(tmp_path / "nowhere"))
    with pytest.raises(RerankerError, match="not a saved adapter folder"):
        AdapterReranker(str(tiny["rank"]), {"de": tmp_path})
    with pytest.raises(RerankerError, match="not a cross-encoder"):
        CrossEncoderReranker(str(tiny["backbone"]))  # a plain BertModel checkpoint
    with pytest.raises(RerankerError, match="does not exist"):
        reranker_for(str(tmp_path / "missing" / "model"))


def test_any_hf_cross_encoder_checkpoint_reranks(tmp_path: Path) -> None:
    folder = _tiny_backbone(tmp_path / "ce", seq_cls=True)
    ce = reranker_for(str(folder))
    assert isinstance(ce, CrossEncoderReranker)
    scores = ce.score(QUERY, TEXTS)
    assert scores.shape == (4,) and np.isfinite(scores).all() and len(set(np.round(scores, 5))) > 1
    out = rerank(_ranking(4), QUERY, ce, {f"d{i}": t for i, t in enumerate(TEXTS)}, k=4)
    assert out.docids == [f"d{i}" for i in np.argsort(-scores, kind="stable")]


def _shipped() -> AdapterReranker:
    if not (RERANKERS_DIR / DEFAULT_RERANKER / "reranker.json").is_file():
        pytest.skip("the shipped reranker is not in this checkout")
    from xlir.models.registry import is_available

    if not is_available("multilingual-e5-small"):
        pytest.skip("multilingual-e5-small is not prepared (run `xlir models prepare`)")
    reranker = reranker_for(None, device="cpu")
    assert isinstance(reranker, AdapterReranker)
    return reranker


def test_shipped_reranker_prefers_the_answering_paragraph_across_languages() -> None:
    reranker = _shipped()
    info = json.loads((RERANKERS_DIR / DEFAULT_RERANKER / "reranker.json").read_text("utf-8"))
    assert info["command"].startswith("xlir train reranker") and "seed" in info
    texts = [
        "Berlin ist die Hauptstadt Deutschlands und hat rund 3,7 Millionen Einwohner.",
        "Der Rhein ist ein Fluss, der durch die Schweiz, Deutschland und die Niederlande fließt.",
        "Die Fußballmannschaft gewann das Spiel mit drei Toren.",
    ]
    scores = reranker.score("How many people live in Berlin?", texts, "en", ["de"] * 3)
    assert int(np.argmax(scores)) == 0


def test_searcher_reranks_fused_hits_from_its_document_store(sample_index: Path) -> None:
    from xlir.retrieval.query import QueryError
    from xlir.retrieval.searcher import Searcher

    reranker = _shipped()
    with Searcher(sample_index, reranker=reranker) as searcher:
        plain = searcher.search("How many points did the Panthers defense surrender?", k=5, langs=["en"])
        again = searcher.search(
            "How many points did the Panthers defense surrender?", k=5, langs=["en"], rerank=True, rerank_k=10
        )
        assert {h.docid for h in again.hits} <= set(searcher.ranking(plain.query, 10, ["en"]).docids)
        assert again.hits[0].docid == "en-a00p00"
        assert all(RERANK_SOURCE in h.sources for h in again.hits)
        assert all(RERANK_SOURCE not in h.sources for h in plain.hits)
        cut = searcher.search(plain.query, k=5, langs=["en"], rerank=True, rerank_k=10, rerank_budget_s=0)
        assert [h.docid for h in cut.hits] == [h.docid for h in plain.hits]  # budget 0: first-stage order
        with pytest.raises(QueryError, match="rerank_k"):
            searcher.search(plain.query, rerank=True, rerank_k=0)


def test_first_stage_weight_is_the_one_chosen_on_english_validation(tiny: dict[str, Path]) -> None:
    validation = {
        "mean": {"dense": 0.9, "rerank": 0.8, "interp0.1": 0.85, "interp0.3": 0.95, "interp0.5": 0.95}
    }
    assert best_weight(validation) == 0.3  # the best, the smaller weight on a tie
    assert best_weight({}) == 0.0
    reranker = AdapterReranker(str(tiny["rank"]), device="cpu")
    reranker.info = {"valid_mrr10_averaged": validation}
    assert first_stage_weight(reranker) == 0.3
    reranker.info = {"first_stage_weight": 0.2, "valid_mrr10_averaged": validation}
    assert first_stage_weight(reranker) == 0.2  # recorded at training wins
    shipped = reranker_for(DEFAULT_RERANKER, device="cpu")
    assert 0.0 <= first_stage_weight(shipped) <= 1.0
