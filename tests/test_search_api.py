"""Filters, facets, totals, sort and each hit's own score: the Searcher and the HTTP /search over real indexes.

The index: XQuAD paragraphs (en, de) with metadata (tests/metadata_corpus.py), BM25 + the tiny dense model
of test_dense (a real BERT architecture with random weights), served by a real uvicorn on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import save_tiny_sentence_encoder
from metadata_corpus import metadata_for, write_metadata_corpus
from test_server import _Server

from xlir.indexing.builder import build_index
from xlir.indexing.config import DenseConfig, IndexConfig
from xlir.indexing.ranking import Hit, Ranking
from xlir.indexing.readers import open_corpus
from xlir.retrieval.fusion import language_slots, rrf
from xlir.retrieval.searcher import Searcher
from xlir.server.app import create_app

QUERY = "Super Bowl Broncos Panthers"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    return write_metadata_corpus(tmp_path_factory.mktemp("corpus") / "meta.jsonl", per_lang=40)


@pytest.fixture(scope="module")
def index_dir(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("search-api")
    texts = [json.loads(line)["text"] for line in corpus.read_text(encoding="utf-8").splitlines()]
    model = save_tiny_sentence_encoder(folder / "model", texts, vocab_size=1500)[1]
    config = IndexConfig(channels=("bm25", "dense"), dense=DenseConfig(model=str(model)))
    build_index(open_corpus(corpus), folder / "index", config)
    return folder / "index"


@pytest.fixture(scope="module")
def searcher(index_dir: Path) -> Iterator[Searcher]:
    with Searcher(index_dir) as searcher:
        yield searcher


@pytest.fixture(scope="module")
def ids(corpus: Path) -> list[str]:
    return [json.loads(line)["id"] for line in corpus.read_text(encoding="utf-8").splitlines()]


# -- each hit's own score ---------------------------------------------------------------------------------


def test_language_slots_give_each_hit_its_own_score() -> None:
    dense = Ranking("dense", tuple(Hit(d, s, lang) for d, s, lang in [("e1", 0.9, "en"), ("g1", 0.8, "de")]))
    bm25 = Ranking("bm25", tuple(Hit(d, s, "de") for d, s in [("g2", 9.0), ("g3", 1.0)]))
    fused = rrf([dense, bm25])
    own = {hit.docid: hit.score for hit in fused.hits}
    slotted = language_slots(dense, fused, "de")
    assert [h.docid for h in slotted.hits] == ["e1", "g2", "g1", "g3"]
    # g2 (BM25 only) holds dense's German place, and shows its own score, not that place's (0.8)
    assert {h.docid: h.score for h in slotted.hits} == own
    assert slotted.hits[1].score == pytest.approx(1 / 61)
    slots = language_slots(dense, fused, "de", scores="slot")
    assert [h.score for h in slots.hits][:2] == [0.9, 0.8]  # the places' scores, for run files


def test_a_fused_hit_shows_its_own_rrf_score(searcher: Searcher) -> None:
    result = searcher.search("Die Broncos gewannen den Super Bowl", k=20, langs=["de", "en"])
    assert len(result.hits) == 20
    for hit in result.hits:  # RRF: the sum of 1 / (60 + rank) over the channels that found it
        assert hit.score == pytest.approx(sum(1 / (60 + s.rank) for s in hit.sources.values())), hit.docid
    bm25_only = [i for i, h in enumerate(result.hits) if set(h.sources) == {"bm25"}]
    dense_around = [
        i for i in bm25_only if 0 < i < len(result.hits) - 1 and "dense" in result.hits[i - 1].sources
    ]
    assert (
        bm25_only and dense_around or bm25_only == []
    )  # where one sits between dense hits it is still its own


# -- filters, totals, facets, sort on every channel ----------------------------------------------------------


@pytest.mark.parametrize("channels", [["bm25"], ["dense"], ["bm25", "dense"]])
def test_a_selective_filter_still_returns_k_hits(
    searcher: Searcher, ids: list[str], channels: list[str]
) -> None:
    kept = {d for d in ids if metadata_for(d)["field"] == "law" and metadata_for(d)["year"] >= 2000}
    assert 3 <= len(kept) <= 20
    query = "Jahr year first city university team also war" if channels == ["bm25"] else QUERY
    result = searcher.search(
        query,
        k=3,
        channels=channels,
        filter={"bool": {"filter": [{"term": {"field": "law"}}, {"range": {"year": {"gte": 2000}}}]}},
        facets=["lang", "field"],
    )
    assert len(result.hits) == 3
    assert {h.docid for h in result.hits} <= kept
    assert result.facets["field"] == [("law", result.total)]
    assert sum(count for _, count in result.facets["lang"]) == result.total
    if "dense" in channels:  # a neural channel ranks every allowed document: all of them match, exactly
        assert (result.total, result.total_relation) == (len(kept), "eq")


def test_facets_and_histograms_equal_a_brute_force_count(searcher: Searcher, ids: list[str]) -> None:
    result = searcher.search(QUERY, k=5, facets=["venues", "lang"], histograms={"year": 5}, match_depth=30)
    assert (result.total, result.total_relation) == (30, "gte")
    assert "top 30" in result.matched_over
    # the matches are the first 30 fused candidates: recount them from the corpus's own metadata
    matched = [h.docid for h in searcher.search(QUERY, k=30).hits]
    venues = Counter(v for d in matched for v in metadata_for(d)["venues"])
    expected = sorted(venues.items(), key=lambda item: (-item[1], item[0]))[:10]
    assert result.facets["venues"] == expected
    years = Counter((metadata_for(d)["year"] // 5) * 5 for d in matched)
    assert dict(result.histograms["year"]) == {float(y): c for y, c in years.items()}


def test_browse_sort_and_pages(searcher: Searcher, ids: list[str]) -> None:
    acl = sorted(d for d in ids if "ACL" in metadata_for(d)["venues"])
    result = searcher.search(None, k=5, filter={"term": {"venues": "ACL"}}, facets=["lang"])
    assert (result.total, result.total_relation) == (len(acl), "eq")
    assert [h.docid for h in result.hits] == acl[:5]  # default order: id
    assert "no query text" in result.matched_over
    newest = searcher.search("", k=4, offset=2, filter={"term": {"venues": "ACL"}}, sort=[("year", "desc")])
    ordered = sorted(acl, key=lambda d: -metadata_for(d)["year"])
    assert [metadata_for(h.docid)["year"] for h in newest.hits] == [
        metadata_for(d)["year"] for d in ordered[2:6]
    ]
    by_year = searcher.search(QUERY, k=10, sort=[("year", "desc"), ("_score", "desc")])
    years = [h.metadata["year"] for h in by_year.hits]
    assert years == sorted(years, reverse=True)


def test_bad_filters_sorts_and_facets_say_what_is_wrong(searcher: Searcher) -> None:
    from xlir.errors import UserError

    for kwargs, message in [
        ({"filter": {"term": {"colour": "red"}}}, "unknown field 'colour'"),
        ({"filter": {"range": {"field": {"gte": "a"}}}}, "keyword"),
        ({"filter": {"wildcard": {"field": "l*"}}}, "wildcard"),
        ({"sort": [("colour", "asc")]}, "cannot sort by 'colour'"),
        ({"facets": ["colour"]}, "no facet on 'colour'"),
        ({"histograms": {"field": 5}}, "keyword field"),
    ]:
        with pytest.raises(UserError, match=message):
            searcher.search(QUERY, **kwargs)


# -- HTTP -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(index_dir: Path) -> Iterator[httpx.Client]:
    with _Server(create_app(index_dir)) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def test_from_and_size_are_aliases_of_offset_and_k(client: httpx.Client) -> None:
    native = client.get("/search", params={"q": QUERY, "offset": 3, "k": 4}).json()
    aliased = client.get("/search", params={"q": QUERY, "from": 3, "size": 4}).json()
    posted = client.post("/search", json={"q": QUERY, "from": 3, "size": 4}).json()
    assert (
        [h["id"] for h in aliased["hits"]]
        == [h["id"] for h in native["hits"]]
        == [h["id"] for h in posted["hits"]]
    )
    assert (aliased["offset"], aliased["k"]) == (3, 4)
    same = client.get("/search", params={"q": QUERY, "from": 3, "offset": 3})
    assert same.status_code == 200
    for response in (
        client.get("/search", params={"q": QUERY, "from": 3, "offset": 5}),
        client.post("/search", json={"q": QUERY, "size": 3, "k": 5}),
    ):
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert ("`from`" in error and "`offset`" in error) or ("`size`" in error and "`k`" in error)


def test_unknown_get_parameters_are_refused(client: httpx.Client) -> None:
    response = client.get("/search", params={"q": QUERY, "pgae": 2, "colour": "red"})
    assert response.status_code == 422
    assert "['colour', 'pgae']" in response.json()["error"]


def test_http_filter_facets_total_and_sort(client: httpx.Client, ids: list[str]) -> None:
    kept = [d for d in ids if metadata_for(d)["year"] >= 2010 and "doi" in metadata_for(d)]
    params = [
        ("q", QUERY),
        ("filter", "year>=2010"),
        ("filter", "has:doi"),
        ("facets", "lang,field"),
        ("histogram", "year:5"),
        ("sort", "year:desc"),
        ("k", "5"),
    ]
    got = client.get("/search", params=params).json()
    assert got["total"] == {"value": len(kept), "relation": "eq"}  # dense ranks every allowed document
    assert sum(b["count"] for b in got["facets"]["lang"]) == len(kept)
    assert all(set(b) == {"key", "count"} for b in got["histograms"]["year"])
    years = [h["metadata"]["year"] for h in got["hits"]]
    assert years == sorted(years, reverse=True) and min(years) >= 2010
    assert got["matched_over"]
    body = {
        "q": QUERY,
        "filter": {"bool": {"filter": [{"range": {"year": {"gte": 2010}}}, {"exists": {"field": "doi"}}]}},
        "facets": ["lang", "field"],
        "histogram": {"year": 5},
        "sort": ["year:desc"],
        "k": 5,
    }
    posted = client.post("/search", json=body).json()
    assert [h["id"] for h in posted["hits"]] == [h["id"] for h in got["hits"]]
    assert posted["facets"] == got["facets"] and posted["total"] == got["total"]
    browse = client.get("/search", params={"filter": "lang=de", "facets": "lang"}).json()
    assert browse["facets"]["lang"] == [{"value": "de", "count": 40}]
    bad = client.get("/search", params={"q": QUERY, "filter": "colour=red"})
    assert bad.status_code == 400 and "colour" in bad.json()["error"]
