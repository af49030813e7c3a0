"""Evaluation collections in the ``shared/data`` layout, and the cross-lingual pairs they define.

Layout (see ``shared/data/README.md``)::

    <root>/corpus/<name>.jsonl   documents   {"id", "text", "lang"}
    <root>/queries/<lang>.tsv    topics      qid<TAB>text
    <root>/qrels/<name>.txt      judgments   qid 0 docid rel, for the documents of corpus/<name>

A corpus/qrels ``<name>`` is either a language (XQuAD: ``de``, ``en``...) or ``<lang>-for-<qlang>``, a
document side made for one query language (Tatoeba: ``eng-for-fra`` is the English side of the French
sentences). :meth:`Collection.pair` resolves both: ``pair("fra", "eng")`` on Tatoeba uses
``queries/fra.tsv``, ``corpus/eng-for-fra.jsonl`` and ``qrels/eng-for-fra.txt``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from xlir.eval.errors import EvalError
from xlir.eval.trec import Qrels, Topics, read_qrels, read_topics
from xlir.models.paths import data_root as shared_data_root

logger = logging.getLogger(__name__)

_FOR = "-for-"


class CollectionError(EvalError):
    """A collection is missing, malformed, or has no such language/pair; the message says what exists."""


@dataclass(frozen=True)
class Pool:
    """The multilingual pool of a collection: every corpus file, judged by the union of all qrels."""

    corpus_paths: tuple[Path, ...]
    qrels: Qrels


@dataclass(frozen=True)
class Collection:
    """One collection directory (``corpus/``, ``queries/``, ``qrels/``)."""

    root: Path

    def __post_init__(self) -> None:
        root = Path(self.root)
        object.__setattr__(self, "root", root)
        if not root.is_dir():
            raise CollectionError(f"collection directory {root} does not exist; check the path")
        lacking = [sub for sub in ("corpus", "queries", "qrels") if not (root / sub).is_dir()]
        if lacking:
            raise CollectionError(
                f"{root} is not a collection: it lacks {lacking}; a collection has corpus/<name>.jsonl, "
                "queries/<lang>.tsv and qrels/<name>.txt"
            )

    @classmethod
    def named(cls, name: str, data_root: Path | None = None) -> Collection:
        """Open ``<data_root>/<name>`` (``data_root`` defaults to :func:`xlir.models.paths.data_root`)."""
        root = Path(data_root) if data_root is not None else shared_data_root()
        if not (root / name).is_dir():
            known = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
            raise CollectionError(f"no collection {name!r} under {root} (available: {known})")
        return cls(root / name)

    @classmethod
    def at(cls, path: str | Path) -> Collection:
        """The collection directory ``path``, or, when no such path exists, the one of that name under the
        data root (``xquad`` for ``$XLIR_DATA/xquad``)."""
        path = Path(path)
        if not path.exists() and len(path.parts) == 1 and (shared_data_root() / path.name).is_dir():
            return cls(shared_data_root() / path.name)
        return cls(path)

    @property
    def name(self) -> str:
        return self.root.name

    # --- what exists ----------------------------------------------------------------------------------

    def corpus_names(self) -> list[str]:
        """Stems of ``corpus/*.jsonl`` (``de``, or ``eng-for-fra``)."""
        return sorted(path.stem for path in (self.root / "corpus").glob("*.jsonl"))

    def query_languages(self) -> list[str]:
        """Languages with a topics file ``queries/<lang>.tsv``."""
        return sorted(path.stem for path in (self.root / "queries").glob("*.tsv"))

    def document_languages(self) -> list[str]:
        """Languages of the corpora (``eng-for-fra`` counts as ``eng``)."""
        return sorted({name.split(_FOR, 1)[0] for name in self.corpus_names()})

    def languages(self) -> list[str]:
        """Every language that occurs as a query or a document language."""
        return sorted(set(self.query_languages()) | set(self.document_languages()))

    # --- single files ---------------------------------------------------------------------------------

    def corpus_path(self, lang: str, query_lang: str | None = None) -> Path:
        """The corpus file for document language ``lang`` (or a corpus name such as ``eng-for-fra``).

        Where a language has one corpus per query language (Tatoeba's ``eng``), give ``query_lang``.
        """
        return self.root / "corpus" / f"{self._doc_name(lang, query_lang)}.jsonl"

    def qrels_path(self, lang: str, query_lang: str | None = None) -> Path:
        """The qrels file judging :meth:`corpus_path` ``(lang, query_lang)``."""
        name = self._doc_name(lang, query_lang)
        path = self.root / "qrels" / f"{name}.txt"
        if not path.is_file():
            raise CollectionError(f"{self.name}: corpus {name!r} has no qrels file {path}")
        return path

    def queries(self, lang: str) -> Topics:
        """Topics ``{qid: text}`` of query language ``lang``."""
        path = self.root / "queries" / f"{lang}.tsv"
        if not path.is_file():
            raise CollectionError(
                f"{self.name} has no queries in {lang!r}; query languages: {', '.join(self.query_languages())}"
            )
        return read_topics(path)

    def qrels(self, lang: str, query_lang: str | None = None) -> Qrels:
        """All judgments for the corpus of ``lang`` (every query language's queries)."""
        return read_qrels(self.qrels_path(lang, query_lang))

    # --- tasks ----------------------------------------------------------------------------------------

    def pair(self, query_lang: str, doc_lang: str) -> tuple[Topics, Path, Qrels]:
        """A cross-lingual task: topics in ``query_lang``, the ``doc_lang`` corpus, and its qrels.

        The qrels are restricted to the returned topics (the files hold every query language's
        judgments), so that counting unanswered judged queries as 0 is right for this pair.
        """
        topics = self.queries(query_lang)
        corpus = self.corpus_path(doc_lang, query_lang)
        qrels = self.qrels(doc_lang, query_lang)
        restricted = {qid: qrels[qid] for qid in topics if qid in qrels}
        if not restricted:
            raise CollectionError(
                f"{self.name}: no {query_lang!r} query is judged in {self.qrels_path(doc_lang, query_lang)}; "
                "the pair has nothing to evaluate"
            )
        unjudged = len(topics) - len(restricted)
        if unjudged:
            logger.warning(
                "%s %s->%s: %d of %d topics have no judgments",
                self.name,
                query_lang,
                doc_lang,
                unjudged,
                len(topics),
            )
        return topics, corpus, restricted

    def pool(self) -> Pool:
        """Every corpus file, judged by the union of every qrels file."""
        union: Qrels = {}
        for path, qrels in self.corpus_qrels(self.corpus_names()):
            for qid, docs in qrels.items():
                target = union.setdefault(qid, {})
                for docid, rel in docs.items():
                    if target.get(docid, rel) != rel:
                        raise CollectionError(
                            f"{path}: query {qid!r} judges {docid!r} {rel}, another qrels file says "
                            f"{target[docid]}; fix one of them"
                        )
                    target[docid] = rel
        paths = tuple(self.root / "corpus" / f"{name}.jsonl" for name in self.corpus_names())
        return Pool(corpus_paths=paths, qrels=union)

    def corpus_qrels(self, names: Iterable[str]) -> Iterator[tuple[Path, Qrels]]:
        """Each named corpus's qrels file and judgments; a corpus without one is skipped with a warning."""
        for name in names:
            path = self.root / "qrels" / f"{name}.txt"
            if not path.is_file():
                logger.warning(
                    "%s: corpus %r has no qrels file; its documents are all unjudged", self.name, name
                )
                continue
            yield path, read_qrels(path)

    # --- internals ------------------------------------------------------------------------------------

    def _doc_name(self, lang: str, query_lang: str | None) -> str:
        names = self.corpus_names()
        if query_lang is not None and f"{lang}{_FOR}{query_lang}" in names:
            return f"{lang}{_FOR}{query_lang}"
        if lang in names:
            return lang
        per_query = [name for name in names if name.startswith(f"{lang}{_FOR}")]
        if per_query:
            made_for = sorted(name.split(_FOR, 1)[1] for name in per_query)
            if query_lang is None:
                raise CollectionError(
                    f"{self.name} has one {lang!r} corpus per query language; say which (query_lang=...) or "
                    f"name it ({per_query[0]!r}); made for: {', '.join(made_for)}"
                )
            raise CollectionError(
                f"{self.name} has no {lang!r} corpus for {query_lang!r} queries; {lang!r} corpora exist for "
                f"query languages: {', '.join(made_for)}"
            )
        raise CollectionError(
            f"{self.name} has no {lang!r} corpus; document languages: {', '.join(self.document_languages())}"
        )
