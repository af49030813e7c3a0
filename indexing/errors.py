"""The errors of building and opening an index that the user fixes: a bad setting, or an index to rebuild.

Raised from many modules (the config, every channel's writer and searcher, the docstore), so they live
here, below all of them. Each keeps the built-in exception callers caught before it existed as a
second base (``ValueError``, ``FileNotFoundError``).
"""

from __future__ import annotations

from xlir.errors import UserError


class ConfigError(UserError, ValueError):
    """A setting that cannot be used: an unknown channel, an option or config value out of range."""


class IndexDamagedError(UserError, ValueError):
    """The index on disk cannot be used as it is (inconsistent, or built by another xlir or model): rebuild it.

    A server cannot serve it until the operator rebuilds it: 503, not the client's fault.
    """

    http_status = 503


class IndexIncompleteError(UserError, FileNotFoundError):
    """A file the index needs is missing (an interrupted copy or build): rebuild the index."""

    http_status = 503
