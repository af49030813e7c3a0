"""The translate channel writer: documents translated into one language at index time, indexed with BM25.

Document translation beats query translation for cross-lingual retrieval (a document gives the
translation model context a short query lacks; CLIRudit, Saleh & Pecina 2020): every document whose
language differs from the configured ``target`` is machine-translated (batched per source language,
see :mod:`retrieval.translate`), and all documents - translated or already in the target language - go
into ONE Lucene index analyzed with the target language's analyzer (``directory/<target>/``).

A document whose language has no translator here is, with ``untranslatable="keep"`` (the default),
indexed as it is and counted in the manifest details (a warning is logged): names, numbers and cognates
still match, and one unsupported language in a multilingual corpus does not block the whole build. With
``untranslatable="error"`` the build stops with :class:`retrieval.translate.TranslationUnavailableError`.
The original language of every document is kept in ``langs.json`` so hits carry it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from indexing.analyzers import analyzer_for
from indexing.bm25 import BATCH_SIZE as BM25_BATCH
from indexing.bm25 import _SubIndex, bm25_params, count_documents, document_contents, subindex_name
from indexing.documents import Document
from indexing.java import ensure_jvm

logger = logging.getLogger(__name__)

UNTRANSLATABLE = ("keep", "error")
#: Documents of unknown language are recorded under this code (and never translated).
UNKNOWN_LANG = "und"


def translate_settings(config: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    """Validated (target, engine, models) from a channel config or manifest details."""
    from indexing.languages import normalize_language
    from retrieval.translate import ENGINES

    target = normalize_language(str(config.get("target", "en")))
    engine = str(config.get("engine", "auto"))
    if engine not in ENGINES:
        raise ValueError(f"unknown translation engine {engine!r}; use one of {', '.join(ENGINES)}")
    models = config.get("models") or {}
    if not isinstance(models, dict):
        raise ValueError(f"translate models must map pairs to checkpoint paths, got {models!r}")
    return target, engine, {str(k): str(v) for k, v in models.items()}


class TranslatedWriter:
    """Channel writer for the translate channel (see the module docstring).

    ``config``: ``target`` (default "en"), ``engine`` (default "auto"), ``models`` (pair -> checkpoint),
    ``untranslatable`` ("keep" or "error"), ``batch_size`` (documents translated per call, default 64),
    BM25 ``k1``/``b`` (defaults 0.9/0.4) and ``threads``.
    """

    def __init__(self, directory: Path, config: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.target, self.engine, self.models = translate_settings(config)
        self.untranslatable = str(config.get("untranslatable", "keep"))
        if self.untranslatable not in UNTRANSLATABLE:
            raise ValueError(f"untranslatable must be 'keep' or 'error', got {self.untranslatable!r}")
        self.batch_size = int(config.get("batch_size", 64))
        if self.batch_size < 1:
            raise ValueError(f"translate batch_size must be >= 1, got {self.batch_size}")
        self.k1, self.b = bm25_params(config)
        threads = int(config.get("threads") or os.cpu_count() or 1)
        ensure_jvm()
        from pyserini.index.lucene._indexer import JsonCollectionDocument

        self._make_doc = JsonCollectionDocument.fromFields
        path = self.directory / subindex_name(self.target)
        if path.exists() and any(path.iterdir()):
            raise RuntimeError(f"translate index {path} already exists; build into an empty directory")
        self._sub = _SubIndex(path, analyzer_for(self.target), threads)
        self._pending: dict[str, list[Document]] = {}
        self._translators: dict[str, Any] = {}
        self._langs: dict[str, str] = {}
        self.translated: dict[str, int] = {}
        self.untranslated: dict[str, int] = {}
        self._closed = False

    def _translator(self, lang: str) -> Any | None:
        from retrieval.translate import TranslationUnavailableError, translator_for

        if lang not in self._translators:
            try:
                self._translators[lang] = translator_for(lang, self.target, self.engine, self.models)
            except TranslationUnavailableError:
                if self.untranslatable == "error":
                    raise
                logger.warning(
                    "translate channel: no %s->%s translator; documents in %r are indexed untranslated",
                    lang,
                    self.target,
                    lang,
                    exc_info=logger.isEnabledFor(logging.DEBUG),
                )
                self._translators[lang] = None
        return self._translators[lang]

    def add(self, doc: Document) -> None:
        """Queue ``doc``: indexed now if in the target language, else translated with its batch."""
        if self._closed:
            raise RuntimeError("TranslatedWriter.add() after close(); open a new writer")
        lang = doc.lang or UNKNOWN_LANG
        if doc.id in self._langs:
            raise ValueError(f"document id {doc.id!r} added twice to the translate channel")
        self._langs[doc.id] = lang
        if lang == self.target or lang == UNKNOWN_LANG or self._translator(lang) is None:
            if lang != self.target:
                self.untranslated[lang] = self.untranslated.get(lang, 0) + 1
            self._index([doc])
            return
        batch = self._pending.setdefault(lang, [])
        batch.append(doc)
        if len(batch) >= self.batch_size:
            self._translate(lang)

    def _translate(self, lang: str) -> None:
        docs = self._pending.pop(lang, [])
        if not docs:
            return
        texts: list[str] = []
        for doc in docs:
            texts.append(doc.title or "")
            texts.append(doc.text)
        out = self._translator(lang).translate(texts)
        if len(out) != len(texts):
            raise RuntimeError(f"{lang}->{self.target} translator returned {len(out)} texts for {len(texts)}")
        translated = []
        for i, doc in enumerate(docs):
            title, text = out[2 * i], out[2 * i + 1]
            translated.append(
                Document(id=doc.id, text=text or doc.text, title=title or None, lang=self.target)
            )
        self.translated[lang] = self.translated.get(lang, 0) + len(docs)
        self._index(translated)

    def _index(self, docs: list[Document], flush: bool = False) -> None:
        sub = self._sub
        for doc in docs:
            sub.buffer.append(self._make_doc(doc.id, document_contents(sub.analyzer, doc)))
        if not sub.buffer or (len(sub.buffer) < BM25_BATCH and not flush):
            return
        sent = len(sub.buffer)
        sub.accepted += sub.indexer.object.addJsonDocuments(sub.buffer)
        sub.added += sent
        sub.buffer = []
        if sub.accepted != sub.added:
            raise RuntimeError(
                f"translate index (analyzer {sub.analyzer!r}) indexed {sub.accepted} of {sub.added} documents"
            )

    def close(self) -> dict[str, Any]:
        """Translate what is pending, commit, verify the count and return the manifest details."""
        if self._closed:
            raise RuntimeError("TranslatedWriter.close() called twice")
        self._closed = True
        try:
            for lang in sorted(self._pending):
                self._translate(lang)
            self._index([], flush=True)
        finally:
            self._sub.indexer.close()
        count = count_documents(self._sub.path)
        if count != self._sub.added:
            raise RuntimeError(f"translate index holds {count} documents, {self._sub.added} were added")
        (self.directory / "langs.json").write_text(json.dumps(self._langs), encoding="utf-8")
        if self.untranslated:
            logger.warning("translate channel: documents indexed untranslated: %s", self.untranslated)
        engines = {lang: getattr(t, "engine", type(t).__name__) for lang, t in self._translators.items() if t}
        return {
            "target": self.target,
            "engine": self.engine,
            "models": self.models,
            "engines": engines,
            "k1": self.k1,
            "b": self.b,
            "path": self._sub.path.name,
            "analyzer": self._sub.analyzer,
            "documents": count,
            "translated": dict(sorted(self.translated.items())),
            "untranslated": dict(sorted(self.untranslated.items())),
        }
