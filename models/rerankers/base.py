"""What every reranker shares: the :class:`Reranker` protocol, its error, where rerankers live, and the
cross-encoder plumbing (tokenizing pairs, loading an adapter-capable backbone, scoring pairs in batches).

* :class:`Reranker` - ``score(query, texts, query_lang=None, doc_langs=None) -> np.ndarray`` (one relevance
  score per text, higher is better).
* :func:`resolve_reranker` / :func:`shipped_rerankers` - a reranker folder by name (shipped in
  ``xlir/data/rerankers``) or path; a folder holds :data:`RERANKER_CONFIG` (its kind and provenance).
* :func:`load_backbone`, :func:`new_rank_adapter`, :func:`tokenize_pairs`, :func:`logits`,
  :func:`score_pairs` - used by the reranker classes and by the trainers (:mod:`xlir.training.reranker`).

The classes: :mod:`~xlir.models.rerankers.adapter`, :mod:`~xlir.models.rerankers.cross_encoder`,
:mod:`~xlir.models.rerankers.gated`; :func:`xlir.models.rerankers.registry.reranker_for` picks one by name.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

from xlir.errors import UserError
from xlir.models.devices import DeviceError, autocast, fp32_scoring_head
from xlir.models.devices import check_precision as _check_precision
from xlir.models.paths import shipped, shipped_names, shipped_or_path

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_RERANKER",
    "LANG_PREFIX",
    "RANK_ADAPTER",
    "RERANKERS_DIR",
    "RERANKER_CONFIG",
    "Reranker",
    "RerankerError",
    "SelectBy",
    "check_precision",
    "check_texts",
    "group_indices",
    "load_backbone",
    "logits",
    "new_rank_adapter",
    "resolve_reranker",
    "score_pairs",
    "shipped_rerankers",
    "tokenize_pairs",
]

#: Where shipped rerankers live (inside the installed package).
RERANKERS_DIR = shipped("rerankers")
#: The reranker trained by ``xlir train reranker --kind gated`` and shipped (see its reranker.json for
#: provenance): the gated reranker of :mod:`xlir.models.rerankers.gated`. ``me5-small-rank-en`` (the full
#: cross-encoder kind, ranking below the first stage across languages) ships beside it.
DEFAULT_RERANKER = "me5-small-gated-en"
#: The provenance/config file of an adapter reranker folder.
RERANKER_CONFIG = "reranker.json"
#: Name of the ranking adapter (and its head) inside the model.
RANK_ADAPTER = "rank"
#: Prefix of language adapter names inside the model (``lang_de`` ...).
LANG_PREFIX = "lang_"

#: Which language picks an adapter reranker's language adapter (see :class:`~xlir.models.rerankers.adapter.AdapterReranker`).
SelectBy = Literal["document", "query"]


class RerankerError(UserError, ValueError):
    """A reranker cannot be built or used as asked; the message says what to change."""


@runtime_checkable
class Reranker(Protocol):
    """Scores (query, text) pairs: ``score(query, texts, query_lang, doc_langs) -> (len(texts),) float32``.

    Higher is more relevant. ``query_lang`` / ``doc_langs`` (ISO 639-1, None = unknown) let rerankers with
    language modules pick them; others ignore them.
    """

    name: str

    def score(
        self,
        query: str,
        texts: Sequence[str],
        query_lang: str | None = None,
        doc_langs: Sequence[str | None] | None = None,
    ) -> np.ndarray: ...


def check_texts(query: str, texts: Sequence[str], doc_langs: Sequence[str | None] | None = None) -> list[str]:
    """The texts of one :meth:`Reranker.score` call as strings, after checking the call's arguments."""
    if not isinstance(query, str):
        raise RerankerError(f"the query must be a string, got {type(query).__name__}")
    if isinstance(texts, str):
        raise RerankerError("score a list of texts, not a single string (wrap it: [text]).")
    if doc_langs is not None and len(doc_langs) != len(texts):
        raise RerankerError(f"doc_langs has {len(doc_langs)} entries for {len(texts)} texts")
    return [t if isinstance(t, str) else str(t) for t in texts]


def group_indices(keys: Iterable[Hashable]) -> dict[Any, list[int]]:
    """The positions of ``keys`` grouped by key, in order of first appearance (texts scored together)."""
    groups: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return groups


def check_precision(precision: str) -> str:
    """``precision`` if a forward pass can run in it (``"auto"``, ``"bf16"``, ``"fp32"``), else :class:`RerankerError`."""
    try:
        return _check_precision(precision)
    except DeviceError as exc:
        raise RerankerError(str(exc)) from exc


def tokenize_pairs(
    tokenizer: Any, queries: Sequence[str], texts: Sequence[str], prompts: Mapping[str, str], max_length: int
) -> dict[str, Any]:
    """Tokenize (query, passage) pairs for a cross-encoder: prompts prepended, the longer side truncated."""
    return tokenizer(
        [prompts.get("query", "") + q for q in queries],
        [prompts.get("passage", "") + t for t in texts],
        truncation="longest_first",
        max_length=max_length,
        padding=True,
        return_tensors="pt",
    )


def load_backbone(backbone: str, device: str) -> tuple[Any, Any, str]:
    """(tokenizer, adapter-capable model, resolved path) of ``backbone`` (a model name, hub id or folder)."""
    from xlir.models.hub import offline_hub
    from xlir.models.registry import ModelNotAvailableError, resolve_model

    try:
        path = resolve_model(backbone)
    except ModelNotAvailableError as exc:
        raise RerankerError(f"the reranker's backbone is not available: {exc}") from exc
    if Path(path).is_file():
        raise RerankerError(
            f"backbone {backbone!r} resolves to the file {path}; a transformers folder is needed"
        )
    from adapters import AutoAdapterModel
    from transformers import AutoTokenizer

    with offline_hub():
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoAdapterModel.from_pretrained(path, local_files_only=True)
    model.to(device)
    return tokenizer, model, str(path)


def new_rank_adapter(model: Any, reduction: int = 16, leave_out: Sequence[int] = ()) -> None:
    """Add a fresh bottleneck ranking adapter (``seq_bn``) and a one-logit head, and make only them train."""
    from adapters import SeqBnConfig

    config = SeqBnConfig(reduction_factor=reduction, leave_out=list(leave_out))
    model.add_adapter(RANK_ADAPTER, config=config, overwrite_ok=True)
    model.add_classification_head(RANK_ADAPTER, num_labels=1, overwrite_ok=True)
    fp32_scoring_head(model.heads[RANK_ADAPTER])
    model.train_adapter(RANK_ADAPTER)
    model.active_adapters = RANK_ADAPTER
    model.active_head = RANK_ADAPTER


def logits(model: Any, batch: Mapping[str, Any]) -> torch.Tensor:
    """One relevance score per pair of a tokenized batch (shape ``(pairs,)``): the logit of a one-label head,
    or relevant minus not relevant for a two-label one."""
    out = model(**batch)
    value = out.logits if hasattr(out, "logits") else out[0]
    value = value.reshape(value.shape[0], -1)
    return value[:, 1] - value[:, 0] if value.shape[1] == 2 else value[:, 0]


def score_pairs(
    tokenizer: Any,
    model: Any,
    device: str,
    query: str,
    texts: Sequence[str],
    prompts: Mapping[str, str],
    max_length: int,
    batch_size: int,
    precision: str = "auto",
) -> np.ndarray:
    """Scores of ``query`` with each of ``texts`` (float32), ``batch_size`` pairs per forward pass.

    The caller holds the model's lock and an inference-mode context.
    """
    out = np.zeros(len(texts), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        part = list(texts[start : start + batch_size])
        batch = tokenize_pairs(tokenizer, [query] * len(part), part, prompts, max_length).to(device)
        with autocast(device, precision):
            out[start : start + len(part)] = logits(model, batch).float().cpu().numpy()
    return out


def resolve_reranker(name: str) -> Path:
    """The folder of adapter reranker ``name``: a shipped one (``xlir/data/rerankers/<name>``) or a path."""
    if not isinstance(name, str) or not name.strip():
        raise RerankerError("the reranker name is empty: give a shipped reranker name or a folder path.")
    path = shipped_or_path(name, RERANKERS_DIR, RERANKER_CONFIG)
    if not (path / RERANKER_CONFIG).is_file():
        raise RerankerError(
            f"no adapter reranker {name!r}: expected a folder with {RERANKER_CONFIG} and the saved ranking "
            f"adapter (shipped: {', '.join(shipped_rerankers()) or 'none'}); train one with "
            "`xlir train reranker`."
        )
    return path


def shipped_rerankers() -> list[str]:
    """Names of the rerankers inside the package."""
    return shipped_names(RERANKERS_DIR, RERANKER_CONFIG)
