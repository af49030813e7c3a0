"""The errors of evaluation that a user causes and can fix: a bad option, a file that is not there.

Each is a :class:`xlir.errors.UserError` (``xlir eval`` shows it as one line, exit status 2) and keeps the
built-in type callers of the Python API catch (``ValueError``, ``FileNotFoundError``). The malformed
files and collections have their own subclasses: :class:`xlir.eval.trec.TrecFormatError`,
:class:`xlir.eval.collection.CollectionError`.
"""

from __future__ import annotations

from xlir.errors import NotFoundError, UserError


class EvalError(UserError, ValueError):
    """A bad evaluation input or option: a measure name, a fusion method, a run tag, a language list..."""


class EvalFileNotFoundError(NotFoundError, FileNotFoundError):
    """A topics, qrels, run or corpus file that does not exist."""
