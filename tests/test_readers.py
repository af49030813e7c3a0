"""Corpus readers: JSON Lines (plain and gzip), BEIR directories, the shared collection layout, open_corpus."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest

from xlir.indexing.documents import CorpusError, Document
from xlir.indexing.readers import (
    ReadReport,
    open_corpus,
    read_beir_corpus,
    read_beir_qrels,
    read_beir_queries,
    read_collection_corpus,
    read_jsonl,
)
from xlir.models.languages import LanguageError

DATA = Path(__file__).parents[1].parent / "shared" / "data"


def write_lines(path: Path, lines: list[str | bytes]) -> Path:
    """Write raw lines (str as UTF-8, bytes as they are), one per line."""
    with open(path, "wb") as f:
        for line in lines:
            f.write((line.encode("utf-8") if isinstance(line, str) else line) + b"\n")
    return path


def test_read_jsonl_fields_lang_metadata_and_origin(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "c.jsonl",
        [
            '{"id": "a", "text": "Guten Tag", "lang": "deu", "title": "Gruß", "source": "wiki", "year": 2020}',
            "",  # blank lines are passed over, line numbers still count
            "   ",
            '{"_id": 7, "text": "Bonjour", "lang": "fr-FR"}',
            '{"docid": "c", "contents": "Hello", "title": ""}',
            '{"id": "d", "text": "Hola", "lang": null}',
        ],
    )
    docs = list(read_jsonl(path))
    assert docs == [
        Document(id="a", text="Guten Tag", lang="de", title="Gruß"),
        Document(id="7", text="Bonjour", lang="fr"),
        Document(id="c", text="Hello", lang=None, title=None),
        Document(id="d", text="Hola", lang=None),
    ]
    assert docs[0].metadata == {"source": "wiki", "year": 2020}
    assert docs[1].metadata == {} and docs[2].metadata == {}
    assert [d.origin for d in docs] == [f"{path}:1", f"{path}:4", f"{path}:5", f"{path}:6"]


def test_lang_argument_fills_and_overrides(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "c.jsonl",
        ['{"id": "a", "text": "x", "lang": "eng-for-afr"}', '{"id": "b", "text": "y"}'],
    )
    assert [d.lang for d in read_jsonl(path, lang="eng")] == ["en", "en"]
    with pytest.raises(LanguageError, match="'klingonish'"):
        read_jsonl(path, lang="klingonish")  # the caller's mistake: raised at once, not per line


BAD_LINES = [
    # (line, reason, a fragment of the message)
    (b'{"id": "a", "text": "caf\xe9"}', "invalid_utf8", "not valid UTF-8 (byte 0xe9"),
    ('{"id": "a", "text": "unterminated}', "malformed_json", "malformed JSON"),
    ('{"id": "a" "text": "x"}', "malformed_json", "malformed JSON"),
    ('["a", "text"]', "missing_field", "expected a JSON object, found list"),
    ('{"text": "no id here"}', "missing_field", "no document id"),
    ('{"id": "a", "body": "wrong field"}', "missing_field", "has no text"),
    ('{"id": "", "text": "x"}', "missing_field", "id is an empty string"),
    ('{"id": ["a"], "text": "x"}', "bad_field", "is a list"),
    ('{"id": "a", "text": 42}', "bad_field", "text of document 'a' is a int"),
    ('{"id": "a", "text": "x", "title": {"t": 1}}', "bad_field", "title of document 'a' is a dict"),
    ('{"id": "a", "text": ""}', "empty_text", "document 'a' has empty text"),
    ('{"id": "a", "text": " \\n\\t "}', "empty_text", "document 'a' has empty text"),
    ('{"id": "a", "text": "x", "lang": "xx"}', "bad_lang", "invalid language code 'xx'"),
    ('{"id": "a", "text": "x", "lang": 5}', "bad_field", "lang of document 'a' is a int"),
]


@pytest.mark.parametrize(("line", "reason", "fragment"), BAD_LINES)
def test_each_error_stops_with_file_and_line(
    tmp_path: Path, line: str | bytes, reason: str, fragment: str
) -> None:
    path = write_lines(tmp_path / "c.jsonl", ['{"id": "ok", "text": "fine"}', "", line])
    docs = read_jsonl(path)
    assert next(docs).id == "ok"
    with pytest.raises(CorpusError) as info:
        next(docs)
    err = info.value
    assert err.reason == reason
    assert err.where == f"{path}:3"
    assert str(err).startswith(f"{path}:3: ")
    assert fragment in str(err)
    assert err.hint  # every error says what to do


def test_skip_mode_counts_every_error_by_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines: list[str | bytes] = ['{"id": "first", "text": "fine"}']
    lines += [line for line, _, _ in BAD_LINES]
    lines += ['{"id": "last", "text": "fine"}']
    path = write_lines(tmp_path / "c.jsonl", lines)
    report = ReadReport()
    with caplog.at_level(logging.WARNING, logger="xlir.indexing.readers"):
        docs = list(read_jsonl(path, on_error="skip", report=report))
    assert [d.id for d in docs] == ["first", "last"]
    assert report.read == 2
    expected: dict[str, int] = {}
    for _, reason, _ in BAD_LINES:
        expected[reason] = expected.get(reason, 0) + 1
    assert dict(report.skipped) == expected
    assert report.total_skipped == len(BAD_LINES)
    # the first 10 messages are kept and logged, each with its file:line
    assert len(report.first_errors) == 10
    assert report.first_errors[0].startswith(f"{path}:2: ")
    assert report.first_errors[9].startswith(f"{path}:11: ")
    assert sum("skipped " in r.message and f"{path}:" in r.message for r in caplog.records) >= 10
    # and the whole file's count is logged even past the first 10: nothing is dropped silently
    assert any(f"skipped {len(BAD_LINES)} unusable lines" in r.message for r in caplog.records)
    assert (
        report.summary()
        == f"2 documents read, {len(BAD_LINES)} skipped ("
        + ", ".join(f"{n} {r}" for r, n in report.skipped.most_common())
        + ")"
    )
    assert report.files == [str(path)]


def test_skip_mode_without_a_report_still_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_lines(tmp_path / "c.jsonl", ['{"id": "a", "text": ""}', '{"id": "b", "text": "x"}'])
    with caplog.at_level(logging.WARNING, logger="xlir.indexing.readers"):
        assert [d.id for d in read_jsonl(path, on_error="skip")] == ["b"]
    assert any(f"{path}:1" in r.message and "empty text" in r.message for r in caplog.records)


def test_report_takes_the_builders_duplicate_ids() -> None:
    report = ReadReport(read=3)
    report.record(
        CorpusError("c.jsonl:3", "duplicate id 'a' (first at c.jsonl:1)", "Make ids unique", "duplicate_id")
    )
    assert report.skipped["duplicate_id"] == 1
    assert report.first_errors == ["c.jsonl:3: duplicate id 'a' (first at c.jsonl:1). Make ids unique"]
    assert report.summary() == "3 documents read, 1 skipped (1 duplicate_id)"


def test_bad_on_error_value(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "c.jsonl", ['{"id": "a", "text": "x"}'])
    with pytest.raises(ValueError, match="on_error must be 'stop' or 'skip'"):
        read_jsonl(path, on_error="ignore")  # type: ignore[arg-type]


def test_gzip(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write('{"id": "a", "text": "Ελληνικά", "lang": "ell"}\n\n{"id": "b", "text": ""}\n')
    docs = read_jsonl(path)
    first = next(docs)
    assert (first.id, first.text, first.lang, first.origin) == ("a", "Ελληνικά", "el", f"{path}:1")
    with pytest.raises(CorpusError, match=rf"{path}:3: document 'b' has empty text"):
        next(docs)
    # a plain file with a .gz name is a whole-file error
    fake = write_lines(tmp_path / "fake.jsonl.gz", ['{"id": "a", "text": "x"}'])
    with pytest.raises(CorpusError, match="is not a complete gzip file") as info:
        list(read_jsonl(fake, on_error="skip"))
    assert info.value.reason == "bad_gzip"


def make_beir(root: Path) -> Path:
    beir = root / "mini-beir"
    (beir / "qrels").mkdir(parents=True)
    write_lines(
        beir / "corpus.jsonl",
        [
            json.dumps(
                {"_id": "d1", "title": "Paris", "text": "Paris is the capital of France.", "metadata": {}}
            ),
            json.dumps({"_id": "d2", "title": "", "text": "Berlin is the capital of Germany."}),
        ],
    )
    write_lines(
        beir / "queries.jsonl",
        [
            json.dumps({"_id": "q1", "text": "capital of France", "metadata": {}}),
            '{"_id": 2, "text": "Berlin"}',
        ],
    )
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n2\td2\t2\n2\td1\t0\n")
    return beir


def test_beir_directory(tmp_path: Path) -> None:
    beir = make_beir(tmp_path)
    docs = list(read_beir_corpus(beir, lang="en"))
    assert [(d.id, d.title, d.lang) for d in docs] == [("d1", "Paris", "en"), ("d2", None, "en")]
    assert docs[0].metadata == {"metadata": {}}
    assert [d.id for d in open_corpus(beir)] == ["d1", "d2"]  # open_corpus recognizes the layout
    assert read_beir_queries(beir) == {"q1": "capital of France", "2": "Berlin"}
    assert read_beir_qrels(beir) == {"q1": {"d1": 1}, "2": {"d2": 2, "d1": 0}}
    with pytest.raises(CorpusError, match="no qrels for split 'dev'. Available splits: test"):
        read_beir_qrels(beir, split="dev")


def test_beir_errors(tmp_path: Path) -> None:
    beir = make_beir(tmp_path)
    with open(beir / "queries.jsonl", "a") as f:
        f.write('{"_id": "q1", "text": "again"}\n')
    with pytest.raises(CorpusError, match=r"queries.jsonl:3: query id 'q1' occurs twice \(first at .*:1\)"):
        read_beir_queries(beir)
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\thigh\n")
    with pytest.raises(CorpusError, match=r"test.tsv:2: score 'high' is not an integer"):
        read_beir_qrels(beir)
    (beir / "qrels" / "test.tsv").write_text("q1 d1 1\n")
    with pytest.raises(CorpusError, match=r"test.tsv:1: expected 3 tab-separated columns"):
        read_beir_qrels(beir)
    (beir / "corpus.jsonl").unlink()
    with pytest.raises(CorpusError, match="has no corpus.jsonl"):
        read_beir_corpus(beir)


def xquad_slice(root: Path, langs: list[str], n: int = 3) -> Path:
    """A collection in the shared layout holding the first n XQuAD paragraphs of each language."""
    source = DATA / "xquad" / "corpus"
    if not source.is_dir():
        pytest.skip(f"shared XQuAD data not found at {source}")
    corpus = root / "xquad-slice" / "corpus"
    corpus.mkdir(parents=True)
    for lang in langs:
        with open(source / f"{lang}.jsonl", encoding="utf-8") as f:
            (corpus / f"{lang}.jsonl").write_text("".join(next(f) for _ in range(n)), encoding="utf-8")
    return corpus.parent


def test_shared_layout_slice(tmp_path: Path) -> None:
    collection = xquad_slice(tmp_path, ["de", "th", "zh"])
    docs = list(read_collection_corpus(collection))
    assert [d.lang for d in docs] == ["de"] * 3 + ["th"] * 3 + ["zh"] * 3  # name order
    assert all(d.id.startswith(f"{d.lang}-") and d.text.strip() for d in docs)
    assert docs[3].origin == f"{collection / 'corpus' / 'th.jsonl'}:1"
    assert [d.lang for d in read_collection_corpus(collection, ["zh", "de"])] == ["zh"] * 3 + ["de"] * 3
    assert len(list(open_corpus(collection))) == 9
    with pytest.raises(CorpusError, match="has no corpus named 'fr'. Available: de, th, zh"):
        read_collection_corpus(collection, ["fr"])


def test_shared_layout_real_xquad_german() -> None:
    collection = DATA / "xquad"
    if not (collection / "corpus" / "de.jsonl").is_file():
        pytest.skip(f"shared XQuAD data not found at {collection}")
    report = ReadReport()
    docs = list(read_collection_corpus(collection, ["de"], report=report))
    assert len(docs) == report.read == 240
    assert {d.lang for d in docs} == {"de"}
    assert len({d.id for d in docs}) == 240


def test_real_tatoeba_lang_field_needs_an_override() -> None:
    """The shared Tatoeba corpus files carry lang "eng-for-afr", which is not a language code."""
    path = DATA / "tatoeba" / "corpus" / "eng-for-afr.jsonl"
    if not path.is_file():
        pytest.skip(f"shared Tatoeba data not found at {path}")
    with pytest.raises(
        CorpusError, match=r"eng-for-afr.jsonl:1: .*invalid language code 'eng-for-afr'"
    ) as info:
        next(open_corpus(path))
    assert info.value.reason == "bad_lang" and "lang=" in info.value.hint
    docs = list(open_corpus(path, lang="eng"))
    assert len(docs) > 100 and {d.lang for d in docs} == {"en"}


def test_open_corpus_plain_directory_and_errors(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    write_lines(folder / "b.jsonl", ['{"id": "b1", "text": "x"}'])
    with gzip.open(folder / "a.jsonl.gz", "wt") as f:
        f.write('{"id": "a1", "text": "y"}\n')
    (folder / "notes.txt").write_text("ignored")
    assert [d.id for d in open_corpus(folder)] == ["a1", "b1"]
    assert [d.id for d in open_corpus(folder / "b.jsonl")] == ["b1"]

    with pytest.raises(
        CorpusError, match="no such file or directory. Check the path. Accepted: a .jsonl"
    ) as info:
        open_corpus(tmp_path / "missing")
    assert info.value.reason == "not_found"
    with pytest.raises(CorpusError, match=r"is not a JSON Lines file \(suffix .txt\). Accepted: .*BEIR"):
        open_corpus(folder / "notes.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        CorpusError, match="holds no corpus this reader knows. Accepted: .*corpus/<name>.jsonl"
    ):
        open_corpus(empty)
    with pytest.raises(CorpusError, match="no such file"):
        read_jsonl(tmp_path / "nope.jsonl")  # raised at the call, not at the first next()


def test_open_corpus_passes_skip_and_report_through_a_directory(tmp_path: Path) -> None:
    collection = xquad_slice(tmp_path, ["en", "ru"], n=2)
    with open(collection / "corpus" / "ru.jsonl", "a", encoding="utf-8") as f:
        f.write(
            '{"id": "ru-bad", "text": "x", "lang": "rus-XX-nonsense-tag"}\n{"id": "ru-ok", "text": "да"}\n'
        )
    report = ReadReport()
    docs = list(open_corpus(collection, on_error="skip", report=report))
    assert [d.id for d in docs][-1] == "ru-ok" and len(docs) == 5
    assert report.read == 5 and dict(report.skipped) == {"bad_lang": 1}
    assert report.first_errors[0].startswith(f"{collection / 'corpus' / 'ru.jsonl'}:3: ")
    assert len(report.files) == 2


def test_utf8_bom_and_crlf_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": 1, "text": "a"}\r\n{"id": 2, "text": "b"}\r\n')
    assert [(d.id, d.text) for d in read_jsonl(path)] == [("1", "a"), ("2", "b")]


def test_bitext_side_files_take_their_language_from_the_name(tmp_path: Path) -> None:
    """Tatoeba's corpus/eng-for-fra.jsonl records say "lang": "eng-for-fra": the documents are English."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "eng-for-fra.jsonl").write_text(
        '{"id": "eng-fra-0000", "text": "We agree with you.", "lang": "eng-for-fra"}\n', encoding="utf-8"
    )
    (corpus / "de.jsonl").write_text(
        '{"id": "d1", "text": "Wir sind einverstanden.", "lang": "de"}\n', encoding="utf-8"
    )
    docs = list(open_corpus(tmp_path))
    assert [(d.id, d.lang) for d in docs] == [("d1", "de"), ("eng-fra-0000", "en")]


#: Lines near the reader's fast path (a record of just id, text and lang, all non-empty strings): each must
#: read exactly as the general parser reads it, document or error.
EDGE_LINES: list[str | bytes] = [
    '{"id": "a", "text": "plain"}',
    '{"id": "a", "text": "with lang", "lang": "deu"}',
    '{"id": "a", "text": "lang tag", "lang": "zh-Hans"}',
    '{"id": "a", "text": "empty lang", "lang": ""}',
    '{"id": "a", "text": "null lang", "lang": null}',
    '{"id": "a", "text": "zero lang", "lang": 0}',
    '{"id": "a", "text": "false lang", "lang": false}',
    '{"id": "a", "text": "list lang", "lang": ["de"]}',
    '{"id": "a", "text": "bad lang", "lang": "not a language"}',
    '{"id": "a", "text": "title", "title": "T"}',
    '{"id": "a", "text": "metadata", "url": "http://x"}',
    '{"id": "a", "text": "id and _id", "_id": "b"}',
    '{"id": "", "text": "empty id"}',
    '{"id": 7, "text": "int id"}',
    '{"id": "a", "text": "   "}',
    '{"id": "a", "text": ""}',
    '{"id": "a", "text": 5}',
    '{"id": "a", "contents": "contents field"}',
    '{"id": "a", "text": "astral 😀 and \\u00e9scaped"}',
    '  {"id": "a", "text": "leading spaces"}  ',
    '{"id": "a", "text": "trailing data"} x',
    '{"id": "a", "text": "two objects"}{"id": "b", "text": "c"}',
    '["id", "text"]',
    '{"id": "a", "text": "control \u0001 char"}',
    b'\xef\xbb\xbf{"id": "a", "text": "after a BOM"}',
    b'{"id": "a", "text": "latin-1 \xe9"}',
    b'{"id": "a", "text": "encoded surrogate \xed\xa0\x80"}',
]


def _outcome(make):  # noqa: ANN001, ANN202
    try:
        doc = make()
    except CorpusError as err:
        return ("error", err.reason, str(err))
    return ("doc", doc, doc.metadata, doc.origin)


@pytest.mark.parametrize("lang", [None, "fr"])
@pytest.mark.parametrize("line", EDGE_LINES)
def test_fast_path_reads_every_line_as_the_general_parser(tmp_path: Path, line: str | bytes, lang) -> None:
    from xlir.indexing.readers import _parse_line

    path = write_lines(tmp_path / "c.jsonl", [line])
    raw = path.read_bytes()
    expected = _outcome(lambda: _parse_line(raw, f"{path}:1", lang))
    assert _outcome(lambda: next(read_jsonl(path, lang=lang))) == expected


def test_make_document_is_the_dataclass_document(tmp_path: Path) -> None:
    import dataclasses

    from xlir.indexing.documents import make_document

    fast = make_document("d1", "text", "de", "Title", {"k": 1}, "f.jsonl:3")
    slow = Document(id="d1", text="text", lang="de", title="Title", metadata={"k": 1}, origin="f.jsonl:3")
    assert fast == slow and hash(fast) == hash(slow)
    assert dataclasses.asdict(fast) == dataclasses.asdict(slow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.id = "other"  # type: ignore[misc]


def test_fast_path_counts_and_mixes_with_skipped_lines(tmp_path: Path) -> None:
    lines: list[str | bytes] = [
        '{"id": "a", "text": "one", "lang": "de"}',
        '{"id": "b", "text": "two", "lang": "klingon-xx"}',
        "",
        '{"id": "c", "text": "three", "lang": "de", "title": "T"}',
        b'{"id": "d", "text": "\xff"}',
        '{"id": "e", "text": "five", "lang": "deu"}',
    ]
    path = write_lines(tmp_path / "c.jsonl", lines)
    report = ReadReport()
    docs = list(read_jsonl(path, on_error="skip", report=report))
    assert [(d.id, d.lang, d.title, d.origin) for d in docs] == [
        ("a", "de", None, f"{path}:1"),
        ("c", "de", "T", f"{path}:4"),
        ("e", "de", None, f"{path}:6"),
    ]
    assert report.read == 3 and dict(report.skipped) == {"bad_lang": 1, "invalid_utf8": 1}
