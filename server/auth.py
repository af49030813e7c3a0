"""API keys for the write endpoints (``POST /documents``, ``DELETE /documents/{id}``).

A key comes from, in order: the ``api_key`` argument, a key file (``api_key_file``: the key on its first
line), or the ``XLIR_API_KEY`` environment variable. With no key configured, writes are disabled (403
that says how to enable them). Clients send ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``;
keys are compared in constant time.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from xlir.errors import UserError

API_KEY_ENV = "XLIR_API_KEY"


class AuthError(UserError):
    """A write request that is not allowed: ``http_status`` is 401 (no/wrong key) or 403 (writes disabled)."""

    def __init__(self, http_status: int, message: str) -> None:
        self.http_status = http_status
        super().__init__(message)


class ApiKeyConfigError(UserError, ValueError):
    """The API key the server was given cannot be used (empty, or its file unreadable)."""


def load_api_key(api_key: str | None = None, api_key_file: Path | str | None = None) -> str | None:
    """The configured key, or None (writes disabled). Raises :class:`ApiKeyConfigError` for an unusable key."""
    if api_key is not None:
        key = api_key.strip()
        if not key:
            raise ApiKeyConfigError("the API key is empty; give a non-empty key or none at all")
        return key
    if api_key_file is not None:
        path = Path(api_key_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ApiKeyConfigError(f"cannot read the API key file {path}: {exc.strerror or exc}") from exc
        key = lines[0].strip() if lines else ""
        if not key:
            raise ApiKeyConfigError(f"the API key file {path} is empty; put the key on its first line")
        return key
    key = os.environ.get(API_KEY_ENV, "").strip()
    return key or None


class ApiKeyCheck:
    """Checks the key a request presents against the configured one."""

    def __init__(self, key: str | None) -> None:
        self._key = key.encode("utf-8") if key else None

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def check(self, bearer: str | None, header_key: str | None) -> None:
        """Raise :class:`AuthError` unless one of the presented keys is the configured key."""
        if self._key is None:
            raise AuthError(
                403,
                "writes are disabled on this server: no API key is configured. Start it with the "
                f"environment variable {API_KEY_ENV} set (or an API key file) to enable POST/DELETE "
                "/documents.",
            )
        presented = [k for k in (bearer, header_key) if k]
        if not presented:
            raise AuthError(
                401,
                "this endpoint needs the API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
            )
        if not any(hmac.compare_digest(k.encode("utf-8"), self._key) for k in presented):
            raise AuthError(401, "the API key is wrong; check the key the server was started with.")
