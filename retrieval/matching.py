"""What a search matched, beyond the page of hits: filters resolved, the sort, facets, histograms, totals.

"Match" (the documents facets, histograms and ``total`` count) is defined once, here and in
:meth:`xlir.retrieval.searcher.Searcher.search`:

* a query: the fused candidates of every searched channel after the filter (which each channel applies
  during retrieval), down to ``match_depth`` documents. Neural channels rank every document, so their
  "matches" are their top candidates; BM25's exact Lucene count is not used across channels. ``total``
  is the number of those candidates, ``"eq"`` when every channel returned fewer than it was asked for
  (the candidate list was exhausted), ``"gte"`` otherwise (a lower bound);
* no query text, only a filter (a browse): exactly the documents the filter keeps (``"eq"``).

Sorting by a field reorders the matched candidates; ``_score`` is the relevance order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from xlir.indexing.fields import LANG_FIELD, is_numeric
from xlir.indexing.filters import Filter, check_filter, parse_filter
from xlir.retrieval.query import QueryError

SCORE = "_score"
ID = "_id"
SORT_ORDERS = ("asc", "desc")
#: Default depth of the candidate list facets and totals are counted over: the depth the fused first
#: stage already searches each channel to, so a plain search costs nothing extra. Deeper matches cost
#: latency (1000 took about 1.7x the time of 100 per query on the bundled sample, 2 CPU cores); ask
#: for them per request (``match_depth``) where a results page needs deeper facets.
MATCH_DEPTH = 100
MAX_MATCH_DEPTH = 10_000

SortSpec = list[tuple[str, str]]


def index_fields(fields: Mapping[str, str]) -> dict[str, str]:
    """An index's fields (from its manifest) with ``lang``, the keyword field every index has."""
    return {**fields, LANG_FIELD: "keyword"}


def resolve_filter(filter: Filter | Mapping[str, Any] | None, fields: Mapping[str, str]) -> Filter | None:  # noqa: A002
    """A filter (or its Elasticsearch query-DSL form) checked against ``fields``; None = none."""
    resolved = parse_filter(filter) if isinstance(filter, Mapping) else filter
    check_filter(resolved, fields)
    return resolved


def parse_sort(specs: Sequence[str] | None) -> SortSpec:
    """``["year:desc", "_score"]`` -> ``[("year", "desc"), ("_score", "desc")]`` (comma-separated too).

    The order defaults to ``desc`` for ``_score`` and ``asc`` for a field.
    """
    parsed: SortSpec = []
    for spec in specs or ():
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            name, _, order = item.rpartition(":") if ":" in item else (item, "", "")
            name = name.strip()
            parsed.append((name, order.strip().lower() or ("desc" if name == SCORE else "asc")))
    return parsed


def parse_histogram_specs(specs: Sequence[str] | None) -> dict[str, float]:
    """``["year:10", "published:365"]`` -> ``{"year": 10.0, "published": 365.0}``."""
    histograms: dict[str, float] = {}
    for spec in specs or ():
        for item in spec.split(","):
            if not item.strip():
                continue
            name, sep, interval = item.rpartition(":")
            try:
                if not sep or not name.strip():
                    raise ValueError
                histograms[name.strip()] = float(interval)
            except ValueError:
                raise QueryError(
                    f"a histogram is FIELD:INTERVAL, e.g. year:10 (days for a date field); got {item!r}"
                ) from None
    return histograms


def check_sort(sort: Sequence[tuple[str, str]] | None, fields: Mapping[str, str]) -> SortSpec:
    """The sort keys, checked: each a field of the index, ``_score`` or ``_id``, ``asc`` or ``desc``."""
    checked: SortSpec = []
    for item in sort or ():
        if isinstance(item, str) or len(item) != 2:
            raise QueryError(f"a sort key is (field, 'asc' | 'desc'), e.g. ('year', 'desc'); got {item!r}")
        name, order = item
        if order not in SORT_ORDERS:
            raise QueryError(f"sort order {order!r} for {name!r}: use 'asc' or 'desc'")
        if name not in (SCORE, ID) and name not in fields:
            raise QueryError(f"cannot sort by {name!r}: {_known(fields)}, or _score, _id")
        checked.append((name, order))
    return checked


def check_facets(facets: Sequence[str], fields: Mapping[str, str]) -> list[str]:
    if isinstance(facets, str):
        facets = [facets]
    for name in facets:
        if name not in fields:
            raise QueryError(f"no facet on {name!r}: {_known(fields)}")
    return list(dict.fromkeys(facets))


def check_histograms(histograms: Mapping[str, float] | None, fields: Mapping[str, str]) -> dict[str, float]:
    for name, interval in (histograms or {}).items():
        if name not in fields:
            raise QueryError(f"no histogram on {name!r}: {_known(fields)}")
        if not is_numeric(fields[name]):
            raise QueryError(
                f"no histogram on {name!r}: it is a {fields[name]} field; histograms need an integer, "
                "float or date field (use a facet for keywords)"
            )
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not 0 < interval < float("inf")
        ):
            raise QueryError(f"the histogram interval of {name!r} must be a number above 0, got {interval!r}")
    return {name: float(interval) for name, interval in (histograms or {}).items()}


def sort_docids(
    docids: Sequence[str], sort: SortSpec, values_of: Callable[[str], Mapping[str, Any]]
) -> list[str]:
    """``docids`` (in relevance order) reordered by ``sort``; documents without a value go last.

    ``values_of(field)`` gives docid -> that field's (first) value. ``_score`` is the relevance order.
    """
    order = list(docids)
    position = {docid: i for i, docid in enumerate(docids)}
    for name, direction in reversed(sort):  # stable sorts, least significant key first
        reverse = direction == "desc"
        if name == SCORE:
            order.sort(key=lambda d: position[d], reverse=reverse)
        elif name == ID:
            order.sort(reverse=reverse)
        else:
            values = values_of(name)
            present = [d for d in order if values.get(d) is not None]
            missing = [d for d in order if values.get(d) is None]
            present.sort(key=lambda d: _sortable(values[d]), reverse=reverse)
            order = present + missing
    return order


def is_relevance_order(sort: SortSpec) -> bool:
    return not sort or sort[0] == (SCORE, "desc")


def matched_over(
    *, browse: bool, depth: int, channels: Sequence[str], filtered: bool, exhausted: bool, total: int
) -> str:
    """One sentence: what "match" meant for this search (the response's ``matched_over``)."""
    if browse:
        return (
            "no query text: every document the filter keeps, counted exactly"
            if filtered
            else "no query text: every document, counted exactly"
        )
    kept = " after the filter" if filtered else ""
    how = (
        "every candidate the channels had (counted exactly)"
        if exhausted
        else f"the top {depth} fused candidates (a lower bound of the matches)"
    )
    return f"the query's candidates from {', '.join(channels)}{kept}: {how}, {total} documents"


def _sortable(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, int | float):
        return (0, value)
    return (1, str(value))


def _known(fields: Mapping[str, str]) -> str:
    return "the index's fields are " + ", ".join(f"{n} ({t})" for n, t in sorted(fields.items()))


__all__ = [
    "ID",
    "MATCH_DEPTH",
    "SCORE",
    "check_facets",
    "check_histograms",
    "check_sort",
    "index_fields",
    "matched_over",
    "parse_histogram_specs",
    "parse_sort",
    "resolve_filter",
    "sort_docids",
]
