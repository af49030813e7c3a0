"""Lucene searches restricted to a set of document ids during the search (BM25 and translate channels).

A restricted search runs ``BooleanQuery(MUST: the analyzed query, FILTER: TermInSetQuery(id, allowed))``:
the FILTER clause scores nothing, so each hit's BM25 score is exactly the unrestricted one, and Lucene
collects only allowed documents, so ``k`` hits come back whenever ``k`` allowed documents share a term
with the query. The analyzed query is built as Anserini's ``SimpleSearcher.search(String, int)`` builds
it (``BagOfWordsQueryGenerator`` over the ``contents`` field with the searcher's analyzer); ``id`` is the
field Anserini indexes every document's id in (a ``StringField``).

Each allowed id crosses into the JVM as one ``BytesRef`` added to a ``java.util.ArrayList``; the JNI
classes below name exactly one constructor or method each, so jnius skips its per-call overload
resolution (about 3 microseconds an id: 0.3 s for 100k allowed ids). The
filter for the last few allowed sets is cached (see :class:`IdFilters`): a portal paging through one
filtered result list, or the facade searching two Lucene channels, builds it once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Set
from typing import Any

from xlir.indexing.channels.bm25.java import ensure_jvm

#: The Lucene field Anserini indexes document ids in (``io.anserini.index.Constants.ID``).
ID_FIELD = "id"
#: The field Anserini indexes the analyzed text in (``io.anserini.index.Constants.CONTENTS``).
CONTENTS_FIELD = "contents"

_lock = threading.Lock()
_java: dict[str, Any] = {}
#: jnius registers every Java class under (name, class parameters) and hands the registered class to later
#: ``autoclass`` calls of that name: the narrowed classes below register under a key of their own, so
#: ``autoclass("java.util.ArrayList")`` elsewhere still gets the full class.
_OWN = ("xlir.indexing.channels.bm25.idfilter",)


def _classes() -> dict[str, Any]:
    """The Java classes a restricted search needs (loaded once, after the JVM is started)."""
    with _lock:
        if _java:
            return _java
        ensure_jvm()
        from jnius import JavaClass, JavaMethod, MetaJavaClass, autoclass

        class BytesRef(JavaClass, metaclass=MetaJavaClass, classparams=_OWN):  # type: ignore[misc]
            __javaclass__ = "org/apache/lucene/util/BytesRef"
            __javaconstructor__ = [("([B)V", False)]

        class ArrayList(JavaClass, metaclass=MetaJavaClass, classparams=_OWN):  # type: ignore[misc]
            __javaclass__ = "java/util/ArrayList"
            __javaconstructor__ = [("(I)V", False)]
            add = JavaMethod("(Ljava/lang/Object;)Z")

        class TermInSetQuery(JavaClass, metaclass=MetaJavaClass, classparams=_OWN):  # type: ignore[misc]
            __javaclass__ = "org/apache/lucene/search/TermInSetQuery"
            __javaconstructor__ = [("(Ljava/lang/String;Ljava/util/Collection;)V", False)]

        occur = autoclass("org.apache.lucene.search.BooleanClause$Occur")
        _java.update(
            bytes_ref=BytesRef,
            array_list=ArrayList,
            term_in_set=TermInSetQuery,
            builder=autoclass("org.apache.lucene.search.BooleanQuery$Builder"),
            must=occur.MUST,
            filter=occur.FILTER,
            generator=autoclass("io.anserini.search.query.BagOfWordsQueryGenerator")(),
        )
        return _java


class IdFilters:
    """Lucene filters on the id field for allowed sets, the last ``size`` of them kept (thread-safe)."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._cache: OrderedDict[frozenset[str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, allowed: Set[str]) -> Any:
        """The ``TermInSetQuery`` matching exactly the documents whose id is in ``allowed``."""
        key = allowed if isinstance(allowed, frozenset) else frozenset(allowed)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        java = _classes()
        bytes_ref, terms = java["bytes_ref"], java["array_list"](len(key))
        add = terms.add
        for docid in key:
            add(bytes_ref(docid.encode("utf-8")))
        query = java["term_in_set"](ID_FIELD, terms)
        with self._lock:
            self._cache[key] = query
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return query

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


def restricted_query(searcher: Any, text: str, id_filter: Any) -> Any:
    """``text`` analyzed as ``searcher.search(text, k)`` would, restricted to the documents ``id_filter``
    matches (a non-scoring FILTER clause)."""
    java = _classes()
    query = java["generator"].buildQuery(CONTENTS_FIELD, searcher.get_analyzer(), text)
    builder = java["builder"]()
    builder.add(query, java["must"])
    builder.add(id_filter, java["filter"])
    return builder.build()
