"""Typed metadata fields and filters: declaration, inference, bad values, both filter forms, the docstore's
SQL for matching / facets / histograms / sort values (checked against brute force), updates, old indexes."""

from __future__ import annotations

import json
import logging
import math
import random
import sqlite3
from datetime import date
from operator import ge, gt, le, lt
from pathlib import Path
from typing import Any

import pytest
from conftest import SHARED_DATA, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from metadata_corpus import FIELDS, VENUES, write_metadata_corpus

from xlir.errors import UserError
from xlir.indexing.builder import build_index
from xlir.indexing.config import IndexConfig
from xlir.indexing.docstore import DocStore
from xlir.indexing.documents import CorpusError, Document
from xlir.indexing.fields import (
    FieldsError,
    FieldValueError,
    field_rows,
    infer_fields,
    parse_date,
    parse_field_specs,
)
from xlir.indexing.filters import (
    And,
    Exists,
    Filter,
    FilterError,
    Not,
    Or,
    Range,
    Term,
    Terms,
    check_filter,
    parse_compact,
    parse_filter,
)
from xlir.indexing.manifest import Manifest
from xlir.indexing.readers import ReadReport, open_corpus
from xlir.indexing.updater import IndexUpdater

BM25 = IndexConfig(channels=("bm25",))
TYPES = {"year": "integer", "field": "keyword", "venues": "keyword", "published": "date", "doi": "keyword"}


# -- declarations and inference ----------------------------------------------------------------------------


def test_field_specs_are_parsed_and_checked() -> None:
    assert parse_field_specs(["year:integer", "venue:keyword", "when: DATE", "score:float"]) == {
        "year": "integer",
        "venue": "keyword",
        "when": "date",
        "score": "float",
    }
    assert parse_field_specs(["a:b:keyword"]) == {"a:b": "keyword"}
    for bad, words in [
        (["year"], "NAME:TYPE"),
        (["year:int"], "unknown type 'int'"),
        (["lang:keyword"], "lang is always a keyword"),
        (["title:keyword"], "part of the document"),
        (["year:integer", "year:float"], "already declared"),
    ]:
        with pytest.raises(FieldsError, match=words):
            parse_field_specs(bad)
    assert issubclass(FieldsError, UserError)


def test_inference_types_each_key_and_leaves_out_the_incompatible(caplog: pytest.LogCaptureFixture) -> None:
    rows = [
        {"year": 2001, "score": 1, "when": "2020-01-02", "venue": "ACL", "tags": ["a", "b"], "mixed": 1},
        {"year": 2002, "score": 0.5, "when": "2021-03-04T10:00:00Z", "venue": "2020-01-01", "tags": []},
        {
            "open": True,
            "mixed": "one",
            "nested": {"a": 1},
            "deep": [["x"]],
            "none": None,
            "nan": float("nan"),
        },
        {"years": [1999, 2000], "dates": ["2001-01-01"], "flag": [True, "x"]},
    ]
    with caplog.at_level(logging.WARNING):
        fields = infer_fields(rows)
    assert fields == {
        "year": "integer",
        "score": "float",
        "when": "date",
        "venue": "keyword",  # a date among other strings: keyword
        "tags": "keyword",
        "open": "keyword",
        "years": "integer",
        "dates": "date",
        "flag": "keyword",
    }
    for left_out in ("mixed", "nested", "deep", "nan"):
        assert f"{left_out!r} is not a field" in caplog.text
    assert "'none'" not in caplog.text  # only nulls: nothing to say


def test_values_are_converted_or_refused() -> None:
    meta = {
        "year": 2001.0,
        "venues": ["ACL", None, "EMNLP"],
        "open": True,
        "when": "1970-01-03T12:00:00+00:00",
    }
    rows = list(field_rows(meta, {"year": "integer", "venues": "keyword", "open": "keyword", "when": "date"}))
    assert rows == [
        ("year", 0, None, 2001.0),
        ("venues", 0, "ACL", None),
        ("venues", 1, "EMNLP", None),
        ("open", 0, "true", None),
        ("when", 0, "1970-01-03T12:00:00+00:00", 2.5),
    ]
    assert (
        parse_date("1970-01-02") == 1.0
        and parse_date("20200101") is None
        and parse_date("2020-13-01") is None
    )
    for value, kind in [
        ("2001", "integer"),
        (2001.5, "integer"),
        (True, "integer"),
        ("x", "float"),
        (float("inf"), "float"),
        ("March 2001", "date"),
        ({"a": 1}, "keyword"),
        ([["a"]], "keyword"),
    ]:
        with pytest.raises(FieldValueError, match=f"field 'f' \\({kind}\\)") as info:
            list(field_rows({"f": value}, {"f": kind}, docid="d1", where="c.jsonl:7"))
        assert str(info.value).startswith("c.jsonl:7: document 'd1'")
        assert isinstance(info.value, CorpusError) and info.value.reason == "bad_field_value"


# -- the two filter forms ----------------------------------------------------------------------------------


def test_query_dsl_subset_is_parsed() -> None:
    assert parse_filter({"match_all": {}}) is None and parse_filter({}) is None
    assert parse_filter({"term": {"venues": "ACL"}}) == Term("venues", "ACL")
    assert parse_filter({"term": {"venues": {"value": "ACL", "boost": 2}}}) == Term("venues", "ACL")
    assert parse_filter({"terms": {"venues": ["ACL", "EMNLP"]}}) == Terms("venues", ("ACL", "EMNLP"))
    assert parse_filter({"range": {"year": {"gte": 2000, "lt": 2010}}}) == Range("year", gte=2000, lt=2010)
    assert parse_filter({"exists": {"field": "doi"}}) == Exists("doi")
    year, acl, doi = Range("year", gte=2000), Term("venues", "ACL"), Exists("doi")
    dsl = {"range": {"year": {"gte": 2000}}}
    both = {
        "bool": {
            "filter": [dsl],
            "must": {"term": {"venues": "ACL"}},
            "must_not": [{"exists": {"field": "doi"}}],
        }
    }
    assert parse_filter(both) == And((year, acl, Not(doi)))
    # should: required when alone (or minimum_should_match 1), ignored beside filter/must
    should = {"should": [dsl, {"term": {"venues": "ACL"}}]}
    assert parse_filter({"bool": should}) == Or((year, acl))
    assert parse_filter({"bool": {**should, "filter": {"exists": {"field": "doi"}}}}) == doi
    assert parse_filter(
        {"bool": {**should, "filter": {"exists": {"field": "doi"}}, "minimum_should_match": 1}}
    ) == And((doi, Or((year, acl))))
    assert parse_filter({"bool": {"must_not": {"match_all": {}}}}) == Or(())
    assert parse_filter({"match_none": {}}) == Or(())
    for bad, words in [
        ({"match": {"text": "x"}}, "match is not supported by xlir"),
        ({"knn": {}}, "knn is not supported"),
        ({"bool": {"filter": {"wildcard": {"doi": "10.*"}}}}, "wildcard is not supported"),
        ({"term": {"a": 1}, "range": {}}, "exactly one key"),
        ({"range": {"year": {"from": 1}}}, "'from'.*not supported"),
        ({"range": {"year": {}}}, "at least one of gte"),
        ({"terms": {"venues": []}}, "non-empty list"),
        ({"term": {"venues": ["ACL"]}}, "a value is a string"),
        ({"bool": {"filter": [], "boosting": 1}}, "boosting"),
        ({"bool": {"should": [], "minimum_should_match": 2}}, "minimum_should_match 2"),
        ({"exists": {"name": "doi"}}, "exists takes"),
    ]:
        with pytest.raises(FilterError, match=words):
            parse_filter(bad)


def test_compact_form_is_parsed() -> None:
    assert parse_compact([]) is None and parse_compact(["  "]) is None
    assert parse_compact(["year>=2000"]) == Range("year", gte="2000")
    assert parse_compact("year < 2010") == Range("year", lt="2010")
    assert parse_compact(["year>1999", "year<=2005"]) == And(
        (Range("year", gt="1999"), Range("year", lte="2005"))
    )
    assert parse_compact(["venues=ACL"]) == Term("venues", "ACL")
    assert parse_compact(["venues=ACL, EMNLP"]) == Terms("venues", ("ACL", "EMNLP"))
    assert parse_compact(["venues!=ACL"]) == Not(Term("venues", "ACL"))
    assert parse_compact(["has:doi", "!has:doi"]) == And((Exists("doi"), Not(Exists("doi"))))
    assert parse_compact(["lang=de"]) == Term("lang", "de")
    assert parse_compact(["doi=10.1000/x=y"]) == Term("doi", "10.1000/x=y")
    for bad in ["year", "=2000", "year>=", "venues=ACL,,EMNLP"]:
        with pytest.raises(FilterError):
            parse_compact([bad])


def test_filters_are_checked_against_the_fields() -> None:
    check_filter(
        parse_compact(["year>=2000", "published<2010-01-01", "lang=DE", "venues=ACL", "doi!=x"]), TYPES
    )
    check_filter(Term("year", 2000.5), TYPES)  # matches nothing, but is a number
    for bad, words in [
        (Term("venue", "ACL"), "unknown field 'venue'.*index's fields: doi \\(keyword\\)"),
        (Range("venues", gte="A"), "range on 'venues': it is a keyword field"),
        (Range("lang", gte="de"), "keyword field"),
        (Range("year", gte="two thousand"), "not a number"),
        (Range("published", lt="2010"), "not an ISO 8601 date"),
        (Term("lang", "xx-nonsense-1"), "lang"),
        (Not(Or((Exists("doi"), Exists("isbn")))), "unknown field 'isbn'"),
    ]:
        with pytest.raises(FilterError, match=words):
            check_filter(bad, TYPES)
    with pytest.raises(FilterError, match="rebuild the index to filter on metadata"):
        check_filter(Term("year", 2000), {})
    check_filter(Term("lang", "de"), {})


# -- the docstore's SQL against brute force ----------------------------------------------------------------


@pytest.fixture(scope="module")
def metadata_docs(tmp_path_factory: pytest.TempPathFactory) -> list[Document]:
    if not (SHARED_DATA / "xquad").is_dir():
        pytest.skip("the shared data sits beside the checkout")
    corpus = write_metadata_corpus(tmp_path_factory.mktemp("meta") / "corpus.jsonl", ("en", "de", "zh"), 120)
    docs = list(open_corpus(corpus))
    # a few documents without a language, without metadata, with nulls and datetimes
    docs[0] = Document(
        docs[0].id, docs[0].text, None, None, {**docs[0].metadata, "doi": None}, docs[0].origin
    )
    docs[1] = Document(docs[1].id, docs[1].text, "en", None, {}, docs[1].origin)
    meta = {**docs[2].metadata, "published": "2003-05-06T23:30:00-02:00", "venues": []}
    docs[2] = Document(docs[2].id, docs[2].text, "en", None, meta, docs[2].origin)
    return docs


@pytest.fixture(scope="module")
def store(metadata_docs: list[Document], tmp_path_factory: pytest.TempPathFactory) -> DocStore:
    store = DocStore(tmp_path_factory.mktemp("store") / "docs.sqlite", create=True)
    store.declare_fields({"year": "integer"})
    store.add_many(metadata_docs[:200])
    store.declare_fields({k: v for k, v in TYPES.items() if k != "year"})  # indexes the stored ones
    store.add_many(metadata_docs[200:])
    return store


def _values(doc: Document, name: str) -> list[Any]:
    """A document's values of a field as the brute force compares them (numbers for year and dates)."""
    if name == "lang":
        return [doc.lang or "und"]
    value = doc.metadata.get(name)
    values = [v for v in (value if isinstance(value, list) else [value]) if v is not None]
    if name == "published":
        return [parse_date(v) for v in values]
    return values


def _coerce(name: str, value: Any) -> Any:
    if name == "year":
        return float(value)
    if name == "published":
        return parse_date(value)
    return str(value)


def _brute(f: Filter, doc: Document) -> bool:
    if isinstance(f, And):
        return all(_brute(i, doc) for i in f.items)
    if isinstance(f, Or):
        return any(_brute(i, doc) for i in f.items)
    if isinstance(f, Not):
        return not _brute(f.item, doc)
    values = _values(doc, f.field)
    if isinstance(f, Exists):
        return bool(values) and (f.field != "lang" or doc.lang is not None)
    if isinstance(f, Term):
        return _coerce(f.field, f.value) in values
    if isinstance(f, Terms):
        return any(_coerce(f.field, v) in values for v in f.values)
    bounds = [(getattr(f, k), op) for k, op in (("gte", ge), ("gt", gt), ("lte", le), ("lt", lt))]
    return any(all(op(v, _coerce(f.field, b)) for b, op in bounds if b is not None) for v in values)


_years = st.integers(1988, 2026)
_dates = st.dates(date(1989, 1, 1), date(2026, 1, 1)).map(date.isoformat)
_leaves = st.one_of(
    st.builds(Term, st.just("year"), st.one_of(_years, _years.map(str))),
    st.builds(Term, st.just("field"), st.sampled_from(FIELDS)),
    st.builds(Terms, st.just("venues"), st.lists(st.sampled_from(VENUES), min_size=1, max_size=3).map(tuple)),
    st.builds(Term, st.just("lang"), st.sampled_from(["en", "de", "zh", "und", "fr"])),
    st.builds(Range, st.just("year"), gte=st.none() | _years, lt=st.none() | _years.map(str)),
    st.builds(Range, st.just("published"), gt=st.none() | _dates, lte=st.none() | _dates),
    st.builds(Exists, st.sampled_from(["doi", "venues", "lang", "year"])),
    st.builds(Term, st.just("published"), st.sampled_from(["2003-05-07T01:30:00Z", "1999-01-01"])),
).filter(
    lambda f: not isinstance(f, Range) or any(getattr(f, k) is not None for k in ("gte", "gt", "lte", "lt"))
)
_filters = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(inner, max_size=3).map(lambda xs: Or(tuple(xs))),
        inner.map(Not),
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(f=_filters)
def test_matching_equals_brute_force(f: Filter, store: DocStore, metadata_docs: list[Document]) -> None:
    expected = {d.id for d in metadata_docs if _brute(f, d)}
    assert store.matching(f) == expected
    assert store.count(f) == len(expected)


def test_matching_the_edge_documents(store: DocStore, metadata_docs: list[Document]) -> None:
    d0, d1, d2 = (d.id for d in metadata_docs[:3])
    assert d0 in store.matching(Term("lang", "und")) and d0 not in store.matching(Exists("lang"))
    assert d1 not in store.matching(Or((Exists("year"), Exists("doi"), Exists("venues"))))
    assert d2 not in store.matching(Exists("venues"))
    # 2003-05-06T23:30-02:00 is 2003-05-07 01:30 UTC
    assert store.matching(Range("published", gte="2003-05-07", lt="2003-05-08")) >= {d2}
    assert store.matching(None) == {d.id for d in metadata_docs}
    assert store.count(parse_filter({"match_none": {}})) == 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32), size=st.integers(1, 12), interval=st.sampled_from([1, 3, 7.5, 10, 0.4]))
def test_facets_and_histograms_equal_brute_force(
    store: DocStore, metadata_docs: list[Document], seed: int, size: int, interval: float
) -> None:
    rng = random.Random(seed)
    subset = rng.sample(metadata_docs, rng.randint(0, len(metadata_docs)))
    ids = [d.id for d in subset]
    for name in ("lang", "field", "venues", "doi", "year"):
        counts: dict[Any, int] = {}
        for doc in subset:
            for value in set(_values(doc, name)):
                counts[value] = counts.get(value, 0) + 1
        expected = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size]
        assert store.facet_counts(ids, name, size) == expected, name
    buckets: dict[float, int] = {}
    for doc in subset:
        for key in {math.floor(v / interval) * interval for v in _values(doc, "year")}:
            buckets[key] = buckets.get(key, 0) + 1
    assert store.histogram(ids, "year", interval) == sorted(buckets.items())
    days: dict[int, int] = {}
    for doc in subset:
        for key in {math.floor(v / 30) * 30 for v in _values(doc, "published")}:
            days[key] = days.get(key, 0) + 1
    expected_dates = [
        (date.fromordinal(date(1970, 1, 1).toordinal() + k).isoformat(), c) for k, c in sorted(days.items())
    ]
    assert store.histogram(ids, "published", 30) == expected_dates
    years: dict[str, int] = {}
    for doc in subset:
        for value in {v[:4] for v in (doc.metadata.get("published"),) if v}:
            years[f"{value}-01-01"] = years.get(f"{value}-01-01", 0) + 1
    assert store.histogram(ids, "published", "year") == sorted(years.items())


def test_field_values_and_query_errors(store: DocStore, metadata_docs: list[Document]) -> None:
    ids = [d.id for d in metadata_docs[:10]]
    years = store.field_values(ids, "year")
    assert years == {d.id: d.metadata["year"] for d in metadata_docs[:10] if "year" in d.metadata}
    assert all(type(v) is int for v in years.values())
    venues = store.field_values(ids, "venues")
    assert venues == {d.id: d.metadata["venues"][0] for d in metadata_docs[:10] if d.metadata.get("venues")}
    assert store.field_values(ids, "lang") == {d.id: d.lang for d in metadata_docs[:10] if d.lang}
    assert store.field_values(ids, "published")[ids[3]] == metadata_docs[3].metadata["published"]
    assert store.facet_counts([], "venues") == [] and store.histogram([], "year", 5) == []
    assert sum(c for _, c in store.facet_counts(None, "lang", 100)) == len(metadata_docs)
    for call, words in [
        (lambda: store.facet_counts(ids, "venue"), "unknown field 'venue'"),
        (lambda: store.facet_counts(ids, "lang", 0), "positive"),
        (lambda: store.histogram(ids, "venues", 1), "keyword field"),
        (lambda: store.histogram(ids, "year", 0), "positive number"),
        (lambda: store.histogram(ids, "year", "year"), "not supported"),
        (lambda: store.histogram(ids, "published", "fortnight"), "one of year"),
        (lambda: store.matching(Range("field", gte="a")), "keyword field"),
    ]:
        with pytest.raises((FieldsError, FilterError), match=words):
            call()


# -- builds, updates and old indexes (BM25 only, a small slice) --------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (SHARED_DATA / "xquad").is_dir():
        pytest.skip("the shared data sits beside the checkout")
    root = tmp_path_factory.mktemp("built")
    corpus = write_metadata_corpus(root / "corpus.jsonl", ("en", "de"), 20)
    config = IndexConfig(channels=("bm25",), fields={"year": "integer", "field": "keyword"})
    build_index(open_corpus(corpus), root / "index", config)
    return root / "index"


def test_build_declares_and_infers_fields(built: Path) -> None:
    manifest = Manifest.read(built)
    assert manifest.fields == {**TYPES, "year": "integer", "field": "keyword"}
    assert list(manifest.fields)[:2] == ["year", "field"]  # declared first, then the inferred ones
    assert manifest.config["fields"] == {"year": "integer", "field": "keyword"}
    assert IndexConfig.from_dict(manifest.config).fields == {"year": "integer", "field": "keyword"}
    store = DocStore.in_directory(built)
    try:
        assert store.fields == manifest.fields and not store.legacy
        assert store.count(parse_compact(["lang=en", "has:year"])) == 20
    finally:
        store.close()

    from typer.testing import CliRunner

    from xlir.cli import app

    shown = CliRunner().invoke(app, ["index", "info", str(built)])
    assert shown.exit_code == 0, shown.output
    assert "year:integer," in shown.output and "published:date (inferred)" in shown.output


def test_bad_values_stop_the_build_or_are_skipped(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "text": "one", "lang": "en", "year": 2001},
        {"id": "b", "text": "two", "lang": "en", "year": "two thousand"},
        {
            "id": "b",
            "text": "two again",
            "lang": "en",
            "year": 2002,
        },  # the id is free again once b is skipped
        {"id": "c", "text": "three", "lang": "en", "year": 2003, "tag": 1},
        {"id": "d", "text": "four", "lang": "en", "tag": "x"},
    ]
    corpus = write_jsonl(tmp_path / "c.jsonl", rows)
    config = IndexConfig(channels=("bm25",), fields={"year": "integer"})
    # stopping: the reused id "b" would be reported first (ids are checked before anything is encoded)
    unique = write_jsonl(tmp_path / "u.jsonl", rows[:2] + rows[3:])
    with pytest.raises(CorpusError, match=r"u\.jsonl:2: document 'b': field 'year' \(integer\)") as info:
        build_index(open_corpus(unique), tmp_path / "stop", config)
    assert isinstance(info.value, FieldsError) and not (tmp_path / "stop").exists()

    report = ReadReport()
    skip = IndexConfig(channels=("bm25",), fields={"year": "integer"}, on_error="skip")
    manifest = build_index(
        open_corpus(corpus, on_error="skip", report=report), tmp_path / "skip", skip, skipped=report.skipped
    )
    assert manifest.skipped == {"bad_field_value": 1} and manifest.documents == 4
    assert manifest.fields == {"year": "integer"}  # tag: numbers and strings, left out
    store = DocStore.in_directory(tmp_path / "skip")
    try:
        assert store.field_values(["a", "b", "c", "d"], "year") == {"a": 2001, "b": 2002, "c": 2003}
    finally:
        store.close()

    from typer.testing import CliRunner

    from xlir.cli import app

    result = CliRunner().invoke(
        app, ["index", "build", str(corpus), str(tmp_path / "cli"), "-c", "bm25", "--field", "year:int"]
    )
    assert result.exit_code == 2 and "unknown type 'int'" in result.output
    result = CliRunner().invoke(
        app, ["index", "build", str(corpus), str(tmp_path / "cli"), "-c", "bm25", "--field", "year:integer"]
    )
    assert result.exit_code == 2 and "c.jsonl:2" in result.output


def _table(index: Path) -> list[tuple]:
    store = DocStore.in_directory(index)
    try:
        return store.field_table()
    finally:
        store.close()


def test_updates_keep_the_field_table_equal_to_a_fresh_build(built: Path, tmp_path: Path) -> None:
    import shutil

    index = tmp_path / "index"
    shutil.copytree(built, index)
    fields = Manifest.read(index).fields
    updater = IndexUpdater(index)
    store = DocStore.in_directory(index)
    docs = {d.id: d for d in store}
    store.close()
    first, second = sorted(docs)[:2]
    changed = Document(
        first, "new text", "en", None, {"year": 1950, "venues": ["X", "Y", "Z"], "new": "kept"}
    )
    fresh = Document("new-1", "a new one", "de", None, {"published": "2024-02-29", "field": "law"})
    updater.upsert([changed, fresh])
    updater.delete([second, "absent"])
    with pytest.raises(FieldValueError, match=r"document #0 \('bad'\): field 'year' \(integer\)"):
        updater.upsert([Document("bad", "text", "en", None, {"year": "soon"})])
    # a batch left in the journal by an interrupted process is replayed on open
    replayed = Document(sorted(docs)[3], "replayed", "en", None, {"field": "music", "doi": "10.1/x"})
    updater._journal(
        {
            "op": "upsert",
            "docs": [{"id": replayed.id, "text": replayed.text, "lang": "en", "metadata": replayed.metadata}],
        }
    )
    IndexUpdater(index)

    docs.update({changed.id: changed, fresh.id: fresh, replayed.id: replayed})
    del docs[second]
    rows = [
        {"id": d.id, "text": d.text, "lang": d.lang, **({"title": d.title} if d.title else {}), **d.metadata}
        for d in docs.values()
    ]
    corpus = write_jsonl(tmp_path / "final.jsonl", rows)
    build_index(open_corpus(corpus), tmp_path / "fresh", IndexConfig(channels=("bm25",), fields=fields))
    # the fresh build also infers "new"; the updated index keeps its build's fields
    assert _table(index) == [row for row in _table(tmp_path / "fresh") if row[1] in fields]
    assert Manifest.read(index).fields == fields
    store = DocStore.in_directory(index)
    try:
        assert store.matching(Term("venues", "Y")) == {first}
        with pytest.raises(FilterError, match="unknown field 'new'"):
            store.matching(Term("new", "kept"))  # not a field of the index: kept as metadata only
    finally:
        store.close()


def test_an_old_index_opens_and_says_to_rebuild(built: Path, tmp_path: Path) -> None:
    import shutil

    index = tmp_path / "old"
    shutil.copytree(built, index)
    with sqlite3.connect(index / "docs.sqlite") as db:
        db.executescript("DROP TABLE field_values; DROP TABLE field_types;")
    db.close()
    data = json.loads((index / "manifest.json").read_text())
    del data["fields"], data["config"]["fields"]
    (index / "manifest.json").write_text(json.dumps(data))
    assert Manifest.read(index).fields == {}

    store = DocStore.in_directory(index)
    try:
        assert store.legacy and store.fields == {}
        with pytest.raises(
            FilterError, match="filter on field 'year'.*rebuild the index to filter on metadata"
        ):
            store.matching(parse_compact(["lang=en", "year>=2000"]))
        with pytest.raises(FieldsError, match="rebuild the index"):
            store.facet_counts(None, "field")
        assert store.count(Term("lang", "de")) == 20
        assert store.facet_counts(None, "lang") == [("de", 20), ("en", 20)]
    finally:
        store.close()
    # updates still work on it (no field values are kept), and it stays an old index
    IndexUpdater(index).upsert([Document("z", "zeta", "en", None, {"year": 2000})])
    store = DocStore.in_directory(index)
    try:
        assert store.legacy and store.field_table() == [] and store.count(None) == 41
    finally:
        store.close()
