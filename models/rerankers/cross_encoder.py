"""Any Hugging Face sequence-classification cross-encoder as a reranker (a local folder, or a hub id already
in the local HF cache; nothing is downloaded)."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xlir.models.devices import fp32_scoring_head, resolve_device
from xlir.models.hub import offline_hub
from xlir.models.registry import ModelNotAvailableError, resolve_model
from xlir.models.rerankers.base import (
    DEFAULT_RERANKER,
    RerankerError,
    check_precision,
    check_texts,
    score_pairs,
)


class CrossEncoderReranker:
    """Any Hugging Face cross-encoder (``AutoModelForSequenceClassification``): a folder or a cached hub id.

    One-logit models score by that logit; two-logit models (not relevant / relevant) by their difference.
    ``prompts`` are prepended to query and passage (none by default).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        max_length: int = 512,
        batch_size: int = 32,
        prompts: Mapping[str, str] | None = None,
        device: str = "auto",
        precision: str = "auto",
    ) -> None:
        import torch

        try:
            path = resolve_model(str(model))
        except ModelNotAvailableError as exc:
            raise RerankerError(f"cross-encoder {str(model)!r} is not available: {exc}") from exc
        if Path(path).is_file() or not (Path(path) / "config.json").is_file():
            raise RerankerError(
                f"{model!r} ({path}) is not a Hugging Face model folder (no config.json); pass a cross-encoder "
                f"checkpoint folder, a cached hub id, or an adapter reranker (shipped: {DEFAULT_RERANKER})."
            )
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.name = str(model)
        self.device = resolve_device(device)
        self.precision = check_precision(precision)
        with offline_hub():
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            config = json.loads((Path(path) / "config.json").read_text("utf-8"))
            architectures = config.get("architectures") or []
            if architectures and not any("SequenceClassification" in a for a in architectures):
                raise RerankerError(
                    f"{model!r} is a {architectures[0]} checkpoint, not a cross-encoder "
                    "(…ForSequenceClassification); pass a cross-encoder or an adapter reranker folder."
                )
            self.model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True)
        fp32_scoring_head(getattr(self.model, "classifier", None))
        self.model.to(self.device).eval()
        if self.model.config.num_labels not in (1, 2):
            raise RerankerError(
                f"{model!r} has {self.model.config.num_labels} labels; a cross-encoder has 1 (a relevance "
                "logit) or 2 (not relevant / relevant)."
            )
        limit = int(getattr(self.model.config, "max_position_embeddings", 512) or 512)
        if getattr(self.model.config, "model_type", "") in ("xlm-roberta", "roberta", "camembert"):
            limit -= 2
        self.max_length = min(int(max_length), limit)
        self.batch_size = max(1, int(batch_size))
        self.prompts = dict(prompts or {})
        self._torch = torch
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        """What this reranker is."""
        return {"kind": "cross-encoder", "name": self.name, "max_length": self.max_length}

    def score(
        self,
        query: str,
        texts: Sequence[str],
        query_lang: str | None = None,
        doc_langs: Sequence[str | None] | None = None,
    ) -> np.ndarray:
        """Relevance scores of ``query`` with each text (languages are ignored)."""
        texts = check_texts(query, texts)
        with self._lock, self._torch.inference_mode():
            return score_pairs(
                self.tokenizer,
                self.model,
                self.device,
                query,
                texts,
                self.prompts,
                self.max_length,
                self.batch_size,
                self.precision,
            )
