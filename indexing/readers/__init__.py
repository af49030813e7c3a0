"""Streaming corpus readers: JSON Lines files, BEIR directories and the shared ``<collection>/corpus`` layout.

Each reader yields :class:`~xlir.indexing.documents.Document` objects one at a time with ``origin="file:line"``.
A line the reader cannot use raises a :class:`~xlir.indexing.documents.CorpusError` naming ``file:line``, the
problem and the fix (``on_error="stop"``, the default), or is skipped, logged and counted in a
:class:`ReadReport` (``on_error="skip"``). Nothing is ever dropped silently. Blank lines are not
errors and are passed over.

Error reasons (``CorpusError.reason`` and the keys of ``ReadReport.skipped``): ``invalid_utf8``,
``malformed_json``, ``missing_field`` (not an object, or no id / text), ``bad_field`` (an id, text,
title or lang of the wrong type), ``empty_text``, ``bad_lang``, ``invalid_unicode`` (a lone surrogate
escape such as ``\\ud800``); the index builder adds ``duplicate_id`` (with ``on_error="stop"`` found
before the first document is read, :meth:`Corpus.check_unique_ids`).
Whole-file problems (``not_found``, ``bad_layout``, ``bad_gzip``, ``unreadable``) always raise.

One module per reader: :mod:`.report` (what they share: ``on_error``, :class:`ReadReport`, the accepted
layouts), :mod:`.jsonl` (one record a line, the only parser), :mod:`.beir`, :mod:`.collection`, and
:mod:`.corpus` (:func:`open_corpus`, which picks one by the layout it finds).
"""

from __future__ import annotations

from xlir.indexing.readers.beir import read_beir_corpus, read_beir_qrels, read_beir_queries
from xlir.indexing.readers.collection import read_collection_corpus
from xlir.indexing.readers.corpus import Corpus, open_corpus
from xlir.indexing.readers.jsonl import ID_FIELDS, TEXT_FIELDS, _parse_line, read_jsonl
from xlir.indexing.readers.report import ACCEPTED_LAYOUTS, OnError, ReadReport

__all__ = [
    "ACCEPTED_LAYOUTS",
    "Corpus",
    "ID_FIELDS",
    "TEXT_FIELDS",
    "OnError",
    "ReadReport",
    "_parse_line",
    "open_corpus",
    "read_beir_corpus",
    "read_beir_qrels",
    "read_beir_queries",
    "read_collection_corpus",
    "read_jsonl",
]
