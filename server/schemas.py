"""The wire forms of the search service (pydantic): requests, responses, errors; the OpenAPI schema at /docs.

Each wire form that carries a Python object of the layers below is made from it (or into it) by one
method here: :meth:`SearchHitOut.from_hit`, :meth:`DocumentIn.to_document`, :meth:`DocumentOut.from_document`,
:meth:`UpdateResponse.from_report`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from xlir.indexing.documents import Document
from xlir.indexing.filters import Filter, parse_compact
from xlir.retrieval.matching import MATCH_DEPTH, MAX_MATCH_DEPTH, parse_sort
from xlir.retrieval.query import MAX_QUERY_CHARS
from xlir.retrieval.searcher import SearchHit
from xlir.server.snippets import QueryTerms, snippet

if TYPE_CHECKING:
    from xlir.indexing.updater import UpdateReport

MAX_K = 100
MAX_OFFSET = 1000
MAX_RERANK_K = 1000
MAX_RERANK_BUDGET_MS = 20_000  # one client may not hold a search slot longer than this
#: Most documents one POST /documents may carry.
MAX_BATCH = 1000
MAX_ID_CHARS = 512
MAX_TEXT_CHARS = 1_000_000

FusionName = Literal["rrf", "minmax", "zscore"]


class SearchRequest(BaseModel):
    """A search: the query and how to run it. ``GET /search`` takes the same fields as query parameters."""

    model_config = ConfigDict(extra="forbid")

    q: str | None = Field(
        None,
        max_length=MAX_QUERY_CHARS,
        description=f"What to search for, in any language (at most {MAX_QUERY_CHARS} characters). "
        "Leave it out (or empty) with a `filter` to browse the documents the filter keeps.",
        examples=["Who won Super Bowl 50?"],
    )
    k: int = Field(10, ge=1, le=MAX_K, description="Hits per page.")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="Hits to skip (pagination): page 2 is offset=k.")
    from_: int | None = Field(
        None, alias="from", ge=0, le=MAX_OFFSET, description="Elasticsearch's name for `offset`."
    )
    size: int | None = Field(None, ge=1, le=MAX_K, description="Elasticsearch's name for `k`.")
    filter: dict[str, Any] | list[str] | None = Field(
        None,
        description="Keep documents by their fields: an Elasticsearch query-DSL object (term, terms, range, "
        "exists, bool, match_all), or a list of compact conditions ANDed (`year>=2000`, `venue=ACL,EMNLP`, "
        "`venue!=ACL`, `has:doi`, `lang=de`). Every channel applies it during retrieval.",
        examples=[{"bool": {"filter": [{"range": {"year": {"gte": 2000}}}, {"term": {"venue": "ACL"}}]}}],
    )
    sort: list[str] | None = Field(
        None,
        description="Sort keys `field:asc|desc`, `_score` (relevance, the default) or `_id`; a field sort "
        "reorders the matched candidates.",
        examples=[["year:desc", "_score"]],
    )
    facets: list[str] | None = Field(
        None, description="Fields (`lang` included) whose most frequent values among the matches are counted."
    )
    facet_size: int = Field(10, ge=1, le=1000, description="Values per facet (the most frequent first).")
    histogram: dict[str, float] | None = Field(
        None,
        description="field -> bucket interval over the matches (days for a date field).",
        examples=[{"year": 10}],
    )
    match_depth: int = Field(
        MATCH_DEPTH,
        ge=1,
        le=MAX_MATCH_DEPTH,
        description="How deep the fused candidates go that facets and `total` count (see `matched_over`).",
    )
    langs: list[str] | None = Field(
        None,
        description="Only documents in these languages; any code form (de, deu, de-DE) is accepted.",
        examples=[["de", "zh"]],
    )
    channels: list[str] | None = Field(
        None, description="Channels to search (a subset of those the index has; default: all)."
    )
    fusion: FusionName = Field(
        "rrf",
        description="How several channels are combined: reciprocal rank fusion, or a weighted sum of "
        "min-max / z-score normalized scores.",
    )
    rrf_k: int = Field(60, ge=1, le=100_000, description="The RRF constant (fusion=rrf).")
    weights: dict[str, float] | None = Field(
        None, description="Per-channel weights (fusion=minmax or zscore); missing channels weigh 1."
    )
    rerank: bool = Field(
        False,
        description="Rerank the fused top `rerank_k` with the server's neural reranker (a cross-encoder; "
        "about a second per 100 hits on a CPU). Past the time budget, the rest keep the first-stage order "
        "and `notices` says so.",
    )
    rerank_k: int = Field(
        100, ge=1, le=MAX_RERANK_K, description="How many first-stage hits the reranker rescores."
    )
    rerank_budget_ms: int | None = Field(
        None,
        ge=0,
        le=MAX_RERANK_BUDGET_MS,
        description="Time budget for reranking this query, in milliseconds (default: the server's).",
    )
    explain: bool = Field(False, description="Give each hit the rank and score each channel gave it.")

    @model_validator(mode="after")
    def _resolve_aliases(self) -> SearchRequest:
        """``from`` / ``size`` set ``offset`` / ``k``; both given and different is an error (a 422)."""
        for alias, wire, name in (("from_", "from", "offset"), ("size", "size", "k")):
            value = getattr(self, alias)
            if value is None:
                continue
            if name in self.model_fields_set and getattr(self, name) != value:
                raise ValueError(
                    f"`{wire}` ({value}) and `{name}` ({getattr(self, name)}) are the same setting and differ; "
                    "give only one of them"
                )
            setattr(self, name, value)
        if not self.q and not self.filter:  # blank text is the searcher's to refuse (a 400)
            if self.q is None:
                raise ValueError("q: Field required: give q, or a filter to browse without a query")
            raise ValueError("q: String should have at least 1 character (or give a filter to browse)")
        return self

    def search_options(self) -> dict[str, Any]:
        """The keyword arguments of :meth:`xlir.retrieval.searcher.Searcher.search` beyond the query's own."""
        return {
            "filter": self.parsed_filter(),
            "sort": parse_sort(self.sort) or None,
            "facets": tuple(self.facets or ()),
            "histograms": self.histogram,
            "facet_size": self.facet_size,
            "match_depth": self.match_depth,
        }

    def parsed_filter(self) -> Filter | dict[str, Any] | None:
        """The filter: the query-DSL object as given (the searcher parses it), compact conditions parsed."""
        if isinstance(self.filter, list):
            return parse_compact(self.filter)
        return self.filter


class ChannelEvidence(BaseModel):
    """What one channel said about a hit."""

    rank: int
    score: float


class SearchHitOut(BaseModel):
    """One hit as the HTTP API sends it: the document, its score and a highlighted snippet (HTML).

    This is the wire form of :class:`xlir.retrieval.searcher.SearchHit`, made only by :meth:`from_hit`.
    Its field names differ from the Python hit's on purpose: ``id`` and ``language`` are what API clients
    have always read (the Python hit says ``docid`` and ``lang``), and the wire form carries a snippet
    and optional per-channel ``explain`` instead of the whole text and the raw channel scores.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "description": "One hit: the document, its score and a highlighted snippet "
            "(HTML: escaped text and <mark>)."
        }
    )

    rank: int = Field(description="1-based position in the whole result list (offset included).")
    id: str
    score: float
    language: str | None
    title: str | None
    snippet: str = Field(description="HTML-escaped text around the matches, matched terms in <mark>.")
    metadata: dict[str, Any]
    explain: dict[str, ChannelEvidence] | None = Field(
        None, description="channel -> its rank and raw score for this document (with explain=true)."
    )

    @classmethod
    def from_hit(cls, hit: SearchHit, terms: QueryTerms, explain: bool) -> SearchHitOut:
        """The wire form of ``hit``: its text cut to a snippet highlighting ``terms``; evidence if ``explain``."""
        return cls(
            rank=hit.rank,
            id=hit.docid,
            score=hit.score,
            language=hit.lang,
            title=hit.title,
            snippet=snippet(hit.text, terms),
            metadata=hit.metadata,
            explain=(
                {name: ChannelEvidence(rank=s.rank, score=s.score) for name, s in hit.sources.items()}
                if explain
                else None
            ),
        )


class TotalOut(BaseModel):
    """The number of matches: exact (``eq``) or a lower bound (``gte``), as Elasticsearch reports it."""

    value: int
    relation: Literal["eq", "gte"]


class FacetBucket(BaseModel):
    value: str | int | float | bool
    count: int


class HistogramBucket(BaseModel):
    key: str | float = Field(description="The bucket's lower bound (an ISO date for a date field).")
    count: int


class SearchResponse(BaseModel):
    """Hits for one query, and how they were found."""

    query: str = Field(description="The query as sent; empty for a browse (a filter without query text).")
    query_lang: str | None = Field(description="The detected language of the query (None when unsure).")
    channels: list[str]
    fusion: str | None = Field(description="The fusion used; None when one channel was searched.")
    k: int
    offset: int
    langs: list[str] | None = Field(description="The language filter, normalized.")
    hits: list[SearchHitOut]
    has_more: bool = Field(description="Whether a next page (offset + k) has hits.")
    reranked: bool = Field(
        False, description="Whether the whole top rerank_k was reranked (a budget cut is told in notices)."
    )
    notices: list[str] = Field(default_factory=list)
    took_ms: float
    total: TotalOut = Field(description="How many documents matched (see `matched_over`).")
    facets: dict[str, list[FacetBucket]] = Field(
        default_factory=dict, description="field -> its most frequent values among the matches."
    )
    histograms: dict[str, list[HistogramBucket]] = Field(
        default_factory=dict, description="field -> buckets over the matches (empty buckets left out)."
    )
    matched_over: str = Field(
        description="What the matches (total, facets, histograms) are, in one sentence."
    )


class DocumentIn(BaseModel):
    """A document to add or replace."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    lang: str | None = Field(None, description="Any language code form; detected from the text if absent.")
    title: str | None = Field(None, max_length=10_000)
    metadata: dict[str, Any] = Field(default_factory=dict)

    def to_document(self) -> Document:
        """The document to index (its origin recorded as the API)."""
        return Document(
            id=self.id,
            text=self.text,
            lang=self.lang,
            title=self.title,
            metadata=dict(self.metadata),
            origin="api",
        )


class DocumentBatch(BaseModel):
    """Documents to add, replacing stored documents with the same ids."""

    model_config = ConfigDict(extra="forbid")

    documents: list[DocumentIn] = Field(min_length=1, max_length=MAX_BATCH)


class DocumentOut(BaseModel):
    """A stored document."""

    id: str
    text: str
    lang: str | None
    title: str | None
    metadata: dict[str, Any]

    @classmethod
    def from_document(cls, doc: Document) -> DocumentOut:
        return cls(id=doc.id, text=doc.text, lang=doc.lang, title=doc.title, metadata=doc.metadata)


class UpdateResponse(BaseModel):
    """What an update did; it is visible to every search that starts after this response."""

    operation: str
    added: int
    replaced: int
    deleted: int
    missing: list[str]
    documents: int = Field(description="Documents in the index now.")
    languages: dict[str, int]
    took_ms: float

    @classmethod
    def from_report(cls, report: UpdateReport, seconds: float) -> UpdateResponse:
        """The wire form of an update's report; ``seconds`` is the request's time, lock waits included."""
        return cls(
            operation=report.operation,
            added=report.added,
            replaced=report.replaced,
            deleted=report.deleted,
            missing=report.missing,
            documents=report.documents,
            languages=report.languages,
            took_ms=round(seconds * 1000, 3),
        )


class ErrorResponse(BaseModel):
    """An error: what is wrong and what to do."""

    error: str
    details: list[dict[str, Any]] | None = None


#: The error answers every endpoint documents (OpenAPI ``responses``).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorResponse,
        "description": "The request cannot be run as given (the message says why).",
    },
    413: {"model": ErrorResponse, "description": "The request body is too large."},
    422: {"model": ErrorResponse, "description": "A parameter is missing, malformed or out of range."},
    503: {"model": ErrorResponse, "description": "The index is not open (see /readyz)."},
}
#: ... and those of the endpoints that change the index.
WRITE_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    401: {"model": ErrorResponse, "description": "No API key, or a wrong one."},
    403: {"model": ErrorResponse, "description": "Writes are disabled (no API key configured)."},
    409: {"model": ErrorResponse, "description": "The index has a channel that cannot be updated in place."},
}
#: The answer of an endpoint that names one document.
NO_DOCUMENT_RESPONSE: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such document."}
}


class HealthResponse(BaseModel):
    status: str


class ReadyResponse(BaseModel):
    status: str
    index: str
    channels: list[str]
    documents: int
    languages: dict[str, int]
    writes_enabled: bool
    updatable: bool
    fields: dict[str, str] = Field(default_factory=dict, description="Metadata fields and their types.")
    build_id: str = Field(description="The build served (a rebuild changes it).")
    generation: int = Field(
        description="The committed state of that build served: 1 when built, one more per update batch."
    )
    reload_error: str | None = Field(
        default=None,
        description='Why a newer committed state could not be opened (then status is "stale" and the '
        "state above is still served).",
    )
