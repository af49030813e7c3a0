"""Incremental updates of a built translate channel: documents translated as at build, then BM25 updates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xlir.indexing.channels.base import StagedUpdater
from xlir.indexing.channels.bm25.analyzers import analyzer_for
from xlir.indexing.channels.bm25.store import subindex_name
from xlir.indexing.channels.bm25.updater import BM25Updater
from xlir.indexing.channels.translate.store import LANGS_FILE, UNKNOWN_LANG, langs_files, load_langs
from xlir.indexing.channels.translate.writer import DocumentTranslator, translate_settings
from xlir.indexing.documents import Document
from xlir.indexing.errors import IndexIncompleteError
from xlir.indexing.filecommit import commit_files


class TranslatedUpdater(StagedUpdater):
    """Incremental updates of a built translate channel (the ``ChannelUpdater`` protocol).

    New documents are translated exactly as the writer translated them (same target, engine, models and
    ``untranslatable`` policy, from the manifest details and channel config) and go through a
    :class:`xlir.indexing.channels.bm25.writer.BM25Updater` confined to the channel's one target-language Lucene index, so
    deletions are expunged and scores equal a fresh build's. ``langs.json`` (each id's original
    language) is rewritten with the batch.
    """

    def __init__(
        self, directory: Path | str, details: dict[str, Any], config: dict[str, Any] | None = None
    ) -> None:
        super().__init__(directory, details, config)
        target, engine, models = translate_settings(self.details)
        policy = str(self.config.get("untranslatable", "keep"))
        self.translator = DocumentTranslator(target, engine, models, policy)
        self._path = str(self.details.get("path", subindex_name(target)))
        langs_file = self.directory / LANGS_FILE
        if not langs_file.is_file() or not (self.directory / self._path).is_dir():
            raise IndexIncompleteError(
                f"the translate channel at {self.directory} is incomplete (langs.json or {self._path}/ missing): "
                "rebuild the index."
            )
        self._langs: dict[str, str] = load_langs(self.directory)
        lucene = {
            "k1": self.details.get("k1"),
            "b": self.details.get("b"),
            "subindexes": {
                target: {
                    "path": self._path,
                    "analyzer": self.details.get("analyzer") or analyzer_for(target),
                    "documents": int(self.details.get("documents", 0)),
                }
            },
        }
        self._lucene = BM25Updater(self.directory, lucene)

    def delete(self, ids: list[str]) -> None:
        """Remove these ids (absent ids are ignored)."""
        self._lucene.delete(ids)
        for docid in ids:
            self._langs.pop(docid, None)

    def add(self, docs: list[Document]) -> None:
        """Translate ``docs`` into the target language (per source language, batched) and index them."""
        by_lang: dict[str, list[Document]] = {}
        ready: list[Document] = []
        for doc in docs:
            lang = doc.lang or UNKNOWN_LANG
            self._langs[doc.id] = lang
            if self.translator.translator(lang) is None:
                ready.append(self.translator.untouched(doc))
            else:
                by_lang.setdefault(lang, []).append(doc)
        for lang, group in sorted(by_lang.items()):
            ready.extend(self.translator.translate(lang, group))
        # Every document goes into the one target-language index, whatever its original language.
        target = self.translator.target
        self._lucene.add(
            [
                doc
                if doc.lang == target
                else Document(id=doc.id, text=doc.text, lang=target, title=doc.title)
                for doc in ready
            ]
        )

    def close(self) -> dict[str, Any]:
        """Commit the Lucene changes and ``langs.json``; return the new details."""
        lucene = self._lucene.close()
        (info,) = lucene["subindexes"].values()
        langs = self._langs
        commit_files(self.directory, langs_files(langs))
        self.details["documents"] = int(info["documents"])
        # Counts of the documents the channel holds now, per original language (deletions included).
        engines = {**(self.details.get("engines") or {}), **self.translator.engines()}
        translated: dict[str, int] = {}
        untranslated: dict[str, int] = {}
        for lang in langs.values():
            if lang in engines:
                translated[lang] = translated.get(lang, 0) + 1
            elif lang != self.translator.target:
                untranslated[lang] = untranslated.get(lang, 0) + 1
        self.details.update(
            engines=dict(sorted(engines.items())),
            translated=dict(sorted(translated.items())),
            untranslated=dict(sorted(untranslated.items())),
        )
        return self.details

    def abort(self) -> None:
        """Discard the batch (nothing was committed)."""
        self._lucene.abort()
