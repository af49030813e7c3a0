"""``/{index}/_search``: opensearch-py against a real ``xlir serve`` (127.0.0.1, free port), same hits as /search."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from metadata_corpus import metadata_for, write_metadata_corpus
from served import serving

from xlir.indexing.builder import build_index
from xlir.indexing.config import IndexConfig
from xlir.indexing.readers import open_corpus

opensearchpy = pytest.importorskip("opensearchpy", reason="pip install -e '.[test]' (opensearch-py)")

QUERY = "Super Bowl Broncos Panthers"
NAME = "papers"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    folder = tmp_path_factory.mktemp("es")
    corpus = write_metadata_corpus(folder / "meta.jsonl", per_lang=40)
    build_index(open_corpus(corpus), folder / NAME, IndexConfig(channels=("bm25",)))
    return folder / NAME


@pytest.fixture(scope="module")
def url(index_dir: Path) -> Iterator[str]:
    with serving(index_dir) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str) -> opensearchpy.OpenSearch:
    port = int(url.rsplit(":", 1)[1])
    return opensearchpy.OpenSearch(hosts=[{"host": "127.0.0.1", "port": port}], use_ssl=False, timeout=60)


def test_opensearch_py_gets_the_native_hits(client: opensearchpy.OpenSearch, url: str) -> None:
    body = {
        "query": {
            "bool": {
                "must": [{"match": {"text": QUERY}}],
                "filter": [{"range": {"year": {"gte": 2000}}}],
                "must_not": [{"term": {"field": "law"}}],
            }
        },
        "aggs": {
            "by_lang": {"terms": {"field": "lang"}},
            "venues": {"terms": {"field": "venues", "size": 3}},
        },
        "highlight": {"fields": {"text": {}}},
    }
    es = client.search(index=NAME, body=body, from_=1, size=3)
    native = httpx.post(
        f"{url}/search",
        json={
            "q": QUERY,
            "from": 1,
            "size": 3,
            "filter": {
                "bool": {
                    "filter": [{"range": {"year": {"gte": 2000}}}],
                    "must_not": [{"term": {"field": "law"}}],
                }
            },
            "facets": ["lang", "venues"],
            "facet_size": 1000,
        },
        timeout=60,
    ).json()
    assert [h["_id"] for h in es["hits"]["hits"]] == [h["id"] for h in native["hits"]]
    assert len(es["hits"]["hits"]) == 3
    assert [h["_score"] for h in es["hits"]["hits"]] == pytest.approx([h["score"] for h in native["hits"]])
    for hit in es["hits"]["hits"]:
        assert hit["_index"] == NAME
        assert hit["_source"]["year"] >= 2000 and hit["_source"]["field"] != "law"
        assert hit["_source"]["year"] == metadata_for(hit["_id"])["year"]
    assert any("<em>" in hit.get("highlight", {}).get("text", [""])[0] for hit in es["hits"]["hits"])
    total = es["hits"]["total"]
    assert total == native["total"]
    langs = es["aggregations"]["by_lang"]["buckets"]
    assert sum(b["doc_count"] for b in langs) == total["value"]
    assert [{"value": b["key"], "count": b["doc_count"]} for b in langs] == native["facets"]["lang"]
    venues = es["aggregations"]["venues"]
    assert len(venues["buckets"]) == 3
    assert venues["sum_other_doc_count"] == sum(b["count"] for b in native["facets"]["venues"][3:])


def test_browse_sort_and_histograms(client: opensearchpy.OpenSearch) -> None:
    body = {
        "query": {"bool": {"filter": [{"terms": {"venues": ["ACL", "EMNLP"]}}]}},
        "sort": [{"year": {"order": "desc"}}],
        "aggs": {
            "years": {"histogram": {"field": "year", "interval": 10}},
            "published": {"date_histogram": {"field": "published", "fixed_interval": "3650d"}},
        },
        "_source": ["year", "venues"],
        "size": 5,
    }
    es = client.search(index="_all", body=body)
    assert es["hits"]["total"]["relation"] == "eq"
    years = [h["_source"]["year"] for h in es["hits"]["hits"]]
    assert years == sorted(years, reverse=True)
    assert set(es["hits"]["hits"][0]["_source"]) == {"year", "venues"}
    buckets = es["aggregations"]["years"]["buckets"]
    assert sum(b["doc_count"] for b in buckets) == es["hits"]["total"]["value"]
    dates = es["aggregations"]["published"]["buckets"]
    assert all("key_as_string" in b and isinstance(b["key"], int) for b in dates)


@pytest.mark.parametrize(
    ("body", "clause"),
    [
        ({"knn": {"field": "v", "query_vector": [0.1], "k": 3}}, "knn"),
        ({"query": {"wildcard": {"title": "sup*"}}}, "wildcard"),
        ({"query": {"match": {"text": "x"}}, "suggest": {}}, "suggest"),
        ({"aggs": {"x": {"avg": {"field": "year"}}}}, "avg"),
        (
            {"query": {"bool": {"must": {"match": {"text": "x"}}, "should": [{"term": {"lang": "de"}}]}}},
            "should",
        ),
    ],
)
def test_what_xlir_does_not_support_is_a_400_naming_it(url: str, body: dict, clause: str) -> None:
    response = httpx.post(f"{url}/{NAME}/_search", json=body, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["status"] == 400
    assert error["error"]["type"] in ("x_content_parse_exception", "illegal_argument_exception")
    assert clause in error["error"]["reason"] and "not supported by xlir" in error["error"]["reason"]


def test_another_index_name_is_a_404_and_errors_keep_the_shape(
    client: opensearchpy.OpenSearch, url: str
) -> None:
    with pytest.raises(opensearchpy.NotFoundError):
        client.search(index="other", body={"query": {"match_all": {}}})
    bad = httpx.post(f"{url}/{NAME}/_search", json={"query": {"term": {"colour": "red"}}}, timeout=30)
    assert bad.status_code == 400 and "colour" in bad.json()["error"]["reason"]
    assert httpx.get(f"{url}/", timeout=10).text.lower().count("elasticsearch") == 0
