"""The multi-vector channel's codec: token vectors compressed as ColBERTv2/PLAID do.

k-means centroids over a sample of the token vectors, then per token its nearest centroid's id and its
residual (vector minus centroid) quantized to ``nbits`` bits per dimension against per-dimension
quantile buckets. A token costs ``dim*nbits/8 + 2`` (or ``+ 4`` above 65,536 centroids) bytes instead
of ``dim*2`` in fp16.
"""

from __future__ import annotations

import math

import numpy as np

from xlir.indexing.errors import ConfigError

NBITS = (1, 2, 4, 8)
SEED = 1234


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

    from xlir.models.devices import resolve_device

    device = resolve_device("auto")
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
            raise ConfigError(f"multivector.nbits must be one of {NBITS} (got {nbits}); fix the config.")
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


def reconstruction_cosine(
    codec: ResidualCodec, vectors: np.ndarray, codes: np.ndarray, packed: np.ndarray, ids: np.ndarray
) -> float:
    """Mean cosine between original and decompressed token vectors over ``ids`` (a sample)."""
    original = _unit(vectors[ids])
    restored = codec.decompress(codes[ids], packed[ids])
    return float(np.mean(np.sum(original * restored, axis=1)))
