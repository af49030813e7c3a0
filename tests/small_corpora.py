"""Two tiny, disjoint corpora (three documents each) for tests that build an index, then rebuild it."""

from __future__ import annotations

from xlir.indexing.documents import Document

V1 = [
    {"id": "v1-en-0", "text": "the harbour lighthouse keeps ships safe", "lang": "en"},
    {"id": "v1-en-1", "text": "a lighthouse keeper writes in his log", "lang": "en"},
    {"id": "v1-de-0", "text": "der Leuchtturm steht am Hafen", "lang": "de"},
]
V2 = [
    {"id": "v2-en-0", "text": "the orchard apples ripen in autumn", "lang": "en"},
    {"id": "v2-en-1", "text": "apple cider from the orchard", "lang": "en"},
    {"id": "v2-fr-0", "text": "les pommes du verger en automne", "lang": "fr"},
]


def documents(rows: list[dict]) -> list[Document]:
    """The rows as Documents."""
    return [Document(id=r["id"], text=r["text"], lang=r["lang"]) for r in rows]
