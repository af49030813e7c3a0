"""TREC I/O, ir_measures scoring against hand-computed values, significance tests, collections."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from scipy import stats

from xlir.eval.collection import Collection, CollectionError
from xlir.eval.metrics import accuracy_at_1, evaluate, paired_ttest, randomization_test
from xlir.eval.trec import TrecFormatError, read_qrels, read_run, read_topics, write_run
from xlir.indexing.ranking import ChannelScore, Hit, Ranking
from xlir.retrieval.fusion import rrf

DATA = Path(__file__).parents[1].parent / "shared" / "data"


# --- TREC files ------------------------------------------------------------------------------------------


def test_run_round_trip(tmp_path: Path) -> None:
    run = {
        "q1": Ranking.from_scores("bm25", [("d1", 12.5), ("d2", 3.0000000001), ("d3", -1.25)]),
        "q2": Ranking.from_scores("bm25", [("d9", 0.1)]),
    }
    path = write_run(tmp_path / "runs" / "run.txt", run, tag="xlir-bm25")
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 d1 1 12.5 xlir-bm25"
    assert len(lines) == 4
    back = read_run(path)
    assert set(back) == {"q1", "q2"}
    assert back["q1"].source == "xlir-bm25"
    assert back["q1"].docids == ["d1", "d2", "d3"]
    assert [hit.score for hit in back["q1"]] == [12.5, 3.0000000001, -1.25]  # exact: repr round-trips
    assert back["q1"][1].sources == {"xlir-bm25": ChannelScore(rank=2, score=3.0000000001)}
    # A fused ranking writes in its own order.
    fused = rrf([run["q1"], Ranking.from_scores("dense", [("d3", 1.0)])])
    write_run(tmp_path / "fused.txt", {"q1": fused}, tag="rrf")
    assert read_run(tmp_path / "fused.txt")["q1"].docids == fused.docids


#: (reader, file name, malformed content, what the error says after "<file>:": the line and the problem)
MALFORMED = [
    (read_run, "bad.txt", "q1 Q0 d1 1 2.0 t\nq1 Q0 d2 two 1.0 t\n", "2: rank 'two' is not an integer"),
    (read_run, "bad.txt", "q1 Q0 d1 1 2.0\n", "1: expected 6 fields"),
    (read_run, "bad.txt", "q1 Q0 d1 1 2.0 t\n\nq1 Q0 d1 2 1.0 t\n", "3: document 'd1' appears twice"),
    (read_topics, "q.tsv", "q1\tok\nq2 no tab here\n", "2: no TAB"),
    (read_topics, "q.tsv", "q1\tok\nq1\tagain\n", "2: query id 'q1' occurs twice"),
    (read_qrels, "qrels.txt", "q1 0 d1 1\nq1 0 d2 high\n", "2: relevance 'high' is not an integer"),
    # 3 fields are read as BEIR's (qid docid relevance)
    (read_qrels, "qrels.txt", "q1 0 d1\n", "1: relevance 'd1' is not an integer.*3 fields"),
    (read_qrels, "qrels.txt", "q1 d1\n", "1: expected 4 fields"),
]


@pytest.mark.parametrize(("reader", "name", "content", "message"), MALFORMED)
def test_malformed_files_name_file_and_line(
    tmp_path: Path, reader: Callable[[Path], object], name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TrecFormatError, match=re.escape(name) + ":" + message):
        reader(path)


def test_run_write_and_read_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tag"):
        write_run(tmp_path / "x.txt", {}, tag="two words")
    with pytest.raises(ValueError, match="without spaces"):
        write_run(tmp_path / "x.txt", {"q 1": Ranking.from_scores("s", [("d", 1.0)])}, tag="t")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_run(tmp_path / "nope.txt")


def test_read_topics_tsv_jsonl_sgml(tmp_path: Path) -> None:
    tsv = tmp_path / "q.tsv"
    tsv.write_text("\ufeffq1\tWie viele Punkte?\nq2\t  spaced text \n\n")
    assert read_topics(tsv) == {"q1": "Wie viele Punkte?", "q2": "spaced text"}
    jsonl = tmp_path / "queries.jsonl"
    jsonl.write_text(
        json.dumps({"_id": "7", "text": "what is rrf", "metadata": {}})
        + "\n"
        + json.dumps({"qid": 8, "query": "x"})
    )
    assert read_topics(jsonl) == {"7": "what is rrf", "8": "x"}
    sgml = tmp_path / "topics.401"
    sgml.write_text(
        "<top>\n<num> Number: 401\n<title> foreign minorities, Germany\n\n<desc> Description:\nx\n</top>\n"
    )
    assert read_topics(sgml) == {"401": "foreign minorities, Germany"}


def test_read_qrels_trec_and_beir(tmp_path: Path) -> None:
    trec = tmp_path / "qrels.txt"
    trec.write_text("q1 0 d1 1\nq1 0 d2 0\nq2 0 d3 2\n")
    assert read_qrels(trec) == {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}}
    beir = tmp_path / "test.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td5\t2\n")
    assert read_qrels(beir) == {"q1": {"d1": 1, "d5": 2}}


# --- metrics ------------------------------------------------------------------------------------------------


QRELS = {
    "q1": {"d1": 1, "d2": 0, "d3": 1},
    "q2": {"d5": 2, "d6": 1},
    "q3": {"d7": 1},
}


def _run() -> dict[str, Ranking]:
    return {
        "q1": Ranking.from_scores("s", [("d2", 4.0), ("d1", 3.0), ("d4", 2.0), ("d3", 1.0)]),
        "q2": Ranking.from_scores("s", [("d5", 1.0)]),
        "q9": Ranking.from_scores("s", [("d1", 1.0)]),  # unjudged: ignored
    }


def test_evaluate_hand_computed_values_and_missing_query_is_zero() -> None:
    result = evaluate(_run(), QRELS)
    # q1: relevant at ranks 2 and 4; ideal has both relevant at ranks 1 and 2 (linear gains).
    ndcg_q1 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    # q2: grade 2 at rank 1; ideal is grades 2 then 1.
    ndcg_q2 = 2 / (2 + 1 / math.log2(3))
    per = result.per_query
    assert per["nDCG@10"] == pytest.approx({"q1": ndcg_q1, "q2": ndcg_q2, "q3": 0.0})
    assert per["RR@10"] == pytest.approx({"q1": 0.5, "q2": 1.0, "q3": 0.0})
    assert per["AP"] == pytest.approx({"q1": (1 / 2 + 2 / 4) / 2, "q2": 0.5, "q3": 0.0})
    assert per["R@100"] == pytest.approx({"q1": 1.0, "q2": 0.5, "q3": 0.0})
    assert result["nDCG@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 3)
    assert result["RR@10"] == pytest.approx(0.5)
    assert result.num_queries == 3 and result.missing == ("q3",) and result.unjudged == ("q9",)
    dropped = evaluate(_run(), QRELS, measures=["RR@10"], fill_missing=False)
    assert dropped["RR@10"] == pytest.approx(0.75) and dropped.num_queries == 2
    # An empty ranking is the same as no ranking.
    empty = dict(_run(), q3=Ranking("s"))
    assert evaluate(empty, QRELS, ["RR@10"])["RR@10"] == pytest.approx(0.5)
    assert json.loads(json.dumps(result.to_dict()))["num_queries"] == 3


def test_evaluate_uses_ranking_order_not_scores() -> None:
    # Scores disagree with the list order (e.g. a reranker's own scale); the order is what is scored.
    odd = Ranking("rerank", (Hit("d2", 0.1), Hit("d1", 0.9)))
    assert evaluate({"q1": odd}, {"q1": {"d1": 1}}, ["RR@10"])["RR@10"] == pytest.approx(0.5)
    tied = Ranking("tied", (Hit("a", 1.0), Hit("z", 1.0)))  # trec_eval would put z first on a tie
    assert evaluate({"q1": tied}, {"q1": {"a": 1}}, ["RR@10"])["RR@10"] == pytest.approx(1.0)


def test_accuracy_and_measure_errors() -> None:
    assert accuracy_at_1(_run(), QRELS) == pytest.approx(1 / 3)  # q2 only
    two_spellings = evaluate(_run(), QRELS, ["RR@10", "RR(rel=1)@10"])
    assert two_spellings["RR(rel=1)@10"] == two_spellings["RR@10"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"unknown or malformed measure 'nDCG@ten'.*nDCG@10, RR@10"):
        evaluate(_run(), QRELS, ["nDCG@ten"])
    with pytest.raises(ValueError, match="'Foo@10'"):
        evaluate(_run(), QRELS, ["Foo@10"])
    with pytest.raises(ValueError, match="qrels are empty"):
        evaluate(_run(), {})
    with pytest.raises(KeyError, match="was not evaluated"):
        evaluate(_run(), QRELS, ["AP"])["P@5"]


def test_significance_tests() -> None:
    a = {"q1": 1.0, "q2": 2.0, "q3": 3.0, "q4": 4.0}
    b = {"q1": 0.0, "q2": 2.0, "q3": 2.0, "q4": 3.0}
    # Differences 1, 0, 1, 1: mean 0.75, sd 0.5, t = 3 with 3 degrees of freedom.
    assert paired_ttest(a, b) == pytest.approx(2 * stats.t.sf(3.0, 3))
    assert paired_ttest([1.0, 2.0], [1.0, 2.0]) == 1.0
    # Exact sign-flip distribution: only the 2 of 8 all-same-sign flips reach |mean| = 0.75.
    p = randomization_test(a, b, trials=10000, seed=0)
    assert p == pytest.approx(0.25, abs=0.02)
    assert p == randomization_test(a, b, trials=10000, seed=0)
    assert randomization_test(a, a) == 1.0
    with pytest.raises(ValueError, match="different queries"):
        paired_ttest(a, {"q1": 1.0})
    with pytest.raises(ValueError, match="equal lengths"):
        randomization_test([1.0], [1.0, 2.0])


# --- collections --------------------------------------------------------------------------------------------


def _collection(name: str) -> Collection:
    if not (DATA / name).is_dir():
        pytest.skip(f"{DATA / name} is absent (the shared evaluation data is not checked out here)")
    return Collection(DATA / name)


def test_xquad_pair_sizes() -> None:
    xquad = _collection("xquad")
    assert len(xquad.languages()) == 12 and "de" in xquad.languages()
    topics, corpus, qrels = xquad.pair("de", "en")
    assert len(topics) == 1190
    assert corpus == DATA / "xquad" / "corpus" / "en.jsonl"
    assert sum(1 for _ in corpus.open(encoding="utf-8")) == 240
    assert set(qrels) == set(topics)  # restricted to the German queries
    assert all(docid.startswith("en-") for docs in qrels.values() for docid in docs)
    with pytest.raises(CollectionError, match=r"no 'xx' corpus; document languages: ar, de"):
        xquad.pair("de", "xx")
    with pytest.raises(CollectionError, match="no queries in 'klingon'"):
        xquad.queries("klingon")


def test_xquad_pool_and_oracle_run() -> None:
    xquad = _collection("xquad")
    pool = xquad.pool()
    assert len(pool.corpus_paths) == 12
    qid = next(iter(xquad.queries("de")))
    assert len(pool.qrels[qid]) == 12  # one relevant paragraph per document language
    topics, _, qrels = xquad.pair("de", "en")
    oracle = {q: Ranking.from_scores("oracle", [(d, 1.0) for d in qrels[q]]) for q in list(topics)[:595]}
    assert evaluate(oracle, qrels, ["nDCG@10"])["nDCG@10"] == pytest.approx(0.5)


def test_tatoeba_pair_uses_eng_for_x() -> None:
    tatoeba = _collection("tatoeba")
    topics, corpus, qrels = tatoeba.pair("fra", "eng")
    assert corpus.name == "eng-for-fra.jsonl"
    assert len(topics) == len(qrels) > 0
    assert "eng" in tatoeba.document_languages() and "fra" in tatoeba.query_languages()
    with pytest.raises(CollectionError, match="one 'eng' corpus per query language"):
        tatoeba.corpus_path("eng")
    with pytest.raises(CollectionError, match="no 'deu' corpus; document languages: eng"):
        tatoeba.pair("fra", "deu")


def test_collection_errors(tmp_path: Path) -> None:
    with pytest.raises(CollectionError, match=r"lacks \['corpus', 'queries', 'qrels'\]"):
        Collection(tmp_path)
    with pytest.raises(CollectionError, match="available"):
        Collection.named("nope", data_root=tmp_path)
