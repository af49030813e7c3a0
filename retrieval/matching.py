"""What a search matched, beyond the page of hits: filters resolved, the sort, facets, histograms, totals.

"Match" (the documents facets, histograms and ``total`` count) is defined once, here (:func:`browse`,
:func:`count_matches`) and in :meth:`xlir.retrieval.first_stage.FirstStage.candidates`:

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
from dataclasses import dataclass, replace
from typing import Any

from xlir.indexing.docstore import DocStore
from xlir.indexing.fields import LANG_FIELD, is_numeric
from xlir.indexing.filters import And, Filter, Terms, check_filter, parse_filter
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


@dataclass(frozen=True)
class MatchOptions:
    """What one search asks of its matches, checked against the index's fields."""

    filter: Filter | None
    sort: SortSpec
    facets: list[str]
    histograms: dict[str, float]
    depth: int  # match_depth: how deep the fused candidates go that a query's matches are
    facet_size: int

    @classmethod
    def checked(
        cls,
        fields: Mapping[str, str],
        *,
        filter: Filter | Mapping[str, Any] | None,  # noqa: A002  (the API's name)
        sort: Sequence[tuple[str, str]] | None,
        facets: Sequence[str],
        histograms: Mapping[str, float] | None,
        match_depth: int,
        facet_size: int,
    ) -> MatchOptions:
        """The options of :meth:`xlir.retrieval.searcher.Searcher.search`, each checked (``fields``: the
        manifest's); :class:`QueryError` names the first that cannot be used."""
        if isinstance(match_depth, bool) or not 1 <= match_depth <= MAX_MATCH_DEPTH:
            raise QueryError(f"match_depth must be within 1..{MAX_MATCH_DEPTH} (got {match_depth}).")
        if facet_size < 1:
            raise QueryError(f"facet_size must be 1 or more (got {facet_size}).")
        known = index_fields(fields)
        return cls(
            filter=resolve_filter(filter, known),
            sort=check_sort(sort, known),
            facets=check_facets(facets, known),
            histograms=check_histograms(histograms, known),
            depth=match_depth,
            facet_size=facet_size,
        )

    def browses(self, query: str | None) -> bool:
        """Whether a search for ``query`` is a browse: no query text (None, or empty with a filter)."""
        return query is None or (isinstance(query, str) and not query.strip() and self.filter is not None)

    @property
    def by_relevance(self) -> bool:
        return is_relevance_order(self.sort)


@dataclass(frozen=True)
class Matches:
    """What a search matched, counted: the ``total`` and its relation, facets, histograms, in one sentence."""

    total: int
    relation: str  # "eq" (exact) or "gte" (a lower bound)
    facets: dict[str, list[tuple[Any, int]]]
    histograms: dict[str, list[tuple[Any, int]]]
    over: str  # what "match" meant (matched_over)


def count_matches(
    docstore: DocStore,
    matched: Sequence[str],
    options: MatchOptions,
    *,
    channels: Sequence[str],
    exhausted: bool,
    browse: bool = False,
) -> Matches:
    """The facets and histograms ``options`` asks for over ``matched``, and their total."""
    return Matches(
        total=len(matched),
        relation="eq" if exhausted else "gte",
        facets={name: docstore.facet_counts(matched, name, options.facet_size) for name in options.facets},
        histograms={
            name: docstore.histogram(matched, name, interval) for name, interval in options.histograms.items()
        },
        over=matched_over(
            browse=browse,
            depth=len(matched) if browse else options.depth,
            channels=channels,
            filtered=options.filter is not None,
            exhausted=exhausted,
            total=len(matched),
        ),
    )


def browse(
    docstore: DocStore, options: MatchOptions, langs: set[str] | None, channels: Sequence[str]
) -> tuple[list[str], Matches]:
    """No query text: the documents the filter (and ``langs``) keep, in the sort order (default: id)."""
    if langs is not None:
        by_lang = Terms(LANG_FIELD, tuple(sorted(langs)))
        options = replace(
            options, filter=by_lang if options.filter is None else And((options.filter, by_lang))
        )
    matched = sorted(docstore.matching(options.filter))
    sort = [(name, direction) for name, direction in options.sort if name != SCORE] or [(ID, "asc")]
    ordered = sort_by_fields(docstore, matched, sort)
    return ordered, count_matches(docstore, matched, options, channels=channels, exhausted=True, browse=True)


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


def sort_by_fields(docstore: DocStore, docids: Sequence[str], sort: SortSpec) -> list[str]:
    """:func:`sort_docids` with the values from ``docstore``."""
    return sort_docids(docids, sort, lambda name: docstore.field_values(docids, name))


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
    "MatchOptions",
    "Matches",
    "browse",
    "check_facets",
    "check_histograms",
    "check_sort",
    "count_matches",
    "index_fields",
    "matched_over",
    "parse_histogram_specs",
    "parse_sort",
    "resolve_filter",
    "sort_by_fields",
    "sort_docids",
]
