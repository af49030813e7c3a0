"""Filters on document fields: the value types, the two ways to write them, and their check against an index.

A filter is a tree of frozen dataclasses (:data:`Filter`): :class:`Term`, :class:`Terms`, :class:`Range`,
:class:`Exists` on one field, combined with :class:`And`, :class:`Or`, :class:`Not`. It is written

* as the Elasticsearch query-DSL subset (:func:`parse_filter`, the HTTP POST body): ``term``, ``terms``,
  ``range``, ``exists``, ``bool`` and ``match_all``;
* compactly (:func:`parse_compact`, the CLI's ``--filter`` and HTTP GET's ``filter=``), one condition a
  string, ANDed: ``year>=2000``, ``venue=ACL``, ``venue=ACL,EMNLP``, ``venue!=ACL``, ``has:doi``.

Semantics (Elasticsearch's): a condition on a multi-valued field matches when one of the document's values
satisfies it (a range: one value within all its bounds); ``exists`` means at least one non-null value;
``Not`` is the complement over the whole index. Values are checked and converted to the field's type when
the filter is checked against an index (:func:`check_filter`, :func:`coerce`): the compact form gives
strings, so ``year>=2000`` compares numbers and ``doi=10.1000/x`` compares text. ``lang`` is always a
keyword field (the document language, normalized like the corpus's; ``und`` = unknown).

The docstore (:class:`xlir.indexing.docstore.DocStore`) compiles a filter to SQL over its table of typed
field values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from xlir.errors import UserError
from xlir.indexing.fields import LANG_FIELD, convert, is_numeric, parse_date

__all__ = [
    "And",
    "Exists",
    "Filter",
    "FilterError",
    "Not",
    "Or",
    "Range",
    "Term",
    "Terms",
    "check_filter",
    "coerce",
    "fields_of",
    "parse_compact",
    "parse_filter",
]


class FilterError(UserError, ValueError):
    """A filter that cannot be used: names the clause or field and what is supported."""


@dataclass(frozen=True)
class Term:
    """The field has this value (one of its values, for a multi-valued field)."""

    field: str
    value: Any


@dataclass(frozen=True)
class Terms:
    """The field has one of these values."""

    field: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Range:
    """One value of the (numeric or date) field lies within every bound given."""

    field: str
    gte: Any = None
    gt: Any = None
    lte: Any = None
    lt: Any = None


@dataclass(frozen=True)
class Exists:
    """The field has at least one (non-null) value."""

    field: str


@dataclass(frozen=True)
class And:
    """Every item matches (no items: everything matches)."""

    items: tuple[Filter, ...] = field(default=())


@dataclass(frozen=True)
class Or:
    """At least one item matches (no items: nothing matches)."""

    items: tuple[Filter, ...] = field(default=())


@dataclass(frozen=True)
class Not:
    """The item does not match."""

    item: Filter


Filter = Term | Terms | Range | Exists | And | Or | Not

_CLAUSES = ("term", "terms", "range", "exists", "bool", "match_all", "match_none")
_BOOL_KEYS = ("filter", "must", "should", "must_not", "minimum_should_match", "boost")
_RANGE_KEYS = ("gte", "gt", "lte", "lt")


# -- the query DSL -----------------------------------------------------------------------------------------


def parse_filter(obj: Mapping[str, Any] | None) -> Filter | None:
    """The Elasticsearch query-DSL subset -> a :data:`Filter`; None for ``match_all`` (or ``{}``).

    ``bool``: ``filter`` and ``must`` are ANDed, ``must_not`` excluded; ``should`` is ORed and required
    (at least one must match) only when there is no ``filter`` / ``must`` (or ``minimum_should_match``
    is 1). Otherwise ``should`` only raises scores in Elasticsearch, and a filter has no score, so it is
    ignored. Any other clause (``match``, ``wildcard``, ``knn``, ...) raises :class:`FilterError` naming it.
    """
    if obj is None:
        return None
    if not isinstance(obj, Mapping):
        raise FilterError(f'a filter is a JSON object like {{"term": {{"venue": "ACL"}}}}, not {obj!r}')
    if not obj:
        return None
    if len(obj) != 1:
        raise FilterError(
            f"a filter clause has exactly one key (the clause name), found {sorted(obj)}; "
            "combine clauses with bool"
        )
    ((name, body),) = obj.items()
    if name == "match_all":
        return None
    if name == "match_none":
        return Or(())
    if name == "bool":
        return _parse_bool(body)
    if name == "exists":
        if (
            not isinstance(body, Mapping)
            or set(body) - {"field", "boost"}
            or not isinstance(body.get("field"), str)
        ):
            raise FilterError('exists takes {"field": "<name>"}')
        return Exists(body["field"])
    if name in ("term", "terms", "range"):
        if not isinstance(body, Mapping):
            raise FilterError(f'{name} takes an object {{"<field>": ...}}, not {body!r}')
        fields = [k for k in body if k != "boost"]
        if len(fields) != 1:
            raise FilterError(f"{name} takes exactly one field, found {fields}")
        name_of_field = fields[0]
        value = body[name_of_field]
        if name == "term":
            if isinstance(value, Mapping):
                extra = set(value) - {"value", "boost"}
                if extra or "value" not in value:
                    raise FilterError(
                        f'term on {name_of_field!r}: give {{"value": ...}} (unsupported: {sorted(extra)})'
                    )
                value = value["value"]
            _scalar(value, f"term on {name_of_field!r}")
            return Term(name_of_field, value)
        if name == "terms":
            if not isinstance(value, list) or not value:
                raise FilterError(
                    f"terms on {name_of_field!r} takes a non-empty list of values (terms lookup is not supported)"
                )
            for item in value:
                _scalar(item, f"terms on {name_of_field!r}")
            return Terms(name_of_field, tuple(value))
        if not isinstance(value, Mapping):
            raise FilterError(f"range on {name_of_field!r} takes an object with gte, gt, lte or lt")
        extra = set(value) - set(_RANGE_KEYS) - {"boost"}
        if extra:
            raise FilterError(
                f"range on {name_of_field!r}: {sorted(extra)} not supported by xlir; use gte, gt, lte, lt"
            )
        bounds = {k: value[k] for k in _RANGE_KEYS if value.get(k) is not None}
        if not bounds:
            raise FilterError(f"range on {name_of_field!r} needs at least one of gte, gt, lte, lt")
        for key, bound in bounds.items():
            _scalar(bound, f"range on {name_of_field!r} ({key})")
        return Range(name_of_field, **bounds)
    raise FilterError(
        f"{name} is not supported by xlir as a filter; supported clauses: {', '.join(_CLAUSES)}"
    )


def _scalar(value: Any, where: str) -> None:
    if value is None or isinstance(value, (list, dict, Mapping)):
        raise FilterError(f"{where}: a value is a string, number or boolean, not {value!r}")


def _clauses(body: Mapping[str, Any], key: str) -> list[Filter | None]:
    value = body.get(key)
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [parse_filter(item) for item in items]


def _parse_bool(body: Any) -> Filter | None:
    if not isinstance(body, Mapping):
        raise FilterError("bool takes an object with filter, must, should, must_not")
    extra = set(body) - set(_BOOL_KEYS)
    if extra:
        raise FilterError(
            f"bool: {sorted(extra)} not supported by xlir; bool takes {', '.join(_BOOL_KEYS[:4])}"
        )
    required = [f for f in _clauses(body, "filter") + _clauses(body, "must") if f is not None]
    has_required = bool(body.get("filter") or body.get("must"))
    should = _clauses(body, "should")
    excluded = _clauses(body, "must_not")
    minimum = body.get("minimum_should_match")
    if minimum is not None and minimum not in (0, 1, "0", "1", "100%", "0%"):
        raise FilterError(f"bool: minimum_should_match {minimum!r} is not supported by xlir (only 0 or 1)")
    need_should = bool(should) and (
        str(minimum) in ("1", "100%") if minimum is not None else not has_required
    )
    items: list[Filter] = list(required)
    if need_should:
        if any(f is None for f in should):  # a match_all among them: always satisfied
            pass
        else:
            items.append(_or([f for f in should if f is not None]))
    for item in excluded:
        items.append(Or(()) if item is None else Not(item))
    return _and(items)


def _and(items: list[Filter]) -> Filter | None:
    if not items:
        return None
    return items[0] if len(items) == 1 else And(tuple(items))


def _or(items: list[Filter]) -> Filter:
    return items[0] if len(items) == 1 else Or(tuple(items))


# -- the compact form --------------------------------------------------------------------------------------

_COMPACT = re.compile(r"\s*([^=<>!\s][^=<>!]*?)\s*(>=|<=|!=|=|>|<)\s*(.*?)\s*")
_EXISTS = re.compile(r"\s*(!|-)?has:\s*(\S.*?)\s*")


def parse_compact(exprs: Sequence[str] | str) -> Filter | None:
    """Compact conditions (ANDed) -> a :data:`Filter`; None for none.

    ``year>=2000``, ``year<2010`` (range; also ``>``, ``<=``), ``venue=ACL`` (term), ``venue=ACL,EMNLP``
    (terms: one of them), ``venue!=ACL`` (and ``!=ACL,EMNLP``: none of them), ``has:doi`` (exists),
    ``!has:doi`` (does not exist), ``lang=de``. Values are text, converted to the field's type when checked
    (a value cannot contain a comma).
    """
    if isinstance(exprs, str):
        exprs = [exprs]
    items: list[Filter] = []
    for expr in exprs:
        if not isinstance(expr, str):
            raise FilterError(f"a compact filter is a string like 'year>=2000', not {expr!r}")
        if not expr.strip():
            continue
        exists = _EXISTS.fullmatch(expr)
        if exists:
            item: Filter = Exists(exists.group(2))
            items.append(Not(item) if exists.group(1) else item)
            continue
        match = _COMPACT.fullmatch(expr)
        if not match:
            raise FilterError(
                f"filter {expr!r}: write FIELD=VALUE, FIELD=V1,V2, FIELD!=VALUE, FIELD>=VALUE (also >, <, <=) "
                "or has:FIELD"
            )
        name, op, value = match.groups()
        if not value:
            raise FilterError(f"filter {expr!r}: no value after {op!r}")
        if op in ("=", "!="):
            values = [v.strip() for v in value.split(",")]
            if not all(values):
                raise FilterError(f"filter {expr!r}: an empty value in the list")
            item = Term(name, values[0]) if len(values) == 1 else Terms(name, tuple(values))
            items.append(Not(item) if op == "!=" else item)
        else:
            key = {">=": "gte", ">": "gt", "<=": "lte", "<": "lt"}[op]
            items.append(Range(name, **{key: value}))
    return _and(items)


# -- checking against an index -----------------------------------------------------------------------------


def fields_of(filter: Filter | None) -> set[str]:  # noqa: A002  (the contract's name)
    """Every field a filter names."""
    if filter is None:
        return set()
    if isinstance(filter, (And, Or)):
        return set().union(*(fields_of(item) for item in filter.items))
    if isinstance(filter, Not):
        return fields_of(filter.item)
    return {filter.field}


def check_filter(filter: Filter | None, fields: Mapping[str, str]) -> None:  # noqa: A002
    """Raise :class:`FilterError` unless every field is known (``lang`` or one of ``fields``), every range
    is on a numeric or date field and every value fits its field's type."""
    if filter is None:
        return
    if isinstance(filter, (And, Or)):
        for item in filter.items:
            check_filter(item, fields)
        return
    if isinstance(filter, Not):
        check_filter(filter.item, fields)
        return
    if not isinstance(filter, (Term, Terms, Range, Exists)):
        raise FilterError(f"not a filter: {filter!r}")
    field_type = _field_type(filter.field, fields)
    if isinstance(filter, Term):
        coerce(filter.field, field_type, filter.value)
    elif isinstance(filter, Terms):
        if not filter.values:
            raise FilterError(f"terms on {filter.field!r} needs at least one value")
        for value in filter.values:
            coerce(filter.field, field_type, value)
    elif isinstance(filter, Range):
        if not is_numeric(field_type):
            raise FilterError(
                f"range on {filter.field!r}: it is a {field_type} field; ranges work on integer, float "
                "and date fields (use term / terms for keywords)"
            )
        bounds = [getattr(filter, k) for k in _RANGE_KEYS if getattr(filter, k) is not None]
        if not bounds:
            raise FilterError(f"range on {filter.field!r} needs at least one of gte, gt, lte, lt")
        for bound in bounds:
            coerce(filter.field, field_type, bound)


def _field_type(name: str, fields: Mapping[str, str]) -> str:
    if name == LANG_FIELD:
        return "keyword"
    if name in fields:
        return fields[name]
    if not fields:
        raise FilterError(
            f"unknown field {name!r} in the filter: this index has no metadata fields (it was built before "
            "xlir kept typed fields, or its corpus has no metadata); only 'lang' can be filtered: rebuild "
            "the index to filter on metadata"
        )
    known = ", ".join(f"{n} ({t})" for n, t in sorted({LANG_FIELD: "keyword", **fields}.items()))
    raise FilterError(f"unknown field {name!r} in the filter; the index's fields: {known}")


def coerce(name: str, field_type: str, value: Any) -> tuple[str | None, float | None]:
    """A filter value -> ``(keyword text, number)`` as the docstore stores the field's values.

    Strings are converted for numeric fields (the compact form gives text); numbers for keyword fields
    become their text. ``lang`` values are normalized language codes. Raises :class:`FilterError`.
    """
    if value is None or isinstance(value, (list, dict)):
        raise FilterError(f"filter on {name!r}: a value is a string, number or boolean, not {value!r}")
    if name == LANG_FIELD:
        text = str(value).strip()
        if text.lower() == "und":
            return "und", None
        from xlir.models.languages import normalize_language

        try:
            return normalize_language(text), None
        except ValueError as exc:
            raise FilterError(f"filter on 'lang': {exc}") from None
    if field_type in ("integer", "float") and isinstance(value, str):
        try:
            value = float(value.strip()) if not re.fullmatch(r"\s*[+-]?\d+\s*", value) else int(value)
        except ValueError:
            raise FilterError(
                f"filter on {name!r}: {value!r} is not a number ({name} is a {field_type} field)"
            ) from None
    if field_type == "date" and parse_date(value) is None:
        raise FilterError(
            f"filter on {name!r}: {value!r} is not an ISO 8601 date like 2021-03-04 ({name} is a date field)"
        )
    try:  # an integer field compared with 2000.5 matches no whole number: an honest empty result
        return convert(value, "float" if field_type == "integer" else field_type)
    except ValueError as exc:
        raise FilterError(
            f"filter on {name!r}: {value!r} does not fit a {field_type} field ({exc})"
        ) from None
