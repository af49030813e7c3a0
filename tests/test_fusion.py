"""Fusion over Ranking: hand-computed RRF and normalized fusion, provenance, tie-breaking, validation."""

from __future__ import annotations

import math

import pytest

from xlir.indexing.ranking import ChannelScore, Hit, Ranking
from xlir.retrieval.fusion import interpolate, language_slots, normalized_fusion, rrf


def _bm25() -> Ranking:
    return Ranking.from_scores(
        "bm25", [("d1", 10.0), ("d2", 6.0), ("d3", 2.0)], langs={"d1": "de", "d3": "en"}
    )


def _dense() -> Ranking:
    return Ranking.from_scores("dense", [("d3", 0.9), ("d1", 0.5), ("d4", 0.1)], langs={"d4": "fr"})


def test_rrf_hand_computed_scores_and_order() -> None:
    fused = rrf([_bm25(), _dense()], k=60)
    assert fused.source == "rrf"
    assert fused.docids == ["d1", "d3", "d2", "d4"]
    expected = {"d1": 1 / 61 + 1 / 62, "d3": 1 / 63 + 1 / 61, "d2": 1 / 62, "d4": 1 / 63}
    for hit in fused:
        assert hit.score == pytest.approx(expected[hit.docid], abs=1e-15)


def test_rrf_depth_counts_only_top_hits_per_input() -> None:
    fused = rrf([_bm25(), _dense()], k=60, depth=2)
    assert fused.docids == ["d1", "d3", "d2"]  # d4 is only at rank 3 of dense
    assert fused[1].score == pytest.approx(1 / 61)
    assert len(rrf([_bm25(), _dense()], limit=2)) == 2


def test_rrf_ties_broken_by_docid_not_input_order() -> None:
    a = Ranking.from_scores("a", [("b", 2.0), ("a", 1.0)])
    b = Ranking.from_scores("b", [("a", 2.0), ("b", 1.0)])
    fused = rrf([a, b], k=10)
    assert fused.docids == ["a", "b"]
    assert fused[0].score == fused[1].score == pytest.approx(1 / 11 + 1 / 12)


def test_fusion_keeps_provenance_and_lang() -> None:
    fused = rrf([_bm25(), _dense()])
    by_id = {hit.docid: hit for hit in fused}
    assert by_id["d1"].sources == {"bm25": ChannelScore(1, 10.0), "dense": ChannelScore(2, 0.5)}
    assert by_id["d4"].sources == {"dense": ChannelScore(3, 0.1)}
    assert by_id["d1"].lang == "de" and by_id["d4"].lang == "fr" and by_id["d2"].lang is None
    # Fusing a fused ranking keeps the original channels' evidence.
    rerank = Ranking.from_scores("rerank", [("d2", 5.0), ("d1", 1.0)])
    again = normalized_fusion([fused, rerank])
    assert set({hit.docid: hit for hit in again}["d1"].sources) == {"bm25", "dense", "rerank"}
    # A hit without sources contributes its ranking's name, position and score.
    bare = Ranking("run", (Hit("x", 3.0), Hit("y", 1.0)))
    assert rrf([bare])[1].sources == {"run": ChannelScore(2, 1.0)}


def test_normalized_fusion_minmax_weighted() -> None:
    fused = normalized_fusion([_bm25(), _dense()])
    assert fused.docids == ["d1", "d3", "d2", "d4"]
    assert [hit.score for hit in fused] == pytest.approx([1.5, 1.0, 0.5, 0.0])
    weighted = normalized_fusion([_bm25(), _dense()], weights={"bm25": 2.0, "dense": 1.0}, source="hybrid")
    assert weighted.source == "hybrid"
    # d2 = 2 * 0.5 and d3 = 2 * 0 + 1: a tie, broken by docid.
    assert weighted.docids == ["d1", "d2", "d3", "d4"]
    assert [hit.score for hit in weighted] == pytest.approx([2.5, 1.0, 1.0, 0.0])


def test_normalized_fusion_zscore_missing_doc_gets_min() -> None:
    fused = normalized_fusion([_bm25(), _dense()], method="zscore")
    z = math.sqrt(1.5)  # both inputs are 3 evenly spaced scores: z-scores are +-sqrt(1.5) and 0
    assert fused.docids == ["d1", "d3", "d2", "d4"]
    assert [hit.score for hit in fused] == pytest.approx([z, 0.0, -z, -2 * z])


def test_interpolate_and_constant_scores() -> None:
    mixed = interpolate(_bm25(), _dense(), alpha=0.25)
    scores = {h.docid: h.score for h in mixed}
    assert scores["d1"] == pytest.approx(0.25 * 1.0 + 0.75 * 0.5)
    assert scores["d3"] == pytest.approx(0.75)
    only_a = interpolate(_bm25(), _dense(), alpha=1.0)
    assert only_a.docids[:3] == ["d1", "d2", "d3"]
    flat = normalized_fusion([Ranking.from_scores("flat", [("a", 3.0), ("b", 3.0)])])
    assert [h.score for h in flat] == [1.0, 1.0]
    assert rrf([]).hits == () and normalized_fusion([Ranking("empty")]).hits == ()


def test_fusion_validates_arguments() -> None:
    with pytest.raises(ValueError, match="positive integer"):
        rrf([_bm25()], k=0)
    with pytest.raises(ValueError, match="depth"):
        rrf([_bm25()], depth=0)
    with pytest.raises(ValueError, match=r"unknown source\(s\) \['sparse'\].*\['bm25', 'dense'\]"):
        normalized_fusion([_bm25(), _dense()], weights={"bm25": 1.0, "sparse": 1.0, "dense": 1.0})
    with pytest.raises(ValueError, match="no weight given"):
        normalized_fusion([_bm25(), _dense()], weights={"bm25": 1.0})
    with pytest.raises(ValueError, match="negative"):
        normalized_fusion([_bm25(), _dense()], weights={"bm25": -1.0, "dense": 1.0})
    with pytest.raises(ValueError, match="all weights are 0"):
        normalized_fusion([_bm25(), _dense()], weights={"bm25": 0, "dense": 0})
    with pytest.raises(ValueError, match="method"):
        normalized_fusion([_bm25()], method="softmax")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="distinct source"):
        rrf([_bm25(), _bm25()])
    with pytest.raises(ValueError, match="alpha"):
        interpolate(_bm25(), _dense(), alpha=1.5)
    with pytest.raises(TypeError, match="sequence of rankings"):
        rrf(_bm25())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        normalized_fusion([Ranking("bad", (Hit("a", float("nan")),))])


def _langs(ranking: Ranking) -> list[str | None]:
    return [hit.lang for hit in ranking.hits]


def test_language_slots_keeps_the_base_language_mix() -> None:
    # dense puts English, German, English, German; BM25 (German only) prefers d2 over d1 and adds d3
    dense = Ranking(
        "dense",
        tuple(
            Hit(d, s, lang)
            for d, s, lang in [("e1", 0.9, "en"), ("d1", 0.8, "de"), ("e2", 0.7, "en"), ("d2", 0.6, "de")]
        ),
    )
    bm25 = Ranking("bm25", tuple(Hit(d, s, "de") for d, s in [("d2", 9.0), ("d3", 8.0), ("d1", 1.0)]))
    fused = rrf([dense, bm25])
    assert _langs(fused)[:2] == ["de", "de"]  # an equal vote pulls German up
    slotted = language_slots(dense, fused, "de")
    assert _langs(slotted) == ["en", "de", "en", "de", "de"]  # same places for German as dense gave
    german = [hit.docid for hit in slotted.hits if hit.lang == "de"]
    assert german == [hit.docid for hit in fused.hits if hit.lang == "de"]  # in the fused German order
    assert [hit.docid for hit in slotted.hits if hit.lang == "en"] == ["e1", "e2"]
    scores = [hit.score for hit in language_slots(dense, fused, "de", scores="slot").hits]
    assert scores == sorted(scores, reverse=True)  # slot scores: the order, for run files
    assert "bm25" in slotted.hits[1].sources  # provenance from the fused ranking


def test_language_slots_one_language_and_no_match() -> None:
    dense = Ranking("dense", tuple(Hit(d, s, "de") for d, s in [("a", 0.9), ("b", 0.8)]))
    bm25 = Ranking("bm25", tuple(Hit(d, s, "de") for d, s in [("b", 5.0), ("c", 4.0)]))
    fused = rrf([dense, bm25])
    # every document in the query's language: exactly the fused order
    assert [h.docid for h in language_slots(dense, fused, "de").hits] == [h.docid for h in fused.hits]
    # no document in the query's language: the base order
    assert [h.docid for h in language_slots(dense, fused, "fr").hits] == ["a", "b"]
