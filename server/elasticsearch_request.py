"""Elasticsearch's search API, the common subset: a request translated onto xlir's one search call.

A request body (``query``, ``from``, ``size``, ``sort``, ``aggs``, ``highlight``, ``_source``,
``track_total_hits``) becomes one :class:`xlir.server.schemas.SearchRequest`, the same the native
``/search`` runs (:mod:`xlir.server.elasticsearch_response` answers in Elasticsearch's shape). What the
translation decides:

* query text: ``match`` / ``multi_match`` (on ``title``, ``text``, ``_all`` or ``*``; xlir's channels
  always search title and text together, and ``operator`` / boosts are not applied) becomes the query.
  Several text clauses (``bool.must``, ``bool.should``) are joined into one query: every xlir channel
  ranks by all of the query's words together, which is what ``should`` asks for;
* ``term``, ``terms``, ``range``, ``exists``, and their ``bool`` combinations (``filter``, ``must``,
  ``must_not``, ``should``) become the metadata filter (:func:`xlir.indexing.filters.parse_filter`);
  a term-level ``should`` beside text or required clauses (a scoring boost in Elasticsearch) is refused;
* ``match_all`` alone (or no query) browses: every document the filter keeps, sorted by ``sort``;
* ``aggs``: ``terms`` -> facets, ``histogram`` / ``date_histogram`` (fixed intervals in days) ->
  histograms, over the search's matches (see ``_xlir.matched_over`` in the response);
* scores are xlir's fused scores; ``knn`` and every other clause answer 400 naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from xlir.errors import UserError
from xlir.server.schemas import MAX_K, MAX_OFFSET

#: The body keys this endpoint reads.
TOP_LEVEL = (
    "query",
    "from",
    "size",
    "sort",
    "aggs",
    "aggregations",
    "highlight",
    "_source",
    "track_total_hits",
)
#: The URL parameters it reads.
URL_PARAMETERS = ("q", "from", "size", "track_total_hits", "_source")
TEXT_FIELDS = ("title", "text", "_all", "*")
#: Most buckets a terms aggregation returns.
MAX_BUCKETS = 1000
_TEXT_CLAUSES = ("match", "multi_match")


class ElasticsearchRequestError(UserError, ValueError):
    """A request this endpoint cannot run: a 400 in Elasticsearch's error shape, naming the clause."""

    es_type = "illegal_argument_exception"


class ElasticsearchParseError(ElasticsearchRequestError):
    """A body that is not a JSON object, or a key of it xlir does not know."""

    es_type = "x_content_parse_exception"


@dataclass(frozen=True)
class Aggregation:
    name: str
    kind: str  # "terms", "histogram" or "date_histogram"
    field: str
    size: int = 10
    interval: float = 0.0  # histogram; days for a date_histogram
    min_doc_count: int = 0


@dataclass
class EsSearch:
    """One Elasticsearch search request, translated."""

    text: str | None = None
    filter: dict[str, Any] | None = None
    offset: int = 0
    size: int = 10
    sort: list[tuple[str, str]] = field(default_factory=list)
    aggs: list[Aggregation] = field(default_factory=list)
    highlight: Mapping[str, Any] | None = None
    source: Any = True

    def search_fields(self) -> dict[str, Any]:
        """The native :class:`xlir.server.schemas.SearchRequest` fields of this search."""
        facets = [a for a in self.aggs if a.kind == "terms"]
        histograms: dict[str, float] = {}
        for agg in self.aggs:
            if agg.kind != "terms":
                if histograms.get(agg.field, agg.interval) != agg.interval:
                    raise ElasticsearchRequestError(
                        f"[{agg.name}] two histograms on {agg.field!r} with different intervals are not "
                        "supported by xlir"
                    )
                histograms[agg.field] = agg.interval
        return {
            "q": self.text,
            # match_all: a browse of everything (the searcher reads it as no filter)
            "filter": self.filter if self.filter else ({"match_all": {}} if not self.text else None),
            "k": max(self.size, 1),
            "offset": self.offset,
            "sort": [f"{name}:{order}" for name, order in self.sort] or None,
            "facets": list(dict.fromkeys(a.field for a in facets)) or None,
            "facet_size": MAX_BUCKETS if facets else 10,
            "histogram": histograms or None,
        }


def parse_request(body: Any, params: Mapping[str, str]) -> EsSearch:
    """An Elasticsearch search body and URL parameters -> :class:`EsSearch` (or a 400 naming the clause)."""
    if not isinstance(body, Mapping):
        raise ElasticsearchParseError("the request body must be a JSON object")
    unknown = [key for key in body if key not in TOP_LEVEL]
    if unknown:
        raise ElasticsearchParseError(
            f"{unknown[0]} is not supported by xlir (supported: {', '.join(TOP_LEVEL)})"
            + (
                "; xlir's dense channel already searches by the query's meaning"
                if unknown[0] == "knn"
                else ""
            )
        )
    unknown_params = [key for key in params if key not in URL_PARAMETERS]
    if unknown_params:
        raise ElasticsearchRequestError(
            f"URL parameter {unknown_params[0]} is not supported by xlir (supported: {', '.join(URL_PARAMETERS)})"
        )
    search = EsSearch()
    texts, filters = _query(body.get("query", {"match_all": {}}), "query")
    if params.get("q"):
        texts.append(params["q"])
    search.text = " ".join(t for t in texts if t.strip()) or None
    if filters:
        search.filter = filters[0] if len(filters) == 1 else {"bool": {"filter": filters}}
    search.offset = _count(_one(body, params, "from", 0), "from", MAX_OFFSET, 0)
    search.size = _count(_one(body, params, "size", 10), "size", MAX_K, 0)
    search.sort = _sort(body.get("sort"))
    search.aggs = _aggs(body.get("aggs", body.get("aggregations")))
    highlight = body.get("highlight")
    if highlight is not None and not isinstance(highlight, Mapping):
        raise ElasticsearchParseError("highlight takes an object with fields (and pre_tags, post_tags)")
    search.highlight = highlight
    search.source = body.get("_source", params.get("_source", True))
    if isinstance(search.source, str):
        search.source = search.source.lower() not in ("false", "0") and (
            True if search.source.lower() in ("true", "1") else search.source.split(",")
        )
    return search


def _one(body: Mapping[str, Any], params: Mapping[str, str], key: str, default: int) -> Any:
    if key in body and key in params and str(body[key]) != params[key]:
        raise ElasticsearchRequestError(
            f"{key} is given in the URL ({params[key]}) and the body ({body[key]})"
        )
    return body.get(key, params.get(key, default))


def _count(value: Any, name: str, limit: int, low: int) -> int:
    try:
        number = int(value)
        if isinstance(value, bool) or number != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise ElasticsearchParseError(f"{name} must be an integer, not {value!r}") from None
    if not low <= number <= limit:
        raise ElasticsearchRequestError(f"{name} must be within {low}..{limit} on xlir (got {number})")
    return number


def _query(clause: Any, where: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(query texts, filter clauses) of one query clause."""
    if not isinstance(clause, Mapping) or len(clause) != 1:
        raise ElasticsearchParseError(f"{where}: a query clause is an object with one key (the clause name)")
    ((name, body),) = clause.items()
    if name == "match_all":
        return [], []
    if name in _TEXT_CLAUSES:
        return [_text(name, body)], []
    if name == "bool":
        return _bool(body, where)
    if name in ("term", "terms", "range", "exists", "match_none"):
        return [], [dict(clause)]
    raise ElasticsearchRequestError(
        f"{name} is not supported by xlir in {where}; supported: match, multi_match, bool, term, terms, "
        "range, exists, match_all"
    )


def _text(name: str, body: Any) -> str:
    if name == "multi_match":
        if not isinstance(body, Mapping) or not isinstance(body.get("query"), str):
            raise ElasticsearchParseError('multi_match takes {"query": "...", "fields": [...]}')
        unsupported = set(body) - {"query", "fields", "type", "operator", "boost"}
        if unsupported:
            raise ElasticsearchRequestError(f"multi_match: {sorted(unsupported)[0]} is not supported by xlir")
        for name_of_field in body.get("fields") or ():
            _check_text_field(str(name_of_field), "multi_match")
        return str(body["query"])
    if not isinstance(body, Mapping) or len(body) != 1:
        raise ElasticsearchParseError('match takes {"<field>": "query text"}')
    ((name_of_field, value),) = body.items()
    _check_text_field(name_of_field, "match")
    if isinstance(value, Mapping):
        unsupported = set(value) - {"query", "operator", "boost"}
        if unsupported or not isinstance(value.get("query"), str):
            raise ElasticsearchRequestError(
                f"match: {sorted(unsupported)[0] if unsupported else 'a query without text'} is not supported by xlir"
            )
        value = value["query"]
    if not isinstance(value, str):
        raise ElasticsearchParseError(f"match on {name_of_field!r} takes text, not {value!r}")
    return value


def _check_text_field(name: str, clause: str) -> None:
    if name.split("^")[0] not in TEXT_FIELDS:
        raise ElasticsearchRequestError(
            f"{clause} on field {name!r} is not supported by xlir: text is searched in title and text "
            "together; filter metadata fields with term, terms, range or exists"
        )


def _bool(body: Any, where: str) -> tuple[list[str], list[dict[str, Any]]]:
    if not isinstance(body, Mapping):
        raise ElasticsearchParseError(f"{where}.bool takes an object")
    unsupported = set(body) - {"must", "filter", "should", "must_not", "minimum_should_match", "boost"}
    if unsupported:
        raise ElasticsearchRequestError(f"bool.{sorted(unsupported)[0]} is not supported by xlir")
    texts: list[str] = []
    required: list[dict[str, Any]] = []
    for key in ("must", "filter"):
        for item in _items(body, key):
            item_texts, item_filters = _query(item, f"{where}.bool.{key}")
            if item_texts and key == "filter":
                raise ElasticsearchRequestError(
                    f"match in {where}.bool.filter is not supported by xlir: text ranks, put it in must"
                )
            texts += item_texts
            required += item_filters
    should_filters: list[dict[str, Any]] = []
    should_texts: list[str] = []
    for item in _items(body, "should"):
        item_texts, item_filters = _query(item, f"{where}.bool.should")
        should_texts += item_texts
        if item_filters:
            should_filters.append(
                item_filters[0] if len(item_filters) == 1 else {"bool": {"filter": item_filters}}
            )
    if should_filters and (required or texts or should_texts):
        raise ElasticsearchRequestError(
            "a term-level bool.should beside must, filter or text clauses (a scoring boost) is not supported "
            "by xlir; move it to bool.filter, or leave it out"
        )
    texts += should_texts
    excluded = []
    for item in _items(body, "must_not"):
        item_texts, item_filters = _query(item, f"{where}.bool.must_not")
        if item_texts:
            raise ElasticsearchRequestError("match in bool.must_not is not supported by xlir")
        excluded += item_filters
    combined: dict[str, Any] = {}
    if required:
        combined["filter"] = required
    if should_filters:
        combined["should"] = should_filters
    if excluded:
        combined["must_not"] = excluded
    return texts, [{"bool": combined}] if combined else []


def _items(body: Mapping[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _sort(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    sort: list[tuple[str, str]] = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str):
            sort.append((item, "desc" if item == "_score" else "asc"))
            continue
        if not isinstance(item, Mapping) or len(item) != 1:
            raise ElasticsearchParseError(f"a sort entry is a field name or {{field: order}}, not {item!r}")
        ((name, spec),) = item.items()
        if isinstance(spec, Mapping):
            unsupported = set(spec) - {"order"}
            if unsupported:
                raise ElasticsearchRequestError(
                    f"sort option {sorted(unsupported)[0]} is not supported by xlir"
                )
            spec = spec.get("order", "desc" if name == "_score" else "asc")
        if spec not in ("asc", "desc"):
            raise ElasticsearchParseError(f"sort order for {name!r} must be asc or desc, not {spec!r}")
        sort.append((name, spec))
    return sort


def _aggs(value: Any) -> list[Aggregation]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise ElasticsearchParseError("aggs takes an object: {name: {terms|histogram|date_histogram: {...}}}")
    aggs = []
    for name, spec in value.items():
        if not isinstance(spec, Mapping) or len(spec) != 1:
            extra = (
                sorted(set(spec) - {"terms", "histogram", "date_histogram"})
                if isinstance(spec, Mapping)
                else []
            )
            what = f"{extra[0]} (in aggregation [{name}])" if extra else f"aggregation [{name}]"
            raise ElasticsearchRequestError(
                f"{what} is not supported by xlir: one of terms, histogram, date_histogram, without sub-aggs"
            )
        ((kind, body),) = spec.items()
        if kind not in ("terms", "histogram", "date_histogram"):
            raise ElasticsearchRequestError(
                f"{kind} aggregation [{name}] is not supported by xlir; supported: terms, histogram, date_histogram"
            )
        if not isinstance(body, Mapping) or not isinstance(body.get("field"), str):
            raise ElasticsearchParseError(f"[{name}] {kind} needs a field")
        allowed = {
            "terms": {"field", "size"},
            "histogram": {"field", "interval", "min_doc_count"},
            "date_histogram": {"field", "calendar_interval", "fixed_interval", "interval", "min_doc_count"},
        }[kind]
        unsupported = sorted(set(body) - allowed)
        if unsupported:
            raise ElasticsearchRequestError(
                f"{kind} option {unsupported[0]} in [{name}] is not supported by xlir"
            )
        min_doc_count = _count(body.get("min_doc_count", 0), f"[{name}] min_doc_count", 1_000_000, 0)
        if kind == "terms":
            size = _count(body.get("size", 10), f"[{name}] size", MAX_BUCKETS, 1)
            aggs.append(Aggregation(name, kind, body["field"], size=size))
        elif kind == "histogram":
            interval = body.get("interval")
            if isinstance(interval, bool) or not isinstance(interval, int | float) or not interval > 0:
                raise ElasticsearchParseError(f"[{name}] histogram needs an interval above 0")
            aggs.append(
                Aggregation(name, kind, body["field"], interval=float(interval), min_doc_count=min_doc_count)
            )
        else:
            days = _days(name, body)
            aggs.append(Aggregation(name, kind, body["field"], interval=days, min_doc_count=min_doc_count))
    return aggs


_FIXED = re.compile(r"^\s*(\d+)\s*d\s*$")


def _days(name: str, body: Mapping[str, Any]) -> float:
    calendar = body.get("calendar_interval")
    if calendar is not None:
        if calendar in ("day", "1d"):
            return 1.0
        raise ElasticsearchRequestError(
            f"calendar_interval {calendar!r} in [{name}] is not supported by xlir: use fixed_interval in days "
            "(e.g. '365d'), or a histogram on an integer year field"
        )
    fixed = body.get("fixed_interval", body.get("interval"))
    match = _FIXED.match(str(fixed)) if fixed is not None else None
    if match is None or int(match.group(1)) < 1:
        raise ElasticsearchRequestError(
            f"date_histogram [{name}] needs fixed_interval in whole days ('30d'); {fixed!r} is not supported by xlir"
        )
    return float(match.group(1))
