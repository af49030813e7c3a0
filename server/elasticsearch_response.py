"""Elasticsearch's search API, the common subset: a :class:`xlir.retrieval.searcher.SearchResult` answered
in Elasticsearch's response shape (hits with ``_source``, ``highlight`` and ``sort`` values, totals,
aggregations), for a request :mod:`xlir.server.elasticsearch_request` translated.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from xlir.retrieval.searcher import SearchHit, SearchResult
from xlir.server.elasticsearch_request import Aggregation, EsSearch
from xlir.server.snippets import QueryTerms, snippet

_EPOCH = date(1970, 1, 1)


def es_response(
    search: EsSearch, result: SearchResult, index_name: str, took_ms: float, terms: QueryTerms
) -> dict[str, Any]:
    """``result`` in Elasticsearch's response shape."""
    hits = [_hit(hit, search, index_name, terms) for hit in result.hits[: search.size]]
    scores = [hit.score for hit in result.hits[: search.size]]
    body: dict[str, Any] = {
        "took": int(round(took_ms)),
        "timed_out": False,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {
            "total": {"value": result.total, "relation": result.total_relation},
            "max_score": max(scores) if scores else None,
            "hits": hits,
        },
        "_xlir": {
            "matched_over": result.matched_over,
            "query_lang": result.query_lang,
            "channels": result.channels,
        },
    }
    if search.aggs:
        body["aggregations"] = {agg.name: _aggregation(agg, result) for agg in search.aggs}
    return body


def _hit(hit: SearchHit, search: EsSearch, index_name: str, terms: QueryTerms) -> dict[str, Any]:
    out: dict[str, Any] = {"_index": index_name, "_id": hit.docid, "_score": hit.score}
    source = {"title": hit.title, "text": hit.text, "lang": hit.lang, **hit.metadata}
    if search.source is not False:
        out["_source"] = _filtered_source(source, search.source)
    if search.highlight:
        out["highlight"] = _highlight(source, search.highlight, terms)
    if search.sort:
        out["sort"] = [
            hit.score if name == "_score" else hit.docid if name == "_id" else _first(source.get(name))
            for name, _ in search.sort
        ]
    return out


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _filtered_source(source: dict[str, Any], spec: Any) -> dict[str, Any]:
    if spec is True or spec is None:
        return source
    if isinstance(spec, str):
        spec = [spec]
    includes: Sequence[str] = (
        spec
        if isinstance(spec, list)
        else list(spec.get("includes") or ["*"])
        if isinstance(spec, Mapping)
        else ["*"]
    )
    excludes: Sequence[str] = list(spec.get("excludes") or []) if isinstance(spec, Mapping) else []
    return {
        key: value
        for key, value in source.items()
        if any(fnmatch.fnmatchcase(key, p) for p in includes)
        and not any(fnmatch.fnmatchcase(key, p) for p in excludes)
    }


def _highlight(source: Mapping[str, Any], spec: Mapping[str, Any], terms: QueryTerms) -> dict[str, list[str]]:
    fields = spec.get("fields") or {}
    names = (
        list(fields)
        if isinstance(fields, Mapping)
        else [next(iter(f)) for f in fields if isinstance(f, Mapping)]
    )
    pre = (spec.get("pre_tags") or ["<em>"])[0]
    post = (spec.get("post_tags") or ["</em>"])[0]
    found: dict[str, list[str]] = {}
    for name in names:
        for key in [k for k in ("title", "text") if fnmatch.fnmatchcase(k, name)]:
            text = source.get(key)
            if not text:
                continue
            fragment = snippet(str(text), terms)
            if "<mark>" in fragment:  # Elasticsearch leaves out fields without a match
                found[key] = [fragment.replace("<mark>", pre).replace("</mark>", post)]
    return found


def _aggregation(agg: Aggregation, result: SearchResult) -> dict[str, Any]:
    if agg.kind == "terms":
        buckets = result.facets.get(agg.field, [])
        shown = buckets[: agg.size]
        return {
            "doc_count_error_upper_bound": 0,
            "sum_other_doc_count": sum(count for _, count in buckets[agg.size :]),
            "buckets": [{"key": value, "doc_count": count} for value, count in shown],
        }
    if agg.kind == "histogram":
        counts = {round(float(key), 9): count for key, count in result.histograms.get(agg.field, [])}
        keys = sorted(counts)
        filled = _filled(keys, agg.interval) if agg.min_doc_count == 0 else keys
        return {
            "buckets": [
                {"key": key, "doc_count": counts.get(key, 0)}
                for key in filled
                if counts.get(key, 0) >= agg.min_doc_count
            ]
        }
    counts = dict(result.histograms.get(agg.field, []))
    days = {(date.fromisoformat(str(key)[:10]) - _EPOCH).days: count for key, count in counts.items()}
    keys = sorted(days)
    filled_days = _filled([float(k) for k in keys], agg.interval) if agg.min_doc_count == 0 else keys
    return {
        "buckets": [
            {
                "key_as_string": (_EPOCH + timedelta(days=int(day))).isoformat(),
                "key": int(day) * 86_400_000,
                "doc_count": days.get(int(day), 0),
            }
            for day in filled_days
            if days.get(int(day), 0) >= agg.min_doc_count
        ]
    }


def _filled(keys: list[float], interval: float) -> list[float]:
    """Every bucket from the first to the last (Elasticsearch's min_doc_count 0)."""
    if not keys:
        return []
    steps = round((keys[-1] - keys[0]) / interval)
    if steps > 10_000:
        return keys
    return [round(keys[0] + i * interval, 9) for i in range(steps + 1)]
