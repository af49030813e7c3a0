"""The translate channel writer: documents translated into one language at index time, indexed with BM25.

Document translation beats query translation for cross-lingual retrieval (a document gives the
translation model context a short query lacks; CLIRudit, Saleh & Pecina 2020): every document whose
language differs from the configured ``target`` is machine-translated (batched per source language,
see :mod:`xlir.models.translators`), and all documents - translated or already in the target language - go
into ONE Lucene index analyzed with the target language's analyzer (``directory/<target>/``).

A document whose language has no translator here is, with ``untranslatable="keep"`` (the default),
indexed as it is and counted in the manifest details (a warning is logged): names, numbers and cognates
still match, and one unsupported language in a multilingual corpus does not block the whole build. With
``untranslatable="error"`` the build stops with :class:`xlir.models.translators.TranslationUnavailableError`.
The original language of every document is kept in ``langs.json`` so hits carry it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from xlir.indexing.channels.base import ChannelWriter
from xlir.indexing.channels.bm25.analyzers import analyzer_for
from xlir.indexing.channels.bm25.java import ensure_jvm
from xlir.indexing.channels.bm25.store import BATCH_SIZE, LuceneSubIndex, bm25_params, subindex_name
from xlir.indexing.channels.files import write_files
from xlir.indexing.channels.translate.store import UNKNOWN_LANG, langs_files
from xlir.indexing.documents import Document
from xlir.indexing.errors import ConfigError

logger = logging.getLogger(__name__)

UNTRANSLATABLE = ("keep", "error")


def translate_settings(config: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    """Validated (target, engine, models) from a channel config or manifest details."""
    from xlir.models.languages import normalize_language
    from xlir.models.translators import ENGINES

    target = normalize_language(str(config.get("target", "en")))
    engine = str(config.get("engine", "auto"))
    if engine not in ENGINES:
        raise ConfigError(f"unknown translation engine {engine!r}; use one of {', '.join(ENGINES)}")
    models = config.get("models") or {}
    if not isinstance(models, dict):
        raise ConfigError(f"translate models must map pairs to checkpoint paths, got {models!r}")
    return target, engine, {str(k): str(v) for k, v in models.items()}


class DocumentTranslator:
    """Turns documents into target-language documents, one translator per source language (cached).

    Shared by the writer and the updater so that an updated document is translated exactly as a built
    one. A language with no translator is handled by ``untranslatable`` ("keep": indexed as it is and
    counted in ``untranslated``; "error": :class:`xlir.models.translators.TranslationUnavailableError`).
    """

    def __init__(
        self, target: str, engine: str, models: dict[str, str], untranslatable: str = "keep"
    ) -> None:
        if untranslatable not in UNTRANSLATABLE:
            raise ConfigError(f"untranslatable must be 'keep' or 'error', got {untranslatable!r}")
        self.target, self.engine, self.models, self.untranslatable = target, engine, models, untranslatable
        self._translators: dict[str, Any] = {}
        self.translated: dict[str, int] = {}
        self.untranslated: dict[str, int] = {}

    def translator(self, lang: str) -> Any | None:
        """The translator from ``lang`` to the target, or None when documents in ``lang`` stay as they are."""
        if lang == self.target or lang == UNKNOWN_LANG:
            return None
        from xlir.models.translators import TranslationUnavailableError, translator_for

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

    def untouched(self, doc: Document) -> Document:
        """``doc`` as it will be indexed without translation (counted when not in the target language)."""
        lang = doc.lang or UNKNOWN_LANG
        if lang != self.target:
            self.untranslated[lang] = self.untranslated.get(lang, 0) + 1
        return doc

    def translate(self, lang: str, docs: list[Document]) -> list[Document]:
        """``docs`` (all in ``lang``, which has a translator) translated into the target, ids kept."""
        texts: list[str] = []
        for doc in docs:
            texts.append(doc.title or "")
            texts.append(doc.text)
        out = self.translator(lang).translate(texts)
        if len(out) != len(texts):
            raise RuntimeError(f"{lang}->{self.target} translator returned {len(out)} texts for {len(texts)}")
        self.translated[lang] = self.translated.get(lang, 0) + len(docs)
        return [
            Document(id=doc.id, text=out[2 * i + 1] or doc.text, title=out[2 * i] or None, lang=self.target)
            for i, doc in enumerate(docs)
        ]

    def engines(self) -> dict[str, str]:
        return {lang: getattr(t, "engine", type(t).__name__) for lang, t in self._translators.items() if t}


class TranslatedWriter(ChannelWriter):
    """Channel writer for the translate channel (see the module docstring).

    ``config``: ``target`` (default "en"), ``engine`` (default "auto"), ``models`` (pair -> checkpoint),
    ``untranslatable`` ("keep" or "error"), ``batch_size`` (documents translated per call, default 64),
    BM25 ``k1``/``b`` (defaults 0.9/0.4) and ``threads``.
    """

    def __init__(self, directory: Path, config: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.target, self.engine, self.models = translate_settings(config)
        self.translator = DocumentTranslator(
            self.target, self.engine, self.models, str(config.get("untranslatable", "keep"))
        )
        self.batch_size = int(config.get("batch_size", 64))
        if self.batch_size < 1:
            raise ConfigError(f"translate batch_size must be >= 1, got {self.batch_size}")
        self.k1, self.b = bm25_params(config)
        threads = int(config.get("threads") or os.cpu_count() or 1)
        ensure_jvm()
        path = self.directory / subindex_name(self.target)
        if path.exists() and any(path.iterdir()):
            raise RuntimeError(f"translate index {path} already exists; build into an empty directory")
        self._sub = LuceneSubIndex(path, analyzer_for(self.target), threads)
        self._pending: dict[str, list[Document]] = {}
        self._langs: dict[str, str] = {}
        self._closed = False

    def add(self, doc: Document) -> None:
        """Queue ``doc``: indexed now if in the target language, else translated with its batch."""
        if self._closed:
            raise RuntimeError("TranslatedWriter.add() after close(); open a new writer")
        lang = doc.lang or UNKNOWN_LANG
        if doc.id in self._langs:
            raise ValueError(f"document id {doc.id!r} added twice to the translate channel")
        self._langs[doc.id] = lang
        if self.translator.translator(lang) is None:
            self._index([self.translator.untouched(doc)])
            return
        batch = self._pending.setdefault(lang, [])
        batch.append(doc)
        if len(batch) >= self.batch_size:
            self._translate(lang)

    def _translate(self, lang: str) -> None:
        docs = self._pending.pop(lang, [])
        if docs:
            self._index(self.translator.translate(lang, docs))

    def _index(self, docs: list[Document], flush: bool = False) -> None:
        for doc in docs:
            self._sub.queue(doc)
        if flush or len(self._sub.buffer) >= BATCH_SIZE:
            self._sub.flush()

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
        count = self._sub.verified_count()
        write_files(self.directory, langs_files(self._langs))
        if self.translator.untranslated:
            logger.warning(
                "translate channel: documents indexed untranslated: %s", self.translator.untranslated
            )
        return {
            "target": self.target,
            "engine": self.engine,
            "models": self.models,
            "engines": self.translator.engines(),
            "k1": self.k1,
            "b": self.b,
            "path": self._sub.path.name,
            "analyzer": self._sub.analyzer,
            "documents": count,
            "translated": dict(sorted(self.translator.translated.items())),
            "untranslated": dict(sorted(self.translator.untranslated.items())),
        }
