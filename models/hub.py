"""The Hugging Face hub, never contacted: xlir loads models only from local folders and the local HF cache.

* :func:`offline_hub` - a block with ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1`` set;
* :func:`from_hub_cache` - the snapshot folder of a hub id the local cache already holds;
* :func:`hub_cache_dir` - where that cache is (for messages).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)


@contextmanager
def offline_hub() -> Iterator[None]:
    """Run a block with ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1`` so nothing contacts the hub."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(dict.fromkeys(keys, "1"))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def hub_cache_dir() -> str:
    """The local Hugging Face hub cache folder (``HF_HUB_CACHE``)."""
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover - huggingface_hub is a pinned dependency
        return "~/.cache/huggingface/hub"


def from_hub_cache(repo_id: str) -> str | None:
    """Local snapshot folder of ``repo_id`` if the HF cache already holds it, else None (never the network)."""
    try:
        from huggingface_hub import snapshot_download

        with offline_hub():
            folder = snapshot_download(repo_id, local_files_only=True)
    except Exception as exc:  # LocalEntryNotFoundError, HFValidationError, OfflineModeIsEnabled, ...
        logger.debug("%s is not in the Hugging Face cache: %s", repo_id, exc)
        return None
    return folder if Path(folder).is_dir() else None
