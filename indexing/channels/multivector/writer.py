"""The multi-vector (late-interaction, ColBERT-style) channel writer: token vectors compressed PLAID-style.

Each document becomes a matrix of unit-length token vectors (:mod:`xlir.models.encoders.tokens`). ``close``
trains the codec on a sample of them (:mod:`xlir.indexing.channels.multivector.codec`), compresses every
token and writes the channel's files (:mod:`xlir.indexing.channels.multivector.store`). The searcher
(:mod:`xlir.indexing.channels.multivector.searcher`) generates candidates from the query tokens' nearest
centroids, ranks them by centroid-only MaxSim, and re-scores the best with decompressed vectors.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from xlir.indexing.channels.base import ChunkedWriter, positive_int
from xlir.indexing.channels.files import write_files
from xlir.indexing.channels.language_codes import DocumentLanguages, LanguageCodes
from xlir.indexing.channels.multivector.codec import (
    NBITS,
    SEED,
    ResidualCodec,
    default_centroids,
    reconstruction_cosine,
)
from xlir.indexing.channels.multivector.store import TokenStore, codec_files
from xlir.indexing.documents import Document, document_text
from xlir.indexing.errors import ConfigError
from xlir.models.encoders.token_base import TokenEncoder
from xlir.models.encoders.tokens import open_token_encoder

log = logging.getLogger(__name__)

#: Texts encoded per call (the encoder sorts each chunk by length).
CHUNK_TEXTS = 256
#: Token vectors k-means trains on at most (a seeded sample above that).
MAX_KMEANS_SAMPLE = 131_072


def multivector_text(doc: Document) -> str:
    """The text embedded for a document: title and text when it has a title (as the dense channel)."""
    return document_text(doc, " ", strip_title=True)


def _positive_int(config: dict[str, Any], key: str, default: int, minimum: int = 1) -> int:
    return positive_int(config, key, default, channel="multivector", minimum=minimum)


class MultiVectorWriter(ChunkedWriter):
    """Channel writer for late interaction: encodes each document's tokens, compresses them on ``close``.

    ``config`` is :class:`xlir.indexing.config.MultiVectorConfig` as a dict. ``encoder`` replaces the one the
    config describes (any :class:`~xlir.models.encoders.token_base.TokenEncoder`; its ``describe()`` must let the
    searcher rebuild it).
    """

    channel = "multivector"
    chunk_size = CHUNK_TEXTS

    def __init__(self, directory: Path, config: dict[str, Any], encoder: TokenEncoder | None = None) -> None:
        super().__init__(directory)
        self.config = dict(config)
        self.nbits = _positive_int(self.config, "nbits", 2)
        if self.nbits not in NBITS:
            raise ConfigError(f"multivector.nbits must be one of {NBITS} (got {self.nbits}); fix the config.")
        self.n_centroids = _positive_int(self.config, "centroids", 0, minimum=0)
        self.kmeans_iters = _positive_int(self.config, "kmeans_iters", 10)
        self.encoder = encoder if encoder is not None else open_token_encoder(self.config)
        self._vectors: list[np.ndarray] = []
        self._langs: list[int] = []
        self._lang_codes = LanguageCodes(channel="multivector")

    def _encode(self, docs: list[Document]) -> list[np.ndarray]:
        return self.encoder.encode_documents(
            [multivector_text(doc) for doc in docs], [doc.lang for doc in docs]
        )

    def _keep(self, docs: list[Document], encoded: list[np.ndarray]) -> None:
        self._langs.extend(self._lang_codes.code(doc.lang) for doc in docs)
        for doc, matrix in zip(docs, encoded, strict=True):
            if (
                len(matrix) == 0
            ):  # nothing but special tokens: keep one zero row so every document has a token
                log.warning(
                    "document text %r has no token vectors; it will rank last", multivector_text(doc)[:40]
                )
                matrix = np.zeros((1, self.encoder.dim), dtype=np.float32)
            self._vectors.append(np.asarray(matrix, dtype=np.float16))

    def close(self) -> dict[str, Any]:
        """Encode what is left, compress every token vector, write the channel; return the manifest details."""
        count = self._finish()
        started = time.perf_counter()
        lengths = np.asarray([len(v) for v in self._vectors], dtype=np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        vectors = np.concatenate(self._vectors)
        self._vectors.clear()
        total = len(vectors)
        k = self.n_centroids or default_centroids(total)
        rng = np.random.default_rng(SEED)
        sample_ids = np.sort(rng.choice(total, min(total, MAX_KMEANS_SAMPLE), replace=False))
        codec = ResidualCodec.train(
            vectors[sample_ids].astype(np.float32), k, nbits=self.nbits, iters=self.kmeans_iters
        )
        codes, packed = codec.compress(vectors)
        error = reconstruction_cosine(codec, vectors, codes, packed, sample_ids[:4096])
        del vectors
        k = len(codec.centroids)
        code_dtype = np.uint16 if k <= 65_536 else np.int32
        codes = codes.astype(code_dtype)
        documents = DocumentLanguages(
            self._docids, np.asarray(self._langs, dtype=np.int16), self._lang_codes.table()
        )
        tokens = TokenStore.build(codes, packed, offsets, k, documents)
        write_files(self.directory, {**codec_files(codec), **tokens.files()})
        token_bytes = codec.bytes_per_token + np.dtype(code_dtype).itemsize
        return {
            **self.encoder.describe(),
            "batch_size": int(self.config.get("batch_size", 32)),
            "device": str(self.config.get("device") or "auto"),
            "documents": count,
            "tokens": int(total),
            "tokens_per_document": round(total / count, 2),
            "centroids": int(k),
            "nbits": self.nbits,
            "ncells": _positive_int(self.config, "ncells", 2),
            "ndocs": _positive_int(self.config, "ndocs", 256),
            "bytes_per_token": int(token_bytes),
            "fp16_bytes_per_token": int(codec.dim * 2),
            "compression_ratio": round(codec.dim * 2 / token_bytes, 2),
            "reconstruction_cosine": round(error, 4),
            **self._encode_stats(count),
            "index_seconds": round(time.perf_counter() - started, 3),
        }
