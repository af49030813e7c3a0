"""Index builds: manifest, docstore, duplicate ids, refusal to clobber, atomic replacement."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import SAMPLE, write_jsonl

from xlir.indexing.builder import IndexExistsError, build_index
from xlir.indexing.config import IndexConfig, LanguageConfig
from xlir.indexing.docstore import DocStore
from xlir.indexing.documents import CorpusError, Document
from xlir.indexing.manifest import Manifest
from xlir.indexing.readers import open_corpus
from xlir.retrieval.searcher import Searcher


def _docs(n: int, prefix: str = "d") -> list[Document]:
    texts = [json.loads(line)["text"] for line in (SAMPLE / "corpus" / "en.jsonl").open(encoding="utf-8")]
    return [Document(id=f"{prefix}{i}", text=texts[i], lang="en") for i in range(n)]


def test_manifest_records_what_was_built(sample_index: Path) -> None:
    manifest = Manifest.read(sample_index)
    assert manifest.documents == 288
    assert manifest.languages == {lang: 48 for lang in ("ar", "de", "en", "es", "ru", "zh")}
    assert manifest.config == IndexConfig().to_dict()
    subindexes = manifest.channels["bm25"]["subindexes"]
    assert {lang: s["documents"] for lang, s in subindexes.items()} == manifest.languages
    assert "pyserini" in manifest.libraries and "xlir" in manifest.libraries
    assert manifest.sources == []
    store = DocStore.in_directory(sample_index)
    doc = store.get("de-a00p00")
    assert doc is not None and doc.lang == "de" and doc.text.startswith("Die Verteidigung der Panthers")
    assert doc.origin.endswith("de.jsonl:1")
    assert len(store) == 288
    store.close()


def test_duplicate_id_stops_the_build_naming_both_places(tmp_path: Path) -> None:
    corpus = write_jsonl(
        tmp_path / "c.jsonl",
        [{"id": "a", "text": "one two", "lang": "en"}, {"id": "a", "text": "three four", "lang": "en"}],
    )
    with pytest.raises(CorpusError) as caught:
        build_index(open_corpus(corpus), tmp_path / "idx")
    message = str(caught.value)
    assert "c.jsonl:2" in message and "c.jsonl:1" in message and "duplicate" in message
    assert not (tmp_path / "idx").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["c.jsonl"], "the staging directory must be removed"


def test_duplicate_id_skipped_and_counted_when_asked(tmp_path: Path) -> None:
    corpus = write_jsonl(
        tmp_path / "c.jsonl",
        [{"id": "a", "text": "one two", "lang": "en"}, {"id": "a", "text": "three four", "lang": "en"}],
    )
    skipped: Counter[str] = Counter()
    manifest = build_index(
        open_corpus(corpus), tmp_path / "idx", IndexConfig(on_error="skip"), skipped=skipped
    )
    assert manifest.documents == 1
    assert manifest.skipped == {"duplicate_id": 1}
    assert DocStore.in_directory(tmp_path / "idx").get("a").text == "one two"


def test_failed_rebuild_leaves_previous_index_intact(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    build_index(_docs(5), target)
    before = (target / "manifest.json").read_text()

    def broken() -> list[Document]:
        yield from _docs(3, prefix="x")
        raise KeyboardInterrupt  # the user pressed Ctrl-C half way

    with pytest.raises(KeyboardInterrupt):
        build_index(broken(), target, overwrite=True)
    assert (target / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
    with Searcher(target) as searcher:
        assert len(searcher.docstore) == 5
        assert searcher.ranking("Panthers defense", k=1).docids == ["d0"]


def test_rebuild_requires_overwrite_and_then_replaces(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    build_index(_docs(5), target)
    with pytest.raises(IndexExistsError, match="--overwrite"):
        build_index(_docs(2), target)
    manifest = build_index(_docs(2, prefix="n"), target, overwrite=True)
    assert manifest.documents == 2
    assert DocStore.in_directory(target).get("d0") is None


def test_refuses_to_replace_a_directory_that_is_not_an_index(tmp_path: Path) -> None:
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("...")
    with pytest.raises(IndexExistsError, match="not an xlir index"):
        build_index(_docs(2), precious, overwrite=True)
    assert (precious / "chapter1.tex").read_text() == "..."


def test_empty_corpus_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no documents"):
        build_index([], tmp_path / "idx")
    assert not (tmp_path / "idx").exists()


def test_missing_languages_are_detected_or_defaulted(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (SAMPLE / "corpus" / "de.jsonl").open(encoding="utf-8")][:3]
    rows += [json.loads(line) for line in (SAMPLE / "corpus" / "zh.jsonl").open(encoding="utf-8")][:3]
    for row in rows:
        del row["lang"]
    corpus = write_jsonl(tmp_path / "nolang.jsonl", rows)
    manifest = build_index(open_corpus(corpus), tmp_path / "detected")
    assert manifest.languages == {"de": 3, "zh": 3}
    doc = DocStore.in_directory(tmp_path / "detected").get("zh-a00p00")
    assert doc.metadata["lang_detected"] > 0.5

    config = IndexConfig(language=LanguageConfig(default="de"))
    manifest = build_index(open_corpus(corpus), tmp_path / "defaulted", config)
    assert manifest.languages == {"de": 6}


def test_unknown_channel_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown channel"):
        build_index(_docs(2), tmp_path / "idx", IndexConfig(channels=("bm25", "telepathy")))
    assert not (tmp_path / "idx").exists()


def test_batches_keep_every_check_across_batch_boundaries(tmp_path: Path) -> None:
    """More documents than one builder batch: a duplicate far from its first occurrence is still caught."""
    from xlir.indexing import builder

    n = builder._BATCH * 2 + 100
    docs = [Document(id=f"d{i}", text=f"word{i % 97} common text {i}", lang="en") for i in range(n)]
    docs.insert(n - 50, Document(id="d10", text="a late duplicate", lang="en"))
    progress: list[int] = []
    skipped: Counter[str] = Counter()
    config = IndexConfig(channels=("bm25",), on_error="skip")
    manifest = build_index(docs, tmp_path / "idx", config, skipped=skipped, on_progress=progress.append)
    assert manifest.documents == n and manifest.skipped == {"duplicate_id": 1}
    assert progress == sorted(progress) and progress[-1] == n and len(progress) >= 3
    store = DocStore.in_directory(tmp_path / "idx")
    assert len(store) == n and store.get("d10").text == "word10 common text 10"
    store.close()

    with pytest.raises(CorpusError, match=r"document #4051: duplicate document id 'd10' \(first seen at"):
        build_index(docs[:4060], tmp_path / "stop", IndexConfig(channels=("bm25",)))
    assert not (tmp_path / "stop").exists()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Document(id="  ", text="text", lang="en"), "document #3: invalid document id '  '"),
        (Document(id="x", text=" \n", lang="en"), "document #3: document 'x' has empty text"),
        (Document(id="x", text=b"bytes", lang="en"), "the text of document 'x' is a bytes, not a str"),  # type: ignore[arg-type]
    ],
)
def test_documents_from_code_are_checked_like_corpus_lines(
    tmp_path: Path, bad: Document, message: str
) -> None:
    docs = [*_docs(2), bad, *_docs(1, prefix="z")]
    with pytest.raises(CorpusError, match=message):
        build_index(docs, tmp_path / "idx", IndexConfig(channels=("bm25",)))
    assert not (tmp_path / "idx").exists()
