"""The Document record, the corpus readers that produce it, and the errors they raise.

Readers stream: they yield one :class:`Document` at a time and never hold a corpus in memory.
Every document carries ``origin`` ("file:line") so that a later stage (duplicate ids, empty text)
can point the user at the exact line to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xlir.errors import UserError


@dataclass(frozen=True, slots=True)
class Document:
    """One retrievable unit: an id, its text, and what is known about it."""

    id: str
    text: str
    lang: str | None = None
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)
    origin: str = field(default="", compare=False)


_new = object.__new__
_SET_ID, _SET_TEXT, _SET_LANG, _SET_TITLE, _SET_METADATA, _SET_ORIGIN = (
    Document.__dict__[name].__set__ for name in ("id", "text", "lang", "title", "metadata", "origin")
)


def make_document(
    id: str,  # noqa: A002  (the field's name)
    text: str,
    lang: str | None,
    title: str | None,
    metadata: dict[str, Any],
    origin: str,
) -> Document:
    """A :class:`Document` with every field given, built without the dataclass ``__init__``.

    The same object ``Document(id, text, lang, title, metadata, origin)`` makes, at about a third of the
    cost (the frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``); for
    readers that create one per corpus line. No field is checked or defaulted: pass a fresh
    ``metadata`` dict per document.
    """
    doc = _new(Document)
    _SET_ID(doc, id)
    _SET_TEXT(doc, text)
    _SET_LANG(doc, lang)
    _SET_TITLE(doc, title)
    _SET_METADATA(doc, metadata)
    _SET_ORIGIN(doc, origin)
    return doc


class CorpusError(UserError, ValueError):
    """A corpus problem a user can fix: names the place (``file:line``), the problem and what to do."""

    def __init__(self, where: str, problem: str, hint: str, reason: str = "invalid") -> None:
        self.where = where
        self.problem = problem
        self.hint = hint
        self.reason = reason
        super().__init__(f"{where}: {problem}. {hint}")


def document_text(doc: Document, separator: str, *, strip_title: bool = False) -> str:
    """What a channel encodes (or a reranker reads) of ``doc``: its title, ``separator``, its text.

    A document without a title gives its text alone. Each caller states its own separator (and
    ``strip_title``: the title stripped, and a blank one ignored), because the texts a model was
    built or trained on must stay byte-identical: dense and multivector ``" "`` with ``strip_title``,
    sparse and BM25 ``"\\n"``, the rerankers ``". "``.
    """
    title = doc.title.strip() if strip_title and doc.title else doc.title
    return f"{title}{separator}{doc.text}" if title else doc.text
