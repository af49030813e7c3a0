"""The multi-vector (late-interaction, ColBERT-style) channel writer: token vectors compressed PLAID-style.

Each document becomes a matrix of unit-length token vectors (:mod:`xlir.models.encoders.tokens`). ``close``
compresses them as ColBERTv2/PLAID do: k-means centroids over a sample of the token vectors, then per token
its nearest centroid's id and its residual (vector minus centroid) quantized to ``nbits`` bits per
dimension against per-dimension quantile buckets. Files of the channel directory:

- ``centroids.npy`` (K x dim float32), ``bucket_cutoffs.npy`` (dim x 2^b-1), ``bucket_weights.npy``
  (dim x 2^b): the codec;
- ``codes.npy`` (uint16 or int32, one per token) and ``residuals.npy`` (uint8, dim*b/8 bytes per token);
- ``doc_offsets.npy`` (int64, documents+1): document ``i`` owns tokens ``offsets[i]:offsets[i+1]``;
- ``ivf.npy`` / ``ivf_offsets.npy``: for each centroid, the documents having a token assigned to it (the
  candidate generator);
- ``docids.json``, ``langs.npy`` (int16, -1 unknown), ``languages.json``: ids and languages, as in dense.

A token costs ``dim*nbits/8 + 2`` (or ``+ 4`` above 65,536 centroids) bytes instead of ``dim*2`` in fp16.
The searcher (:mod:`xlir.indexing.channels.multivector.searcher`) generates candidates from the query tokens' nearest centroids,
ranks them by centroid-only MaxSim, and re-scores the best with decompressed vectors.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from xlir.indexing.documents import Document
from xlir.indexing.language_codes import LanguageCodes
from xlir.models.encoders.tokens import TokenEncoder, open_token_encoder

log = logging.getLogger(__name__)

CENTROIDS_FILE = "centroids.npy"
CUTOFFS_FILE = "bucket_cutoffs.npy"
WEIGHTS_FILE = "bucket_weights.npy"
CODES_FILE = "codes.npy"
RESIDUALS_FILE = "residuals.npy"
OFFSETS_FILE = "doc_offsets.npy"
IVF_FILE = "ivf.npy"
IVF_OFFSETS_FILE = "ivf_offsets.npy"
DOCIDS_FILE = "docids.json"
LANGS_FILE = "langs.npy"
LANGUAGES_FILE = "languages.json"

NBITS = (1, 2, 4, 8)
#: Texts encoded per call (the encoder sorts each chunk by length).
CHUNK_TEXTS = 256
#: Token vectors k-means trains on at most (a seeded sample above that).
MAX_KMEANS_SAMPLE = 131_072
SEED = 1234


def document_text(doc: Document) -> str:
    """The text embedded for a document: title and text when it has a title (as the dense channel)."""
    if doc.title and doc.title.strip():
        return f"{doc.title.strip()} {doc.text}"
    return doc.text


def default_centroids(num_tokens: int) -> int:
    """PLAID-style centroid count: a power of two near ``4 * sqrt(tokens)``, at most the number of tokens."""
    if num_tokens <= 1:
        return 1
    k = 2 ** int(math.floor(math.log2(max(1.0, 4 * math.sqrt(num_tokens)))))
    return int(max(1, min(k, num_tokens, 65_536)))


def train_centroids(sample: np.ndarray, k: int, iters: int = 10, seed: int = SEED) -> np.ndarray:
    """Spherical k-means centroids (k x dim, float32, unit rows) of ``sample`` (faiss; torch where it is absent)."""
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    k = int(min(k, len(sample)))
    try:
        import faiss
    except ImportError:  # e.g. a GPU machine without faiss: the same algorithm in torch
        return _torch_kmeans(sample, k, iters, seed)
    kmeans = faiss.Kmeans(
        sample.shape[1], k, niter=iters, seed=seed, spherical=True, verbose=False, min_points_per_centroid=1
    )
    kmeans.cp.max_points_per_centroid = max(256, math.ceil(len(sample) / k))
    kmeans.train(sample)
    return _unit(kmeans.centroids)


def _torch_kmeans(sample: np.ndarray, k: int, iters: int, seed: int) -> np.ndarray:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    x = torch.from_numpy(sample).to(device)
    gen = torch.Generator().manual_seed(seed)
    centroids = x[torch.randperm(len(x), generator=gen)[:k].to(device)].clone()
    for _ in range(iters):
        assign = torch.cat([(part @ centroids.T).argmax(1) for part in x.split(65_536)])
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k)
        empty = counts == 0
        sums[empty] = centroids[empty]
        centroids = torch.nn.functional.normalize(sums, dim=1)
    return _unit(centroids.cpu().numpy())


def _unit(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    return np.ascontiguousarray(matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12))


def assign_centroids(vectors: np.ndarray, centroids: np.ndarray, batch: int = 65_536) -> np.ndarray:
    """Index of the nearest (largest inner product) centroid of each row, int64."""
    out = np.empty(len(vectors), dtype=np.int64)
    c = np.ascontiguousarray(centroids.T, dtype=np.float32)
    for start in range(0, len(vectors), batch):
        part = np.asarray(vectors[start : start + batch], dtype=np.float32)
        out[start : start + batch] = np.argmax(part @ c, axis=1)
    return out


class ResidualCodec:
    """Centroids plus per-dimension quantile buckets for residuals: compress and decompress token vectors."""

    def __init__(self, centroids: np.ndarray, cutoffs: np.ndarray, weights: np.ndarray, nbits: int) -> None:
        if nbits not in NBITS:
            raise ValueError(f"nbits must be one of {NBITS} (got {nbits}).")
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.cutoffs = np.ascontiguousarray(cutoffs, dtype=np.float32)
        self.weights = np.ascontiguousarray(weights, dtype=np.float32)
        self.nbits = int(nbits)
        self.dim = int(self.centroids.shape[1])
        if (self.dim * self.nbits) % 8:
            raise ValueError(f"dim * nbits must be a multiple of 8 (dim {self.dim}, nbits {self.nbits}).")
        self.bytes_per_token = self.dim * self.nbits // 8
        shifts = np.arange(0, 8, self.nbits, dtype=np.uint8)
        self._shifts = shifts
        self._mask = np.uint8((1 << self.nbits) - 1)
        self._dims = np.arange(self.dim)
        # Decompression table: for residual byte j and its value, the weights of the dimensions it packs.
        per_byte = 8 // self.nbits
        values = np.arange(256, dtype=np.uint8)
        buckets = (values[:, None] >> shifts) & self._mask  # (256, per_byte)
        dims = np.arange(self.bytes_per_token)[:, None, None] * per_byte + np.arange(
            per_byte
        )  # (B, 1, per_byte)
        self._lut = np.ascontiguousarray(
            self.weights[dims, buckets[None]], dtype=np.float32
        )  # (B, 256, per_byte)
        self._flat_lut = self._lut.reshape(-1, per_byte)
        self._lut_offsets = np.arange(self.bytes_per_token, dtype=np.intp) * 256

    @classmethod
    def train(
        cls, sample: np.ndarray, k: int, nbits: int = 2, iters: int = 10, seed: int = SEED
    ) -> ResidualCodec:
        """Fit centroids and residual buckets on ``sample`` (unit token vectors)."""
        if nbits not in NBITS:
            raise ValueError(f"multivector.nbits must be one of {NBITS} (got {nbits}); fix the config.")
        centroids = train_centroids(sample, k, iters=iters, seed=seed)
        residual = sample - centroids[assign_centroids(sample, centroids)]
        levels = 1 << nbits
        cut_q = np.arange(1, levels) / levels
        weight_q = (np.arange(levels) + 0.5) / levels
        cutoffs = np.quantile(residual, cut_q, axis=0).T  # dim x (levels-1)
        weights = np.quantile(residual, weight_q, axis=0).T  # dim x levels
        return cls(centroids, cutoffs, weights, nbits)

    def compress(self, vectors: np.ndarray, batch: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
        """(centroid ids int64, packed residual codes uint8 ``(n, bytes_per_token)``) of ``vectors``."""
        n = len(vectors)
        codes = assign_centroids(vectors, self.centroids, batch)
        packed = np.empty((n, self.bytes_per_token), dtype=np.uint8)
        per_byte = 8 // self.nbits
        for start in range(0, n, batch):
            part = np.asarray(vectors[start : start + batch], dtype=np.float32)
            residual = part - self.centroids[codes[start : start + batch]]
            buckets = np.zeros(residual.shape, dtype=np.uint8)
            for j in range(self.cutoffs.shape[1]):
                buckets += residual > self.cutoffs[:, j]
            grouped = buckets.reshape(len(part), -1, per_byte) << self._shifts
            packed[start : start + batch] = np.bitwise_or.reduce(grouped, axis=2)
        return codes, packed

    def decompress(self, codes: np.ndarray, packed: np.ndarray) -> np.ndarray:
        """Unit-length float32 vectors from centroid ids and packed residual codes."""
        packed = np.asarray(packed, dtype=np.uint8)
        # One flat gather (byte j's value v is row j*256+v of the table): ~4x faster than indexing the
        # 3-d table with two index arrays, which numpy does through its general fancy-indexing path.
        rows = packed.astype(np.intp) + self._lut_offsets
        vectors = np.take(self._flat_lut, rows, axis=0).reshape(len(packed), self.dim)
        vectors += self.centroids[np.asarray(codes, dtype=np.int64)]
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
        vectors /= np.maximum(norms, 1e-12)[:, None]
        return vectors

    def save(self, directory: Path) -> None:
        np.save(directory / CENTROIDS_FILE, self.centroids)
        np.save(directory / CUTOFFS_FILE, self.cutoffs)
        np.save(directory / WEIGHTS_FILE, self.weights)

    @classmethod
    def load(cls, directory: Path, nbits: int) -> ResidualCodec:
        return cls(
            np.load(directory / CENTROIDS_FILE),
            np.load(directory / CUTOFFS_FILE),
            np.load(directory / WEIGHTS_FILE),
            nbits,
        )


def _positive_int(config: dict[str, Any], key: str, default: int, minimum: int = 1) -> int:
    value = config.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"multivector.{key} must be an integer >= {minimum} (got {value!r}); fix the multivector config."
        )
    return value


class MultiVectorWriter:
    """Channel writer for late interaction: encodes each document's tokens, compresses them on ``close``.

    ``config`` is :class:`xlir.indexing.config.MultiVectorConfig` as a dict. ``encoder`` replaces the one the
    config describes (any :class:`~xlir.models.encoders.tokens.TokenEncoder`; its ``describe()`` must let the
    searcher rebuild it).
    """

    def __init__(self, directory: Path, config: dict[str, Any], encoder: TokenEncoder | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config = dict(config)
        self.nbits = _positive_int(self.config, "nbits", 2)
        if self.nbits not in NBITS:
            raise ValueError(f"multivector.nbits must be one of {NBITS} (got {self.nbits}); fix the config.")
        self.n_centroids = _positive_int(self.config, "centroids", 0, minimum=0)
        self.kmeans_iters = _positive_int(self.config, "kmeans_iters", 10)
        self.encoder = encoder if encoder is not None else open_token_encoder(self.config)
        self._texts: list[str] = []
        self._text_langs: list[str | None] = []
        self._vectors: list[np.ndarray] = []
        self._docids: list[str] = []
        self._langs: list[int] = []
        self._lang_codes = LanguageCodes(channel="multivector")
        self._encode_seconds = 0.0
        self._closed = False

    def add(self, doc: Document) -> None:
        """Queue one document; its text is encoded with the next full chunk."""
        if self._closed:
            raise RuntimeError("this multivector writer is closed; open a new one to index more documents.")
        self._docids.append(doc.id)
        self._langs.append(self._lang_codes.code(doc.lang))
        self._texts.append(document_text(doc))
        self._text_langs.append(doc.lang)
        if len(self._texts) >= CHUNK_TEXTS:
            self._flush()

    def close(self) -> dict[str, Any]:
        """Encode what is left, compress every token vector, write the channel; return the manifest details."""
        if self._closed:
            raise RuntimeError("this multivector writer is already closed.")
        self._flush()
        self._closed = True
        if not self._docids:
            raise ValueError("the multivector channel received no documents; there is nothing to index.")
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
        error = _reconstruction_error(codec, vectors, codes, packed, sample_ids[:4096])
        del vectors
        k = len(codec.centroids)
        code_dtype = np.uint16 if k <= 65_536 else np.int32
        codec.save(self.directory)
        np.save(self.directory / CODES_FILE, codes.astype(code_dtype))
        np.save(self.directory / RESIDUALS_FILE, packed)
        np.save(self.directory / OFFSETS_FILE, offsets)
        ivf, ivf_offsets = _inverted_lists(codes, offsets, k)
        np.save(self.directory / IVF_FILE, ivf)
        np.save(self.directory / IVF_OFFSETS_FILE, ivf_offsets)
        (self.directory / DOCIDS_FILE).write_text(json.dumps(self._docids, ensure_ascii=False), "utf-8")
        np.save(self.directory / LANGS_FILE, np.asarray(self._langs, dtype=np.int16))
        table = self._lang_codes.table()
        (self.directory / LANGUAGES_FILE).write_text(json.dumps(table), "utf-8")
        count = len(self._docids)
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
            "encode_seconds": round(self._encode_seconds, 3),
            "docs_per_second": round(count / self._encode_seconds, 2) if self._encode_seconds > 0 else None,
            "index_seconds": round(time.perf_counter() - started, 3),
        }

    def _flush(self) -> None:
        if not self._texts:
            return
        started = time.perf_counter()
        encoded = self.encoder.encode_documents(self._texts, self._text_langs)
        self._encode_seconds += time.perf_counter() - started
        for text, matrix in zip(self._texts, encoded, strict=True):
            if (
                len(matrix) == 0
            ):  # nothing but special tokens: keep one zero row so every document has a token
                log.warning("document text %r has no token vectors; it will rank last", text[:40])
                matrix = np.zeros((1, self.encoder.dim), dtype=np.float32)
            self._vectors.append(np.asarray(matrix, dtype=np.float16))
        self._texts, self._text_langs = [], []


def _reconstruction_error(
    codec: ResidualCodec, vectors: np.ndarray, codes: np.ndarray, packed: np.ndarray, ids: np.ndarray
) -> float:
    """Mean cosine between original and decompressed token vectors over ``ids`` (a sample)."""
    original = _unit(vectors[ids])
    restored = codec.decompress(codes[ids], packed[ids])
    return float(np.mean(np.sum(original * restored, axis=1)))


def _inverted_lists(codes: np.ndarray, offsets: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each centroid, the sorted unique documents with a token assigned to it (CSR: ids, offsets)."""
    doc_of_token = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
    pairs = np.unique(codes.astype(np.int64) * (len(offsets)) + doc_of_token)
    cells, docs = np.divmod(pairs, len(offsets))
    ivf_offsets = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(np.bincount(cells, minlength=k), out=ivf_offsets[1:])
    return docs.astype(np.int32), ivf_offsets


class MultiVectorUpdater:
    """Incremental updates of a built multivector channel (the ``ChannelUpdater`` protocol).

    New documents are encoded with the recorded encoder and compressed with the channel's existing codec
    (centroids and residual buckets stay as trained at build time, as in PLAID's index updates); deleted
    documents' tokens are dropped. ``close`` rewrites codes, residuals, offsets, the centroid -> documents
    lists, ids and languages together (:func:`xlir.indexing.filecommit.commit_files`). A document's score
    depends only on its own tokens, so untouched documents score exactly as before; the centroids were
    trained on the corpus as built, so after large changes a rebuild compresses new text better
    (``reconstruction_cosine`` in the manifest is from the build).
    """

    def __init__(
        self, directory: Path | str, details: dict[str, Any], config: dict[str, Any] | None = None
    ) -> None:
        from xlir.indexing.filecommit import recover
        from xlir.indexing.pending import PendingBatch

        self.directory = Path(directory)
        recover(self.directory)
        self.details = dict(details)
        missing = [
            n
            for n in (CODES_FILE, RESIDUALS_FILE, OFFSETS_FILE, DOCIDS_FILE)
            if not (self.directory / n).is_file()
        ]
        if missing:
            raise FileNotFoundError(
                f"the multivector channel at {self.directory} is incomplete (missing {', '.join(missing)}): "
                "rebuild the index."
            )
        self.codec = ResidualCodec.load(self.directory, int(self.details.get("nbits", 2)))
        self._codes = np.load(self.directory / CODES_FILE)
        self._residuals = np.load(self.directory / RESIDUALS_FILE)
        self._offsets = np.load(self.directory / OFFSETS_FILE)
        docids: list[str] = json.loads((self.directory / DOCIDS_FILE).read_text("utf-8"))
        self._langs = np.load(self.directory / LANGS_FILE)
        table: list[str] = json.loads((self.directory / LANGUAGES_FILE).read_text("utf-8"))
        if not (len(docids) == len(self._langs) == len(self._offsets) - 1):
            raise ValueError(
                f"the multivector channel at {self.directory} is inconsistent: rebuild the index."
            )
        self._lang_codes = LanguageCodes(table, channel="multivector")
        self._batch: PendingBatch[tuple[int, np.ndarray, np.ndarray]] = PendingBatch(docids)
        self._encoder: TokenEncoder | None = None
        self._closed = False

    def delete(self, ids: list[str]) -> None:
        """Forget these ids (ids the channel does not hold are ignored)."""
        self._batch.delete(ids)

    def add(self, docs: list[Document]) -> None:
        """Encode and compress ``docs`` with the recorded encoder and the built codec."""
        if not docs:
            return
        self._batch.delete([doc.id for doc in docs])
        if self._encoder is None:
            self._encoder = open_token_encoder(self.details)
        encoded = self._encoder.encode_documents([document_text(d) for d in docs], [d.lang for d in docs])
        for doc, matrix in zip(docs, encoded, strict=True):
            vectors = np.asarray(matrix, dtype=np.float16)  # as the writer keeps them before compressing
            if len(vectors) == 0:
                vectors = np.zeros((1, self.codec.dim), dtype=np.float16)
            codes, packed = self.codec.compress(vectors)
            self._batch.add(doc.id, (self._lang_codes.code(doc.lang), codes, packed))

    def close(self) -> dict[str, Any]:
        """Write the channel without the deleted documents and with the new ones; return the new details."""
        from xlir.indexing.filecommit import commit_files

        self._closed = True
        batch = self._batch
        if batch.changed:
            lengths = np.diff(self._offsets)
            token_keep = np.repeat(batch.keep, lengths)
            added = list(batch.added.values())
            codes = np.concatenate(
                [self._codes[token_keep], *(c.astype(self._codes.dtype) for _, c, _ in added)]
            )
            residuals = np.concatenate([self._residuals[token_keep], *(r for _, _, r in added)])
            new_lengths = np.concatenate([lengths[batch.keep], [len(c) for _, c, _ in added]]).astype(
                np.int64
            )
            offsets = np.zeros(len(new_lengths) + 1, dtype=np.int64)
            np.cumsum(new_lengths, out=offsets[1:])
            langs = np.concatenate(
                [self._langs[batch.keep], np.asarray([g for g, _, _ in added], dtype=np.int16)]
            )
            ivf, ivf_offsets = _inverted_lists(codes, offsets, len(self.codec.centroids))
            docids = batch.result_ids()
            table = self._lang_codes.table()
            commit_files(
                self.directory,
                {
                    CODES_FILE: lambda path: _save_array(path, codes),
                    RESIDUALS_FILE: lambda path: _save_array(path, residuals),
                    OFFSETS_FILE: lambda path: _save_array(path, offsets),
                    IVF_FILE: lambda path: _save_array(path, ivf),
                    IVF_OFFSETS_FILE: lambda path: _save_array(path, ivf_offsets),
                    LANGS_FILE: lambda path: _save_array(path, langs),
                    DOCIDS_FILE: lambda path: path.write_text(
                        json.dumps(docids, ensure_ascii=False), "utf-8"
                    ),
                    LANGUAGES_FILE: lambda path: path.write_text(json.dumps(table), "utf-8"),
                },
            )
            self.details["documents"] = len(docids)
            self.details["tokens"] = int(offsets[-1])
            self.details["tokens_per_document"] = round(int(offsets[-1]) / max(1, len(docids)), 2)
        return self.details

    def abort(self) -> None:
        """Discard the batch (nothing was written)."""
        self._closed = True


def _save_array(path: Path, array: np.ndarray) -> None:
    """``np.save`` to exactly ``path`` (it would append ``.npy`` to a staging name without one)."""
    with open(path, "wb") as handle:
        np.save(handle, array)
