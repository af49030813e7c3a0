"""The multi-vector channel's config section (``IndexConfig.multivector``), saved in the manifest."""

from __future__ import annotations

from dataclasses import dataclass


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
