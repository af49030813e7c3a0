"""The dense channel's config section (``IndexConfig.dense``), saved in the manifest."""

from __future__ import annotations

from dataclasses import dataclass


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
