"""A query as the searcher runs it: its text checked, and its language detected once.

:class:`Query` holds the text a user sent and the stripped text every channel searches. Its language
is detected at most once, on first use (:attr:`Query.detected`, fastText's code and confidence); each
consumer then applies its own confidence threshold to that one detection: the lexical scoping of a
fused search (:data:`LEXICAL_SCOPE_CONFIDENCE`), the translate channel (its own threshold), and the
language reported with the results and given to the reranker (:data:`REPORTED_LANGUAGE_CONFIDENCE`).
The checks of the other search options (languages, channels, fusion) are here too: each raises
:class:`QueryError`, a user error.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from xlir.errors import UserError
from xlir.indexing.channels.base import DetectedLanguage

#: Query-language confidence needed before a fused lexical channel is limited to that language.
LEXICAL_SCOPE_CONFIDENCE = 0.5
#: Query-language confidence needed before the language is reported (and given to the reranker).
REPORTED_LANGUAGE_CONFIDENCE = 0.3

#: Longest query accepted, in characters. Longer input is almost always a mistake (a pasted document).
MAX_QUERY_CHARS = 4096

FUSION_METHODS = ("rrf", "minmax", "zscore")


class QueryError(UserError, ValueError):
    """A query the engine cannot run as given (empty, too long, unknown language or channel)."""


@dataclass(frozen=True)
class Query:
    """One query: ``original`` as sent, ``text`` (stripped) as searched, its language detected lazily."""

    original: str

    @cached_property
    def text(self) -> str:
        return self.original.strip()

    @classmethod
    def checked(cls, query: str, k: int) -> Query:
        """``query`` as a :class:`Query` once it is known to be searchable with ``k`` hits."""
        if not isinstance(query, str) or not query.strip():
            raise QueryError("the query is empty: give some words to search for.")
        if len(query) > MAX_QUERY_CHARS:
            raise QueryError(
                f"the query is {len(query)} characters long; the limit is {MAX_QUERY_CHARS}. "
                "Shorten it to the words that matter."
            )
        if k < 1:
            raise QueryError(f"k must be at least 1 (got {k}).")
        return cls(query)

    @cached_property
    def detected(self) -> DetectedLanguage | None:
        """The detected language and its confidence (None when it cannot be detected); computed once."""
        from xlir.models.languages import detect_language

        try:
            return detect_language(self.text)
        except ValueError:
            return None

    def language(self, min_confidence: float) -> str | None:
        """The detected language when its confidence is at least ``min_confidence``, else None."""
        detected = self.detected
        return detected[0] if detected is not None and detected[1] >= min_confidence else None


def check_channels(channels: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """The channels to search: all ``available`` ones when none are named; unknown names are refused."""
    if not channels:
        return list(available)
    unknown = [c for c in channels if c not in available]
    if unknown:
        raise QueryError(f"unknown channel(s) {unknown}; this index has: {list(available)}")
    return list(channels)


def check_langs(langs: Collection[str] | None, available: Collection[str]) -> set[str] | None:
    """The document languages to search (normalized codes), None for all; languages absent are refused."""
    if not langs:
        return None
    from xlir.models.languages import normalize_language

    normalized = {normalize_language(lang) for lang in langs}
    absent = sorted(normalized - set(available))
    if absent:
        raise QueryError(
            f"the index has no documents in language(s) {absent}; it has: {', '.join(sorted(available))}"
        )
    return normalized


def check_fusion(
    fusion: str, rrf_k: int, weights: Mapping[str, float] | None, channels: Sequence[str]
) -> None:
    """Refuse an unknown fusion method, a bad ``rrf_k`` or weights that do not fit the searched channels."""
    if fusion not in FUSION_METHODS:
        raise QueryError(f"unknown fusion {fusion!r}; use one of {list(FUSION_METHODS)}")
    if fusion == "rrf":
        if isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 1:
            raise QueryError(f"rrf_k must be a positive integer (the usual value is 60), got {rrf_k!r}")
        if weights:
            raise QueryError("weights apply to fusion 'minmax' or 'zscore', not 'rrf'; drop them or switch")
    if weights:
        unknown = sorted(set(weights) - set(channels))
        if unknown:
            raise QueryError(
                f"weights name channel(s) {unknown} that are not searched; searched: {list(channels)}"
            )
        for name, weight in weights.items():
            if (
                isinstance(weight, bool)
                or not isinstance(weight, int | float)
                or not 0 <= weight < float("inf")
            ):
                raise QueryError(f"weight for {name!r} must be a finite number >= 0, got {weight!r}")
        if len(channels) > 1 and not any(weights.get(c, 1.0) for c in channels):
            raise QueryError(
                "all channel weights are 0: give at least one searched channel a positive weight"
            )
