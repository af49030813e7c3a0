"""Highlighted snippets of hits: the query's terms, where they occur in a text, and an escaped HTML excerpt.

Words are matched in scripts written with spaces (with crude prefix stemming); character bigrams in
scripts written without them (CJK, Thai, Lao, Khmer, Burmese), as the BM25 analyzers of those languages
index them.
"""

from __future__ import annotations

import html
import re

#: The terms of a query: (words, character grams), lowercased; see :func:`query_terms`.
QueryTerms = tuple[frozenset[str], frozenset[str]]

SNIPPET_CHARS = 260
# Scripts written without spaces between words: CJK (Han, kana, Hangul) and Thai, Lao, Khmer, Burmese.
_NO_SPACE = (
    "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
    "\u0e00-\u0e7f\u0e80-\u0eff\u1000-\u109f\u1780-\u17ff"
)
_RUN = re.compile(f"[{_NO_SPACE}]+")
_WORD = re.compile(rf"[^\W{_NO_SPACE}]+")
_STOPWORDS = frozenset(
    """a an and are as at be by did do does for from had has have how in is it its many much of on or
    that the this to was were what when where which who whom why with der die das den dem des und ist
    ein eine einer wer wie wo el la los las de del y en que un una por con le les des et du qui est""".split()
)


def query_terms(query: str) -> QueryTerms:
    """(words, character grams) of a query, lowercased, for highlighting.

    Words come from space-separated scripts (stopwords dropped); grams are the character bigrams of
    runs in scripts written without spaces (a run of one character stays one character), as the
    BM25 analyzers of those languages index them.
    """
    lowered = query.lower()
    grams: set[str] = set()
    for run in _RUN.findall(lowered):
        grams.update([run] if len(run) == 1 else (run[i : i + 2] for i in range(len(run) - 1)))
    words = {w for w in _WORD.findall(lowered) if w not in _STOPWORDS and (len(w) > 1 or w.isdigit())}
    return frozenset(words), frozenset(grams)


def _word_matches(token: str, words: frozenset[str]) -> bool:
    if token in words:
        return True
    # Crude stemming: "defense" highlights "defensive", "surrender" highlights "surrendered".
    return any(len(w) >= 4 and token.startswith(w[: max(4, len(w) - 2)]) for w in words)


def match_spans(text: str, terms: QueryTerms) -> list[tuple[int, int]]:
    """Character spans of ``text`` that match the query terms, sorted and merged."""
    words, grams = terms
    spans: list[tuple[int, int]] = []
    if grams:
        for run in _RUN.finditer(text):
            chunk = run.group().lower()
            for gram in grams:
                start = chunk.find(gram)
                while start != -1:
                    spans.append((run.start() + start, run.start() + start + len(gram)))
                    start = chunk.find(gram, start + 1)
    if words:
        for match in _WORD.finditer(text):
            if _word_matches(match.group().lower(), words):
                spans.append(match.span())
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def snippet(text: str, terms: QueryTerms, width: int = SNIPPET_CHARS) -> str:
    """HTML: the ``width`` characters of ``text`` with the most matches, escaped, matches in <mark>."""
    text = " ".join(text.replace("\ufeff", "").split())
    spans = match_spans(text, terms)
    start = 0
    if spans and len(text) > width:
        best = -1
        for first, _ in spans:
            candidate = max(0, min(first - width // 5, len(text) - width))
            covered = sum(1 for s, e in spans if s >= candidate and e <= candidate + width)
            if covered > best:
                best, start = covered, candidate
    end = min(len(text), start + width)
    if start > 0:  # begin at a word boundary where the script has them
        space = text.find(" ", start, start + 25)
        start = space + 1 if space != -1 else start
    if end < len(text):
        space = text.rfind(" ", end - 25, end)
        end = space if space > start else end
    parts = ["…"] if start > 0 else []
    position = start
    for s, e in spans:
        if e <= start or s >= end:
            continue
        s, e = max(s, start), min(e, end)
        parts.append(html.escape(text[position:s]))
        parts.append(f"<mark>{html.escape(text[s:e])}</mark>")
        position = e
    parts.append(html.escape(text[position:end]))
    if end < len(text):
        parts.append("…")
    return "".join(parts)
