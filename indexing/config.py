"""Index configuration: small dataclasses composed into one config, saved in the manifest.

What is written at build time is read back at search time, so a searcher always uses exactly the
settings the index was built with (ColBERT's lesson).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

OnError = Literal["stop", "skip"]


@dataclass(frozen=True)
class BM25Config:
    """Lucene BM25 parameters (Pyserini's defaults for its Lucene indexes)."""

    k1: float = 0.9
    b: float = 0.4


@dataclass(frozen=True)
class LanguageConfig:
    """How a document's language is resolved when the corpus does not give one."""

    #: language assumed for every document without a ``lang`` field; None = detect each one.
    default: str | None = None
    #: documents whose detected language has a confidence below this are put in the neutral sub-index.
    min_confidence: float = 0.3


@dataclass(frozen=True)
class IndexConfig:
    """Everything an index build needs besides the corpus."""

    channels: tuple[str, ...] = ("bm25",)
    bm25: BM25Config = field(default_factory=BM25Config)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    #: "stop" at the first bad corpus line, or "skip" it and count it in the manifest.
    on_error: OnError = "stop"

    def channel_config(self, channel: str) -> dict[str, Any]:
        """The settings a channel's writer receives (its own section, or {})."""
        section = getattr(self, channel, None)
        return asdict(section) if section is not None else {}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["channels"] = list(self.channels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexConfig:
        return cls(
            channels=tuple(data.get("channels", ("bm25",))),
            bm25=BM25Config(**data.get("bm25", {})),
            language=LanguageConfig(**data.get("language", {})),
            on_error=data.get("on_error", "stop"),
        )
