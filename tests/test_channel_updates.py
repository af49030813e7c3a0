"""Incremental updates of the dense and sparse channels: an updated index searches like a fresh build.

The models are tiny and random (a 2-layer BERT sentence encoder, a 1-layer BERT masked LM for SPLADE)
with WordPiece vocabularies trained here on the test texts: random weights still give each text its own
vector, deterministically, which is all these equality tests need. Each test builds an index, applies
batches through :class:`xlir.indexing.updater.IndexUpdater` (deletes, replacements - one of them moving to
another language - and new documents in a language the index did not have) and compares every ranking
with a fresh build over the final documents.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import documents_in, nonsense_texts, save_tiny_sentence_encoder, save_tiny_splade

from xlir.indexing import filecommit
from xlir.indexing.builder import build_index
from xlir.indexing.channels.base import open_updater
from xlir.indexing.config import DenseConfig, IndexConfig, SparseConfig
from xlir.indexing.docstore import DocStore
from xlir.indexing.documents import Document
from xlir.indexing.manifest import Manifest
from xlir.indexing.readers import open_corpus
from xlir.indexing.updater import IndexUpdater
from xlir.models.encoders.dense import SentenceTransformerEncoder
from xlir.retrieval.searcher import Searcher

TEXTS = nonsense_texts(760, seed=11)
LANGS = ("en", "de", "fr")
DOCS = documents_in(TEXTS[:700], LANGS)
BASE = DOCS[:60]
#: new documents: four in Italian (a language no index has), the others in English and German
NEW = [
    Document(id=f"n{i:02d}", text=t, lang="it" if i < 4 else LANGS[i % 2])
    for i, t in enumerate(TEXTS[700:712])
]
DELETED = ["d003", "d010", "d011", "d027", "d048", "d059"]
#: replacements: new text (d005, d040), new language (d007 en -> it), new title (d012)
REPLACED = [
    Document(id="d005", text=TEXTS[720], lang="fr"),
    Document(id="d040", text=TEXTS[721], lang="en"),
    Document(id="d007", text=TEXTS[7], lang="it"),
    Document(id="d012", text=TEXTS[12], lang="en", title="gulkel doravo"),
]
QUERIES = [TEXTS[i] for i in (0, 5, 7, 12, 40, 44, 59, 700, 701, 705, 720)] + nonsense_texts(4, seed=99)
FILTERS: list[list[str] | None] = [None, ["en"], ["it"], ["de", "fr"]]


def _final(docs: list[Document]) -> list[Document]:
    """What the index holds after: add NEW, then delete DELETED and upsert REPLACED."""
    by_id = {d.id: d for d in docs + NEW}
    for docid in DELETED:
        by_id.pop(docid, None)
    by_id.update({d.id: d for d in REPLACED})
    return list(by_id.values())


def _apply_batches(index: Path) -> None:
    updater = IndexUpdater(index)
    report = updater.upsert(NEW)
    assert (report.added, report.replaced) == (len(NEW), 0)
    report = updater.delete([*DELETED, "no-such-doc"])
    assert (report.deleted, report.missing) == (len(DELETED), ["no-such-doc"])
    report = updater.upsert(REPLACED)
    assert (report.added, report.replaced) == (0, len(REPLACED))
    assert not updater.pending()


def _assert_same_rankings(updated: Path, fresh: Path, channel: str, k: int = 10) -> None:
    a_manifest, b_manifest = Manifest.read(updated), Manifest.read(fresh)
    assert a_manifest.documents == b_manifest.documents
    assert a_manifest.languages == b_manifest.languages
    assert a_manifest.channels[channel]["documents"] == b_manifest.channels[channel]["documents"]
    with Searcher(updated, channels=[channel]) as a, Searcher(fresh, channels=[channel]) as b:
        for query in QUERIES:
            for langs in FILTERS:
                ra, rb = a.ranking(query, k=k, langs=langs), b.ranking(query, k=k, langs=langs)
                assert ra.docids == rb.docids, (query, langs)
                assert [h.score for h in ra] == pytest.approx([h.score for h in rb], abs=1e-5), (query, langs)
                assert [h.lang for h in ra] == [h.lang for h in rb]
                assert not set(ra.docids) & set(DELETED)


# --------------------------------------------------------------------------------------------- dense


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save_tiny_sentence_encoder(tmp_path_factory.mktemp("tiny-dense"), TEXTS, vocab_size=1500)[1])


def _dense_config(model: str, **dense: object) -> IndexConfig:
    return IndexConfig(channels=("dense",), dense=DenseConfig(model=model, batch_size=16, **dense))


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_updated_dense_index_equals_a_fresh_build(kind: str, tiny_model: str, tmp_path: Path) -> None:
    config = _dense_config(tiny_model, index=kind)
    build_index(BASE, tmp_path / "updated", config)
    _apply_batches(tmp_path / "updated")  # hnsw: the add-only batch inserts, the others rebuild the graph
    details = Manifest.read(tmp_path / "updated").channels["dense"]
    assert details["index"] == kind and details["documents"] == len(_final(BASE))
    build_index(_final(BASE), tmp_path / "fresh", config)
    _assert_same_rankings(tmp_path / "updated", tmp_path / "fresh", "dense")
    with Searcher(tmp_path / "updated") as searcher:
        assert searcher.ranking(TEXTS[7], k=1).hits[0].lang == "it"  # d007 moved to Italian
        assert searcher.ranking(NEW[0].text, k=1, langs=["it"]).docids == [NEW[0].id]
    assert not (tmp_path / "updated" / "dense" / filecommit.STAGING).exists()


def test_ivfpq_update_keeps_codes_and_quantizers(tiny_model: str, tmp_path: Path) -> None:
    """IVF-PQ is not retrained on update: kept documents keep their codes (so their exact scores), new
    documents get the codes the build-time quantizers give them, and ids stay contiguous.

    The 700 build-time vectors are random (training IVF-PQ needs hundreds); added documents are encoded
    by the updater with the tiny model.
    """
    import faiss

    from xlir.indexing.channels.dense.writer import build_faiss_index, dense_text

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(DOCS), 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index, kind, extra = build_faiss_index(vectors, "ivfpq")
    channel = tmp_path / "dense"
    channel.mkdir()
    faiss.write_index(index, str(channel / "index.faiss"))
    (channel / "docids.json").write_text(json.dumps([d.id for d in DOCS]))
    np.save(channel / "langs.npy", np.asarray([LANGS.index(d.lang) for d in DOCS], dtype=np.int16))
    (channel / "languages.json").write_text(json.dumps(list(LANGS)))
    details = {"model": tiny_model, "index": kind, "dim": 32, "batch_size": 16, "prompts": {}, **extra}
    for batch in (NEW, REPLACED):
        updater = open_updater("dense", channel, details)
        updater.delete([*DELETED, *(d.id for d in batch)])
        updater.add(batch)
        details = updater.close()
    final = _final(DOCS)
    assert kind == "ivfpq" and details["documents"] == len(final)
    docids = json.loads((channel / "docids.json").read_text())
    assert sorted(docids) == sorted(d.id for d in final)
    updated = faiss.read_index(str(channel / "index.faiss"))
    assert updated.ntotal == len(docids) and updated.nlist == extra["nlist"]

    # what every document scores for some queries, visiting every inverted list
    added = [*NEW, *REPLACED]
    queries = vectors[:5] + 0.5 * rng.standard_normal((5, 32)).astype(np.float32)
    params = faiss.SearchParametersIVF(nprobe=extra["nlist"])

    def scores(idx: faiss.Index, names: list[str]) -> dict[str, np.ndarray]:
        values, ids = idx.search(queries, idx.ntotal, params=params)
        table: dict[str, list[float]] = {}
        for q in range(len(queries)):
            for value, position in zip(values[q], ids[q], strict=True):
                table.setdefault(names[position], []).append(float(value))
        return {name: np.asarray(v) for name, v in table.items()}

    after = scores(updated, docids)
    assert set(after) == set(docids) and all(len(v) == len(queries) for v in after.values())
    before = scores(index, [d.id for d in DOCS])
    # the reference: the untouched build-time index with the added documents appended
    index.add(SentenceTransformerEncoder(tiny_model).encode_documents([dense_text(d) for d in added]))
    reference = scores(index, [d.id for d in DOCS] + [f"added:{d.id}" for d in added])
    added_ids = {d.id for d in added}
    for docid in docids:
        expected = reference[f"added:{docid}"] if docid in added_ids else before[docid]
        assert np.allclose(after[docid], expected, atol=1e-5), docid


def test_dense_batches_are_idempotent_and_deletes_need_no_model(tiny_model: str, tmp_path: Path) -> None:
    build_index(BASE[:30], tmp_path / "idx", _dense_config(tiny_model))
    channel = tmp_path / "idx" / "dense"
    details = Manifest.read(tmp_path / "idx").channels["dense"]
    for _ in range(2):  # the same batch twice (a journal replay) gives the same channel
        updater = open_updater("dense", channel, details)
        updater.delete(["d001", "d002", "missing"])
        updater.add([REPLACED[0], NEW[0], NEW[0]])  # an id added twice is replaced, not duplicated
        details = updater.close()
    ids = json.loads((channel / "docids.json").read_text())
    assert details["documents"] == len(ids) == 30 - 2 + 1 and ids[-2:] == ["d005", "n00"]
    assert details["bytes"] == sum(p.stat().st_size for p in channel.iterdir())
    # a delete-only batch never loads the encoder (here: a model that no longer exists)
    updater = open_updater("dense", channel, {**details, "model": str(tmp_path / "gone")})
    updater.delete(["d004"])
    assert updater.close()["documents"] == 28
    # a model whose prompts changed since the build cannot add documents that would match the old ones
    updater = open_updater("dense", channel, {**details, "prompts": {"passage": "passage: "}})
    with pytest.raises(ValueError, match="built with prompts"):
        updater.add([NEW[1]])
    updater.abort()


# --------------------------------------------------------------------------------------------- sparse


@pytest.fixture(scope="module")
def tiny_splade(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real BertForMaskedLM (1 layer, 32 wide, random weights) with a WordPiece vocabulary of TEXTS."""
    return save_tiny_splade(tmp_path_factory.mktemp("splade") / "tiny-splade", TEXTS, vocab_size=400)


@pytest.mark.parametrize("normalize", [False, True])
def test_updated_sparse_index_equals_a_fresh_build(
    normalize: bool, tiny_splade: Path, tmp_path: Path
) -> None:
    sparse = SparseConfig(
        model=str(tiny_splade), doc_top_k=16, query_top_k=16, batch_size=16, normalize=normalize
    )
    config = IndexConfig(channels=("sparse",), sparse=sparse)
    build_index(BASE, tmp_path / "updated", config)
    _apply_batches(tmp_path / "updated")
    build_index(_final(BASE), tmp_path / "fresh", config)
    _assert_same_rankings(tmp_path / "updated", tmp_path / "fresh", "sparse", k=20)
    updated = Manifest.read(tmp_path / "updated").channels["sparse"]
    fresh = Manifest.read(tmp_path / "fresh").channels["sparse"]
    assert updated["postings"] == fresh["postings"] == 16 * len(_final(BASE))
    assert updated["normalize"] is normalize
    with Searcher(tmp_path / "updated") as searcher:
        assert searcher.ranking(NEW[2].text, k=1, langs=["it"]).docids == [NEW[2].id]


# --------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def sample_docs(sample: Path) -> list[Document]:
    """The bundled sample's first 16 articles in each of its 6 languages (96 XQuAD paragraphs)."""
    return [d for d in open_corpus(sample) if int(d.id.split("-a")[1][:2]) < 16]


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory: pytest.TempPathFactory, sample_docs: list[Document]) -> tuple[Path, IndexConfig]:
    """A slice of the bundled sample with bm25 + dense (the tiny model, its vocabulary from these texts)."""
    folder = tmp_path_factory.mktemp("hybrid")
    model = save_tiny_sentence_encoder(folder / "model", [d.text for d in sample_docs], vocab_size=1500)[1]
    config = IndexConfig(channels=("bm25", "dense"), dense=DenseConfig(model=str(model), batch_size=16))
    build_index(sample_docs, folder / "pristine", config)
    return folder / "pristine", config


HYBRID_QUERIES = ["How many points did the Panthers defense surrender?", "Denver Broncos", "Musée du Louvre"]


def test_hybrid_update_survives_a_crash_mid_commit_and_equals_a_fresh_build(
    hybrid: tuple[Path, IndexConfig],
    sample_docs: list[Document],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pristine, config = hybrid
    index = tmp_path / "index"
    shutil.copytree(pristine, index)
    updater = IndexUpdater(index)
    updater.delete(["en-a01p00", "de-a02p00"])
    batch = [
        Document(id="en-a00p00", text="The Panthers defense gave up 308 points and many sacks.", lang="en"),
        Document(id="th-new", text="ทีมแพนเทอร์สชนะการแข่งขัน", lang="th"),
        Document(id="fr-new", text="Le musée du Louvre est à Paris, les Panthers aussi.", lang="fr"),
    ]
    # The process dies while the dense channel moves its committed files into place: the FAISS index is
    # new, the id list still old. The journal entry stays behind.
    real_replace, calls = os.replace, []

    def dying_replace(src: str | Path, dst: str | Path) -> None:
        if Path(src).parent.name == filecommit.STAGING:
            calls.append(Path(dst).name)
            if len(calls) == 3:
                raise OSError("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(filecommit.os, "replace", dying_replace)
    with pytest.raises(OSError, match="simulated crash"):
        updater.upsert(batch)
    monkeypatch.setattr(filecommit.os, "replace", real_replace)
    assert calls[:2] == [filecommit.MARKER, "index.faiss"]
    assert (index / "dense" / filecommit.STAGING / filecommit.MARKER).is_file()
    assert len(updater.pending()) == 1
    # Reopening replays the journal: the dense channel first finishes its commit, then the batch is
    # applied again (idempotently) to every channel.
    reopened = IndexUpdater(index)
    assert not reopened.pending() and not (index / "dense" / filecommit.STAGING).exists()

    store = DocStore.in_directory(index)
    try:
        final = list(store)
    finally:
        store.close()
    assert len(final) == len(sample_docs) - 2 + 2
    build_index(final, tmp_path / "fresh", config)
    assert Manifest.read(index).channels["dense"]["documents"] == len(sample_docs)
    with Searcher(index) as updated, Searcher(tmp_path / "fresh") as fresh:
        for query in [*HYBRID_QUERIES, batch[0].text, batch[1].text]:
            for channel in ("bm25", "dense"):
                for langs in (None, ["en"], ["th"]):
                    a = updated.ranking(query, k=10, langs=langs, channels=[channel])
                    b = fresh.ranking(query, k=10, langs=langs, channels=[channel])
                    assert a.docids == b.docids, (query, channel, langs)
                    assert [h.score for h in a] == pytest.approx([h.score for h in b], rel=1e-5, abs=1e-5)
            assert updated.ranking(query, k=10).docids == fresh.ranking(query, k=10).docids, query
        assert updated.search(batch[1].text, k=1, channels=["dense"]).hits[0].docid == "th-new"
        assert "en-a01p00" not in updated.ranking("Panthers", k=300, channels=["dense"]).docids


def test_an_uncommitted_staging_folder_is_discarded(tiny_model: str, tmp_path: Path) -> None:
    build_index(BASE[:20], tmp_path / "idx", _dense_config(tiny_model))
    channel = tmp_path / "idx" / "dense"
    before = (channel / "docids.json").read_text()
    stage = channel / filecommit.STAGING
    stage.mkdir()
    (stage / "docids.json").write_text("[]")  # written, never committed (no marker)
    details = Manifest.read(tmp_path / "idx").channels["dense"]
    assert open_updater("dense", channel, details).close()["documents"] == 20
    assert not stage.exists() and (channel / "docids.json").read_text() == before
    assert np.load(channel / "langs.npy").shape == (20,)
