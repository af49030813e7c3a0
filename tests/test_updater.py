"""Incremental updates over real Lucene sub-indexes: equal to a fresh build, journaled, validated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from xlir.indexing.builder import build_index
from xlir.indexing.channels.base import UpdateNotSupportedError
from xlir.indexing.docstore import DocStore
from xlir.indexing.documents import Document
from xlir.indexing.manifest import Manifest
from xlir.indexing.readers import open_corpus
from xlir.indexing.updater import IndexUpdater, UpdateError
from xlir.retrieval.searcher import Searcher

QUERIES = [
    "How many points did the Panthers defense surrender?",
    "Panthers Kawann Short sacks",
    "Wer gewann den Super Bowl?",
    "黑豹队的防守",
    "Denver Broncos",
    "Musée du Louvre Paris",
    "ทีมแพนเทอร์ส",
]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, sample: Path) -> Path:
    target = tmp_path_factory.mktemp("updater") / "pristine"
    build_index(open_corpus(sample), target)
    return target


@pytest.fixture()
def index(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "index"
    shutil.copytree(pristine, copy)
    return copy


def _all_docs(index_dir: Path) -> list[Document]:
    store = DocStore.in_directory(index_dir)
    try:
        return list(store)
    finally:
        store.close()


def test_updated_index_equals_a_fresh_build(index: Path, tmp_path: Path) -> None:
    updater = IndexUpdater(index)
    report = updater.delete(["en-a01p00", "de-a02p00", "zh-a03p00", "no-such-doc"])
    assert (report.deleted, report.missing) == (3, ["no-such-doc"])
    before = {d.id: d for d in _all_docs(index)}
    replaced_es = before["es-a00p00"]
    report = updater.upsert(
        [
            # replaced in place, same language, new text
            Document(
                id="en-a00p00", text="The Panthers defense gave up 308 points and many sacks.", lang="en"
            ),
            # replaced and moved to another language's sub-index
            Document(id=replaced_es.id, text=replaced_es.text, lang="fr", title="Panthers"),
            # new documents, two of them in languages the index did not have
            Document(id="fr-new", text="Le musée du Louvre est à Paris, les Panthers aussi.", lang="fra"),
            Document(id="th-new", text="ทีมแพนเทอร์สชนะการแข่งขัน", lang="th"),
            Document(
                id="de-new", text="Die Panthers verloren den Super Bowl gegen die Denver Broncos.", lang="de"
            ),
        ]
    )
    assert (report.added, report.replaced) == (3, 2)
    final = _all_docs(index)
    manifest = Manifest.read(index)
    assert manifest.documents == len(final) == 288 - 3 + 3
    assert manifest.languages["fr"] == 2 and manifest.languages["th"] == 1 and manifest.languages["en"] == 47
    assert manifest.channels["bm25"]["subindexes"]["th"]["analyzer"] == "script-bigram"
    assert not updater.pending()

    fresh = tmp_path / "fresh"
    build_index(final, fresh)
    assert Manifest.read(fresh).languages == manifest.languages
    with Searcher(index) as updated, Searcher(fresh) as rebuilt:
        for query in QUERIES:
            for langs in (None, ["en"], ["fr"], ["de"], ["th"], ["zh"]):
                a, b = updated.ranking(query, k=20, langs=langs), rebuilt.ranking(query, k=20, langs=langs)
                assert a.docids == b.docids, (query, langs)
                assert [h.score for h in a] == pytest.approx([h.score for h in b], rel=1e-6), (query, langs)
        assert updated.search("Louvre", k=1).hits[0].docid == "fr-new"
        assert updated.docstore.get("en-a01p00") is None
        assert "en-a01p00" not in updated.ranking("Panthers defense", k=100).docids


def test_an_interrupted_batch_is_replayed_on_open(index: Path) -> None:
    updater = IndexUpdater(index)
    doc = Document(id="replayed", text="Journal replay brings this document back.", lang="en")
    # A process that journaled a batch and died before applying it (or half way: replay is idempotent).
    entry = {"op": "upsert", "docs": [{"id": doc.id, "text": doc.text, "lang": "en"}]}
    updater._apply(entry)  # half applied once already
    updater._journal(entry)
    updater._journal({"op": "delete", "ids": ["en-a05p00"]})
    assert len(updater.pending()) == 2
    reopened = IndexUpdater(index)
    assert reopened.pending() == []
    with Searcher(index) as searcher:
        assert searcher.search("journal replay", k=1).hits[0].docid == "replayed"
        assert searcher.docstore.get("en-a05p00") is None
        assert searcher.manifest.documents == 288
        assert searcher.manifest.channels["bm25"]["subindexes"]["en"]["documents"] == 48


@pytest.mark.parametrize(
    ("docs", "message"),
    [
        ([], "no documents"),
        ([Document(id="a", text="x"), Document(id="a", text="y")], "twice"),
        ([Document(id=" ", text="x")], "invalid id"),
        ([Document(id="a", text="   ")], "text is empty"),
        ([Document(id="a", text="x", lang="not a language!")], "invalid language code"),
    ],
)
def test_bad_batches_are_refused_before_anything_changes(
    pristine: Path, docs: list[Document], message: str
) -> None:
    updater = IndexUpdater(pristine)
    with pytest.raises(UpdateError, match=message):
        updater.upsert(docs)
    assert not (pristine / "journal").exists() or not updater.pending()
    assert Manifest.read(pristine).documents == 288


def test_channels_without_an_updater_refuse_updates(index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every shipped channel has an updater now; a channel registered without one is refused up front."""
    from dataclasses import replace

    from xlir.indexing.channels import CHANNELS

    monkeypatch.setitem(CHANNELS, "multivector", replace(CHANNELS["multivector"], updater=None))
    manifest_path = index / "manifest.json"
    data = json.loads(manifest_path.read_text())
    data["channels"]["multivector"] = {"model": "multilingual-e5-small"}
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(UpdateNotSupportedError, match=r"'multivector'.*xlir index build --overwrite"):
        IndexUpdater(index)
