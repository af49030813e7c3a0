"""The dense channel writer: sentence-transformers embeddings of every document in one FAISS index.

Documents are encoded as they arrive (a chunk of a few batches at a time, so that the encoder can sort
each chunk by length and pad little), and only their float32 embeddings are kept. ``close`` builds the
FAISS index and writes the channel directory (:mod:`xlir.indexing.channels.dense.store`).

Index kinds: ``flat`` (exact inner product), ``hnsw`` (graph, inner product), ``ivfpq`` (inverted lists
over product-quantized codes: compact, approximate), ``auto`` (flat below ``ann_threshold`` documents,
else hnsw). Vectors are L2-normalized, so inner product is cosine similarity.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from xlir.indexing.channels.base import ChunkedWriter, positive_int
from xlir.indexing.channels.dense.store import DenseStore
from xlir.indexing.channels.files import write_files
from xlir.indexing.channels.language_codes import DocumentLanguages, LanguageCodes
from xlir.indexing.documents import Document, document_text
from xlir.indexing.errors import ConfigError
from xlir.models.encoders.dense import SentenceTransformerEncoder

log = logging.getLogger(__name__)

INDEX_KINDS = ("auto", "flat", "hnsw", "ivfpq")
#: Fewer documents than this cannot train even 4-bit product quantizers (39 points per centroid, FAISS's
#: minimum); ``ivfpq`` then builds ``flat``.
MIN_IVFPQ_DOCUMENTS = 39 * 16
#: Texts encoded per call, in batches: length-sorting within a chunk keeps padding (and time) low.
CHUNK_BATCHES = 16
#: Vectors used to train IVF/PQ quantizers at most (a seeded sample of the corpus above that).
MAX_TRAINING_VECTORS = 100_000


def dense_text(doc: Document) -> str:
    """The text the dense channel embeds for a document: title and text when it has a title."""
    return document_text(doc, " ", strip_title=True)


class DenseWriter(ChunkedWriter):
    """Channel writer for dense retrieval: encodes each document and builds a FAISS index on ``close``.

    ``config`` is :class:`xlir.indexing.config.DenseConfig` as a dict: ``model``, ``batch_size``,
    ``max_length``, ``index``, ``ann_threshold``, ``hnsw_m``, ``ef_search``, ``device``.
    """

    channel = "dense"

    def __init__(self, directory: Path, config: dict[str, Any]) -> None:
        super().__init__(directory)
        self.model_name = str(config.get("model") or "multilingual-e5-small")
        self.index_kind = str(config.get("index", "auto"))
        if self.index_kind not in INDEX_KINDS:
            raise ConfigError(
                f"unknown dense index kind {self.index_kind!r}; choose one of {', '.join(INDEX_KINDS)}."
            )
        self.batch_size = positive_int(config, "batch_size", 32, channel="dense")
        self.max_length = positive_int(config, "max_length", 512, channel="dense")
        self.ann_threshold = positive_int(config, "ann_threshold", 50_000, channel="dense")
        self.hnsw_m = positive_int(config, "hnsw_m", 32, channel="dense")
        self.ef_search = positive_int(config, "ef_search", 128, channel="dense")
        self.encoder = SentenceTransformerEncoder(
            self.model_name,
            batch_size=self.batch_size,
            max_length=self.max_length,
            device=str(config.get("device") or "auto"),
        )
        self.chunk_size = self.batch_size * CHUNK_BATCHES
        self._vectors: list[np.ndarray] = []
        self._langs: list[int] = []
        self._lang_codes = LanguageCodes(channel="dense")

    def _encode(self, docs: list[Document]) -> np.ndarray:
        return self.encoder.encode_documents([dense_text(doc) for doc in docs])

    def _keep(self, docs: list[Document], vectors: np.ndarray) -> None:
        self._langs.extend(self._lang_codes.code(doc.lang) for doc in docs)
        self._vectors.append(vectors)

    def close(self) -> dict[str, Any]:
        """Encode what is left, build and write the FAISS index; return the manifest details."""
        count = self._finish()
        vectors = np.concatenate(self._vectors) if len(self._vectors) > 1 else self._vectors[0]
        self._vectors.clear()
        started = time.perf_counter()
        index, built, extra = build_faiss_index(
            vectors,
            self.index_kind,
            ann_threshold=self.ann_threshold,
            hnsw_m=self.hnsw_m,
            ef_search=self.ef_search,
        )
        del vectors
        codes = np.asarray(self._langs, dtype=np.int16)
        documents = DocumentLanguages(self._docids, codes, self._lang_codes.table())
        write_files(self.directory, DenseStore(index, documents).files())
        return {
            "model": self.model_name,
            "model_path": _model_path(self.model_name),
            "dim": self.encoder.dim,
            "index": built,
            "documents": count,
            "ef_search": self.ef_search,
            "hnsw_m": self.hnsw_m,
            **extra,
            "batch_size": self.batch_size,
            "max_length": self.encoder.max_length,
            "prompts": self.encoder.prompts,
            **self._encode_stats(count),
            "index_seconds": round(time.perf_counter() - started, 3),
        }


def _model_path(name: str) -> str:
    from xlir.models.registry import resolve_model

    return str(resolve_model(name))


def build_faiss_index(
    vectors: np.ndarray,
    kind: str = "auto",
    *,
    ann_threshold: int = 50_000,
    hnsw_m: int = 32,
    ef_search: int = 128,
) -> tuple[Any, str, dict[str, Any]]:
    """Build a FAISS inner-product index over ``vectors``.

    Returns ``(index, kind actually built, extra details)``: ``auto`` resolves to ``flat`` or ``hnsw``,
    and ``ivfpq`` over fewer than :data:`MIN_IVFPQ_DOCUMENTS` vectors falls back to ``flat`` (with a
    warning). The index is always a CPU index, ready to write.
    """
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise ValueError(f"expected a non-empty (n, dim) matrix of vectors, got shape {vectors.shape}")
    n, dim = vectors.shape
    if kind not in INDEX_KINDS:
        raise ConfigError(f"unknown dense index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}.")
    if kind == "auto":
        kind = "flat" if n < ann_threshold else "hnsw"
    if kind == "ivfpq" and n < MIN_IVFPQ_DOCUMENTS:
        log.warning(
            "ivfpq needs at least %d documents to train its quantizers; %d given, building an exact flat index",
            MIN_IVFPQ_DOCUMENTS,
            n,
        )
        kind = "flat"

    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return index, "flat", {}
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(40, 2 * hnsw_m)
        index.hnsw.efSearch = ef_search
        index.add(vectors)
        return index, "hnsw", {"ef_construction": index.hnsw.efConstruction}
    return _build_ivfpq(vectors)


def ivfpq_parameters(n: int, dim: int) -> tuple[int, int, int, int]:
    """(nlist, PQ sub-quantizers m, bits per code, nprobe) for ``n`` vectors of ``dim`` dimensions.

    nlist ~ 4 sqrt(n) with at least 39 training points per list; m = dim/8 for dim >= 128 (dim/4 below,
    or dim/2 when that does not divide dim), i.e. 8 (4) dimensions per code; 8-bit codes once there are enough vectors to train 256
    centroids (39 * 256), fewer bits below; nprobe = nlist/32, at least 16 (all lists when fewer).
    """
    nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
    per_code = 8 if dim >= 128 else 4
    m = next((dim // sub for sub in (per_code, 4, 2) if dim % sub == 0), dim)
    nbits = 8 if n >= 39 * 256 else max(4, min(8, int(math.log2(max(n // 39, 1)))))
    nprobe = min(nlist, max(16, nlist // 32))
    return nlist, m, nbits, nprobe


def _build_ivfpq(vectors: np.ndarray) -> tuple[Any, str, dict[str, Any]]:
    import faiss

    n, dim = vectors.shape
    nlist, m, nbits, nprobe = ivfpq_parameters(n, dim)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = 1234
    training = vectors
    if n > MAX_TRAINING_VECTORS:
        rng = np.random.default_rng(1234)
        training = vectors[np.sort(rng.choice(n, MAX_TRAINING_VECTORS, replace=False))]
    index = _train_and_add(index, training, vectors)
    index.nprobe = nprobe
    return index, "ivfpq", {"nlist": nlist, "pq_m": m, "pq_bits": nbits, "nprobe": nprobe}


def _train_and_add(index: Any, training: np.ndarray, vectors: np.ndarray) -> Any:
    """Train and fill ``index``, on a GPU when FAISS has one (then copied back to the CPU)."""
    import faiss

    if faiss.get_num_gpus() > 0 and hasattr(faiss, "StandardGpuResources"):
        try:
            resources = faiss.StandardGpuResources()
            gpu_index = faiss.index_cpu_to_gpu(resources, 0, index)
            gpu_index.train(training)
            gpu_index.add(vectors)
            return faiss.index_gpu_to_cpu(gpu_index)
        except (RuntimeError, AttributeError) as exc:  # a GPU build is an optimization, never required
            log.warning("building the FAISS index on the GPU failed (%s); building it on the CPU", exc)
    index.train(training)
    index.add(vectors)
    return index
