"""Rerankers by name: :func:`reranker_for` loads each (name, device) once per process and picks the class
from the folder's ``reranker.json``."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from xlir.models.paths import shipped_or_path
from xlir.models.rerankers.adapter import AdapterReranker
from xlir.models.rerankers.base import (
    DEFAULT_RERANKER,
    RERANKER_CONFIG,
    RERANKERS_DIR,
    Reranker,
    RerankerError,
)
from xlir.models.rerankers.cross_encoder import CrossEncoderReranker

_CACHE: dict[tuple[str, str], Reranker] = {}
_CACHE_LOCK = threading.Lock()


def reranker_for(name_or_path: str | Path | None = None, device: str = "auto") -> Reranker:
    """A reranker by name, loaded once per process: ``None``/``"default"`` -> the shipped
    :data:`DEFAULT_RERANKER`; a shipped name or a folder with ``reranker.json`` -> :class:`AdapterReranker`
    (:class:`xlir.models.rerankers.gated.GatedReranker` where its ``kind`` is ``"gated"``);
    any other folder or cached hub id -> :class:`CrossEncoderReranker`."""
    name = str(name_or_path) if name_or_path not in (None, "", "default") else DEFAULT_RERANKER
    key = (name, device)
    with _CACHE_LOCK:
        if key not in _CACHE:
            folder = shipped_or_path(name, RERANKERS_DIR, RERANKER_CONFIG)
            if (folder / RERANKER_CONFIG).is_file():
                # imported here: the gated reranker's scorer module imports torch
                from xlir.models.rerankers.gated import GatedReranker

                cls = GatedReranker if is_gated(folder) else AdapterReranker
                _CACHE[key] = cls(name, device=device)
            elif name == DEFAULT_RERANKER:
                raise RerankerError(
                    f"the shipped reranker {DEFAULT_RERANKER!r} is missing from {RERANKERS_DIR}; reinstall xlir "
                    "or train one with `xlir train reranker` and pass its folder."
                )
            else:
                _CACHE[key] = CrossEncoderReranker(name, device=device)
        return _CACHE[key]


def is_gated(path: Path) -> bool:
    """Whether the reranker folder ``path`` holds a gated reranker (``"kind": "gated"`` in reranker.json)."""
    try:
        return json.loads((Path(path) / RERANKER_CONFIG).read_text("utf-8")).get("kind") == "gated"
    except (OSError, ValueError):
        return False
