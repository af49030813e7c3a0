"""The one base class of every error a user can cause and fix.

A :class:`UserError` says what is wrong and what to do about it (a bad corpus line, an unknown
language or model, an empty query, a missing index). The CLI prints its message without a traceback
and exits with status 2; the server answers its ``http_status`` with ``{"error": message}``.
Anything else that escapes is a bug in xlir and is reported as one.

This module is the lowest layer: every other package may import it, it imports nothing of xlir.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the message names the problem and what to do."""

    #: the HTTP status the server answers with (400 bad request unless a subclass says otherwise).
    http_status: int = 400


class NotFoundError(UserError):
    """Something the user named (an index, a document, a collection, a model) does not exist."""

    http_status = 404


class ConflictError(UserError):
    """The request is valid but the current state forbids it (an index exists, a channel cannot be updated)."""

    http_status = 409
