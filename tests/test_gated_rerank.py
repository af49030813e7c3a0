"""The gated reranker on a tiny real BERT: closed gates are exactly late interaction (MaxSim over texts
encoded apart), open gates read across, gradients reach the gates, save/load round trips, language adapters
compose by each text's language, a whole training run, and held-out queries that never overlap the
ColBERT head's training subset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_rerank import _perturb, _tiny_backbone
from test_reranker_train import _tiny_run, _tiny_train_set

from xlir.models.rerankers.base import RANK_ADAPTER, RerankerError, load_backbone
from xlir.models.rerankers.gated import GatedReranker, encode_apart, score_together
from xlir.models.rerankers.gated_scorer import CLOSED, GatedScorer
from xlir.models.rerankers.registry import is_gated, reranker_for

QUERY = "who founded the city"
TEXTS = ["the city was founded by the king", "the river is the largest", "die stadt ist groß", "music war"]


def _parts(root: Path, gate: float = CLOSED):  # noqa: ANN202
    from xlir.models.encoders.heads import make_head
    from xlir.training.gated import add_joint_rank_adapter

    backbone = _tiny_backbone(root / "backbone")
    tokenizer, model, _ = load_backbone(str(backbone), "cpu")
    add_joint_rank_adapter(model, reduction=4, split=1)
    scorer = GatedScorer(32, 1, 2, make_head(32, 16), gate_init=gate)
    model.eval()
    scorer.eval()
    return backbone, tokenizer, model, scorer


def _maxsim_apart(model, tokenizer, scorer, query: str, text: str) -> float:  # noqa: ANN001
    """Reference: query and passage through the *whole* backbone separately, then projected MaxSim."""
    import torch

    def states(t: str) -> tuple[torch.Tensor, torch.Tensor]:
        batch = tokenizer(t, return_tensors="pt")
        out = model.base_model(**batch).last_hidden_state[0]
        special = torch.isin(batch["input_ids"][0], torch.tensor(tokenizer.all_special_ids))
        return torch.nn.functional.normalize(scorer.projection(out), dim=-1), ~special

    q, qs = states(query)
    d, ds = states(text)
    sims = (q @ d.T)[:, ds]
    return float((scorer.log_scale.exp() * sims.max(dim=1).values[qs].mean()).detach())


def test_closed_gates_are_exactly_maxsim_over_texts_encoded_apart(tmp_path: Path) -> None:
    import torch

    _, tokenizer, model, scorer = _parts(tmp_path)
    with torch.no_grad():
        q = encode_apart(model, tokenizer, [QUERY], "", 32, 1)[0]
        docs = encode_apart(model, tokenizer, TEXTS, "", 32, 1)
        got = score_together(model, scorer, 1, [q] * len(docs), docs).numpy()
    want = [_maxsim_apart(model, tokenizer, scorer, QUERY, t) for t in TEXTS]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_open_gates_read_across_and_gradients_reach_them(tmp_path: Path) -> None:
    import torch

    _, tokenizer, model, scorer = _parts(tmp_path)
    with torch.no_grad():
        q = encode_apart(model, tokenizer, [QUERY], "", 32, 1)[0]
        docs = encode_apart(model, tokenizer, TEXTS, "", 32, 1)
        closed = score_together(model, scorer, 1, [q] * 4, docs)
        scorer.gates.fill_(2.0)
        opened = score_together(model, scorer, 1, [q] * 4, docs)
    assert not torch.allclose(closed, opened, atol=1e-4)
    scorer.gates.data.fill_(-2.0)
    score_together(model, scorer, 1, [q] * 4, docs).sum().backward()
    assert scorer.gates.grad is not None and float(scorer.gates.grad.abs().sum()) > 0
    rank_grads = [p.grad for n, p in model.named_parameters() if f"adapters.{RANK_ADAPTER}." in n]
    assert rank_grads and any(g is not None and float(g.abs().sum()) > 0 for g in rank_grads)


def _saved(root: Path) -> tuple[Path, Path, dict[str, Path]]:
    from adapters import SeqBnConfig

    from xlir.models.rerankers.gated_scorer import scorer_shape
    from xlir.training.gated import save_gated

    backbone, _, model, scorer = _parts(root, gate=-1.0)
    _perturb(model, RANK_ADAPTER, 1)
    info = {
        "name": "tiny-gated",
        "kind": "gated",
        "backbone": str(backbone),
        "split_layer": 1,
        "scorer": scorer_shape(scorer),
        "max_length": 32,
        "query_max_length": 16,
        "prompts": {},
    }
    folder = save_gated(model, scorer, root / "gated", info)
    langs = {}
    for seed, lang in enumerate(("de", "fr"), start=2):
        model.add_adapter(f"lang_{lang}", config=SeqBnConfig(reduction_factor=4))
        _perturb(model, f"lang_{lang}", seed)
        model.save_adapter(str(root / f"lang-{lang}"), f"lang_{lang}", with_head=False)
        langs[lang] = root / f"lang-{lang}"
    return backbone, folder, langs


def test_saved_gated_reranker_round_trips_and_is_batch_invariant(tmp_path: Path) -> None:
    _, folder, _ = _saved(tmp_path)
    assert is_gated(folder)
    one = GatedReranker(str(folder), batch_size=1, device="cpu", precision="fp32")
    many = GatedReranker(str(folder), batch_size=8, device="cpu", precision="fp32")
    a, b = one.score(QUERY, TEXTS), many.score(QUERY, TEXTS)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert len(one._passages) == len(TEXTS)  # lower-layer passage states kept for the next query
    np.testing.assert_allclose(one.score(QUERY, TEXTS), a, rtol=1e-3, atol=1e-3)  # from the cache
    uncached = GatedReranker(str(folder), device="cpu", precision="fp32", cache_passages=0)
    np.testing.assert_allclose(uncached.score(QUERY, TEXTS), a, rtol=1e-4, atol=1e-4)
    assert len(uncached._passages) == 0
    assert a.dtype == np.float32 and len(set(np.round(a, 4))) == len(TEXTS)
    assert one.score(QUERY, []).shape == (0,)
    assert isinstance(reranker_for(str(folder), device="cpu"), GatedReranker)
    assert one.describe()["kind"] == "gated" and one.describe()["split_layer"] == 1
    with pytest.raises(RerankerError, match="doc_langs"):
        one.score(QUERY, TEXTS, doc_langs=["de"])


def test_language_adapters_compose_by_each_texts_language(tmp_path: Path) -> None:
    _, folder, langs = _saved(tmp_path)
    plain = GatedReranker(str(folder), device="cpu", precision="fp32")
    composed = GatedReranker(str(folder), langs, device="cpu", precision="fp32")
    base = plain.score(QUERY, TEXTS, query_lang="en", doc_langs=["en", "en", "de", "it"])
    got = composed.score(QUERY, TEXTS, query_lang="en", doc_langs=["en", "en", "de", "it"])
    # English and Italian have no adapter here: the plain ranking adapter; German goes through lang_de
    np.testing.assert_allclose(got[[0, 1, 3]], base[[0, 1, 3]], rtol=1e-5, atol=1e-5)
    assert abs(got[2] - base[2]) > 1e-4
    french_query = composed.score(QUERY, TEXTS, query_lang="fr", doc_langs=["en", "en", "de", "it"])
    assert abs(french_query[0] - got[0]) > 1e-4  # the query's own lower layers use lang_fr


def test_gated_training_run_saves_averaged_and_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xlir.models.encoders.heads import make_head, save_head
    from xlir.training.cli import train_reranker
    from xlir.training.rerank_common import RerankTrainSettings

    monkeypatch.setenv("XLIR_HOME", str(tmp_path / "home"))
    common = _tiny_run(tmp_path, out_dir=str(tmp_path / "gated"), kind="gated", split_layer=1, reduction=4)
    # made after the backbone (which seeds torch): the same head in every run
    head = save_head(make_head(32, 16), tmp_path / "head", {"name": "tiny-head", "trained_on": "none"})
    settings = RerankTrainSettings(head=str(head), **common)
    info = train_reranker(settings, "test")
    assert info["kind"] == "gated" and info["steps"] == 8 and info["scorer"]["dim"] == 16
    assert set(info["valid_mrr10_averaged"]) == {"tiny", "mean"}
    assert info["gates"]["max"] != -8.0  # the gates trained
    for folder in (tmp_path / "gated", tmp_path / "gated" / "last"):
        saved = json.loads((folder / "reranker.json").read_text("utf-8"))
        assert saved["kind"] == "gated" and (folder / "scorer.safetensors").is_file()
    averaged = GatedReranker(str(tmp_path / "gated"), device="cpu").score(QUERY, TEXTS)
    last = GatedReranker(str(tmp_path / "gated" / "last"), device="cpu").score(QUERY, TEXTS)
    assert averaged.shape == last.shape == (4,) and not np.allclose(averaged, last)

    # validating the saved folders again (uncached scoring through GatedReranker) updates both files
    from xlir.training.rerank_common import revalidate

    again = revalidate(settings)
    assert set(again) == {"valid_mrr10_averaged", "valid_mrr10_last"}
    saved = json.loads((tmp_path / "gated" / "reranker.json").read_text("utf-8"))
    assert saved["valid_mrr10_averaged"] == again["valid_mrr10_averaged"] and "revalidated" in saved


def test_held_out_queries_never_overlap_the_heads_training_subset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xlir.training.data import load_train_set, subsample
    from xlir.training.rerank_common import RerankTrainSettings, prepare_set

    root = _tiny_train_set(tmp_path / "train")
    data = load_train_set(root, "tiny")
    head_subset = subsample(data, 4, 0.2, 13)  # the first 5 of the seeded permutation

    class Encoder:  # prepare_set only needs token states here: one random row per text, no model
        path, prompts, query_max_length, doc_max_length, query_augment = "x", {}, 8, 8, 0

        def token_states(self, texts: list[str], is_query: bool) -> list[np.ndarray]:
            return [np.random.default_rng(len(t)).normal(size=(1, 4)).astype(np.float32) for t in texts]

    monkeypatch.setenv("XLIR_HOME", str(tmp_path / "home"))
    split = prepare_set("tiny", root, RerankTrainSettings(holdout=0.3, valid_queries=3), Encoder())
    held = {q for q, *_ in split.valid}
    assert len(held) == 3 and not held & set(head_subset.queries.values())


def test_latency_study_times_a_gated_reranker_cold_and_warm(tmp_path: Path, sample_index: Path) -> None:
    from xlir.eval.tasks.rerank import latency_study

    _, folder, _ = _saved(tmp_path)
    topics = {"q1": "Who won Super Bowl 50?", "q2": "Wer gewann den Super Bowl?"}
    lines = latency_study(sample_index, topics, str(folder), k=20)
    assert lines[0].startswith("| reranking latency, k=20")
    cold, warm = lines[2], lines[3]
    assert cold.startswith("| tiny-gated cold | 2 |") and warm.startswith("| tiny-gated warm | 2 |")
    assert all(float(cell) >= 0 for cell in cold.strip("|").split("|")[2:])
