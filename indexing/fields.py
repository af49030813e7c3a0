"""Typed metadata fields: declared at build time (``--field year:integer``) or inferred from the corpus.

A document's metadata is every corpus field besides id, text, title and lang. A *field* is a metadata key
with a type, one of :data:`FIELD_TYPES`:

* ``keyword``: exact strings (a list of strings is a multi-valued keyword field; numbers and booleans
  given to a declared keyword field are kept as their JSON text, ``true`` / ``123``);
* ``integer`` / ``float``: JSON numbers (an integer field takes integral floats such as ``2000.0``);
* ``date``: an ISO 8601 date or datetime string (``2021-03-04``, ``2021-03-04T10:00:00Z``), kept as the
  string and as days since 1970-01-01 (a float; a datetime without a zone is taken as UTC).

``lang`` (the document language) is always a keyword field and is never declared. A list of numbers or
dates gives a multi-valued field of that type. ``null`` and ``[]`` mean "no value" (the document does not
match ``exists``).

:func:`field_rows` turns one document's metadata into the typed values the docstore keeps, and raises
:class:`FieldValueError` (a :class:`~xlir.indexing.documents.CorpusError` and a :class:`FieldsError`) for a
value that does not fit its field's type. :class:`FieldInference` watches the metadata of a build and says
which undeclared keys make fields of which type (:func:`infer_fields` does it over any rows).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from xlir.errors import UserError
from xlir.indexing.documents import CorpusError

log = logging.getLogger(__name__)

FIELD_TYPES = ("keyword", "integer", "float", "date")

#: The field every index has: the document language (the docstore's ``lang`` column).
LANG_FIELD = "lang"

#: Names that are not metadata (a document's own parts), so cannot be declared.
RESERVED = frozenset({"id", "_id", "docid", "text", "contents", "title", LANG_FIELD})

_NUMERIC = frozenset({"integer", "float", "date"})

#: ISO 8601 calendar date, optionally with a time of day and a zone: what ``date`` fields accept.
_DATE = re.compile(
    r"\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)
_EPOCH = date(1970, 1, 1)


class FieldsError(UserError, ValueError):
    """A field declaration or use that cannot work: an unknown type or field, a value of the wrong type."""


class FieldValueError(CorpusError, FieldsError):
    """A document's value does not fit its field's type (names the place, the document, field and value)."""


def is_numeric(field_type: str) -> bool:
    """Whether values of this type are ordered numbers (range filters, histograms): integer, float, date."""
    return field_type in _NUMERIC


def parse_field_specs(specs: Sequence[str]) -> dict[str, str]:
    """``["year:integer", "venue:keyword"]`` (the CLI's repeated ``--field``) -> ``{"year": "integer", ...}``."""
    fields: dict[str, str] = {}
    for spec in specs:
        name, sep, kind = str(spec).rpartition(":")
        name, kind = name.strip(), kind.strip().lower()
        if not sep or not name:
            raise FieldsError(
                f"--field {spec!r}: write NAME:TYPE, e.g. --field year:integer (types: {', '.join(FIELD_TYPES)})"
            )
        if name in fields and fields[name] != kind:
            raise FieldsError(f"--field {spec!r}: field {name!r} is already declared as {fields[name]}")
        fields[name] = kind
    return check_fields(fields)


def check_fields(fields: Mapping[str, str]) -> dict[str, str]:
    """The declared fields, checked: known types, names that are metadata keys (not id/text/title/lang)."""
    checked: dict[str, str] = {}
    for name, kind in fields.items():
        if not isinstance(name, str) or not name.strip():
            raise FieldsError(f"invalid field name {name!r}: give a metadata key")
        if name in RESERVED:
            hint = (
                "lang is always a keyword field (the document language)"
                if name == LANG_FIELD
                else "it is part of the document, not metadata"
            )
            raise FieldsError(f"field {name!r} cannot be declared: {hint}")
        if kind not in FIELD_TYPES:
            raise FieldsError(
                f"field {name!r}: unknown type {kind!r}; the types are {', '.join(FIELD_TYPES)}"
            )
        checked[name] = kind
    return checked


# -- dates -------------------------------------------------------------------------------------------------


def parse_date(value: Any) -> float | None:
    """Days since 1970-01-01 of an ISO 8601 date or datetime string; None if ``value`` is not one."""
    if type(value) is not str or not _DATE.fullmatch(value):
        return None
    text = value.replace(",", ".")
    try:
        if len(text) == 10:
            return float((date.fromisoformat(text) - _EPOCH).days)
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() / 86400.0


def date_key(days: float) -> str:
    """The ISO text of a day count (a histogram bucket key): a date, or a UTC datetime when not whole days."""
    if float(days).is_integer():
        return date.fromordinal(_EPOCH.toordinal() + int(days)).isoformat()
    return datetime.fromtimestamp(days * 86400.0, tz=UTC).isoformat()


# -- values ------------------------------------------------------------------------------------------------


def convert(value: Any, field_type: str) -> tuple[str | None, float | None]:
    """One scalar value of a field -> ``(keyword text, number)`` as stored; ValueError if it does not fit."""
    kind = type(value)
    if field_type == "keyword":
        if kind is str:
            return value, None
        if kind is bool:
            return ("true" if value else "false"), None
        if kind is int or (kind is float and math.isfinite(value)):
            return _json_number(value), None
        raise ValueError("a keyword field takes strings")
    if field_type == "integer":
        if kind is int:
            return None, float(value)
        if kind is float and value.is_integer():
            return None, value
        raise ValueError("an integer field takes whole numbers")
    if field_type == "float":
        if (kind is int or kind is float) and math.isfinite(value):
            return None, float(value)
        raise ValueError("a float field takes finite numbers")
    if field_type == "date":
        days = parse_date(value)
        if days is None:
            raise ValueError("a date field takes ISO 8601 dates like 2021-03-04 or 2021-03-04T10:00:00Z")
        return value, days
    raise FieldsError(f"unknown field type {field_type!r}; the types are {', '.join(FIELD_TYPES)}")


def _json_number(value: int | float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def field_rows(
    metadata: Mapping[str, Any], fields: Mapping[str, str], *, docid: str = "", where: str = ""
) -> Iterator[tuple[str, int, str | None, float | None]]:
    """The typed values of one document: ``(field, position, keyword text, number)`` for each value.

    A list gives one value per element (``position`` counts them); ``None`` and ``[]`` give none. A value
    that does not fit raises :class:`FieldValueError` naming ``where`` (file:line), the document and field.
    """
    for name, field_type in fields.items():
        if name not in metadata:
            continue
        value = metadata[name]
        if value is None:
            continue
        values = value if type(value) is list else (value,)
        position = 0
        for item in values:
            if item is None:
                continue
            try:
                if type(item) in (list, dict):
                    raise ValueError("nested lists and objects cannot be field values")
                kw, num = convert(item, field_type)
            except ValueError as exc:
                subject = f"document {docid!r}: " if docid else ""
                raise FieldValueError(
                    where or (f"document {docid!r}" if docid else "document"),
                    f"{subject}field {name!r} ({field_type}) has the value {_short(item)}, which does not fit: {exc}",
                    "Fix the value, declare the field with another type (--field NAME:TYPE), or pass "
                    "--on-error skip to skip such documents",
                    "bad_field_value",
                ) from None
            yield name, position, kw, num
            position += 1


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- inference ---------------------------------------------------------------------------------------------

_INT, _FLOAT, _DATEK, _STR, _BOOL, _BAD = "int", "float", "date", "str", "bool", "bad"


def _kind(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return _DATEK if parse_date(value) is not None else _STR
    if kind is bool:
        return _BOOL
    if kind is int:
        return _INT
    if kind is float:
        return _FLOAT if math.isfinite(value) else _BAD
    return _BAD


def _type_of(kinds: set[str]) -> str | None:
    """The field type of a key whose values were of these kinds; None if they do not make one field."""
    if not kinds or _BAD in kinds:
        return None
    if kinds <= {_INT}:
        return "integer"
    if kinds <= {_INT, _FLOAT}:
        return "float"
    if kinds <= {_DATEK}:
        return "date"
    if kinds <= {_STR, _DATEK, _BOOL}:
        return "keyword"
    return None


class FieldInference:
    """Watches documents' metadata (:meth:`observe`) and infers a type for each undeclared key (:meth:`fields`).

    int -> integer; int and float -> float; ISO date strings -> date; other strings, booleans, or lists of
    them -> keyword (dates mixed with other strings -> keyword); a key with incompatible types (numbers
    and strings) or nested objects is left out and logged. Keys in ``declared`` (and id/text/title/lang) are not inferred.
    """

    def __init__(self, declared: Iterable[str] = ()) -> None:
        self._skip = set(declared) | RESERVED
        self._kinds: dict[str, set[str]] = {}

    def observe(self, metadata: Mapping[str, Any]) -> None:
        for key, value in metadata.items():
            if key in self._skip:
                continue
            kinds = self._kinds.get(key)
            if kinds is None:
                kinds = self._kinds[key] = set()
            if value is None:
                continue
            if type(value) is list:
                for item in value:
                    if item is None:
                        continue
                    kinds.add(_BAD if type(item) in (list, dict) else _kind(item))
            else:
                kinds.add(_kind(value))

    def fields(self) -> dict[str, str]:
        """The inferred fields, by name; keys left out are logged with the kinds of values they held."""
        inferred: dict[str, str] = {}
        for key in sorted(self._kinds):
            kinds = self._kinds[key]
            field_type = _type_of(kinds)
            if field_type is not None:
                inferred[key] = field_type
            elif kinds:
                log.warning(
                    "metadata key %r is not a field (its values are %s; declare it with --field %s:TYPE "
                    "to filter on it)",
                    key,
                    ", ".join(
                        sorted(kinds - {_BAD}) + (["nested or non-finite values"] if _BAD in kinds else [])
                    ),
                    key,
                )
        return inferred


def infer_fields(metadata_rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The fields the metadata of these documents make (see :class:`FieldInference`)."""
    inference = FieldInference()
    for row in metadata_rows:
        inference.observe(row)
    return inference.fields()
