"""The reranking stage: a cross-encoder re-scores the first stage's top k, within a time budget per query.

* :class:`Reranker` - the protocol: ``score(query, texts, query_lang=None, doc_langs=None) -> np.ndarray``
  (one relevance score per text, higher is better).
* :class:`AdapterReranker` - a cross-encoder made of a multilingual backbone (multilingual-e5-small by
  default), a bottleneck **ranking adapter** and a one-logit scoring head (the `adapters` library),
  trained on English by ``xlir train reranker`` (:mod:`xlir.training.reranker`; shipped as
  ``me5-small-rank-en``); its gated variant (:mod:`xlir.models.rerankers.gated`) is :data:`DEFAULT_RERANKER`.
  Optional user-supplied **language adapters** are composed with it, ``Stack(lang, rank)`` (MAD-X style:
  the language adapter below, the task adapter above it).
  Which language selects the adapter: the **document's** language (``select_by="document"``, the default:
  the document is most of the tokens the cross-encoder reads), else the query's, else none (plain rank
  adapter, i.e. the English setting it was trained in). A language without an adapter falls back to none.
  ``select_by="query"`` reverses the preference.
* :class:`CrossEncoderReranker` - any Hugging Face sequence-classification cross-encoder checkpoint
  (a local folder, or a hub id already in the local HF cache; nothing is downloaded).
* :func:`reranker_for` - a reranker from a name (the shipped default, a trained reranker folder, or a
  cross-encoder checkpoint).
* :func:`rerank` - re-scores the top ``k`` hits of a :class:`~xlir.retrieval.ranking.Ranking` in batches under
  a per-query time budget. What could not be scored in time keeps its first-stage order, after the scored
  (reranked) hits. Scored hits carry ``sources["rerank"]``; the ranking's ``source`` becomes
  ``"<first>+rerank"`` (all k scored) or ``"<first>+rerank-partial"`` (the budget ran out);
  :func:`rerank_status` reads it back.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

from xlir.errors import UserError
from xlir.models.paths import shipped
from xlir.retrieval.ranking import ChannelScore, Hit, Ranking

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

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
#: The channel name reranked hits carry in ``Hit.sources``.
RERANK_SOURCE = "rerank"
#: Default prompts of the e5 family (what the shipped reranker was trained with).
E5_PROMPTS = {"query": "query: ", "passage": "passage: "}

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


# ----------------------------------------------------------------------------------------------------------
# Shared model plumbing (also used by xlir.training.reranker)
# ----------------------------------------------------------------------------------------------------------


def _device(device: str | None) -> str:
    from xlir.models.registry import resolve_device

    return resolve_device(device or "auto")


def bf16_supported(device: str) -> bool:
    """Whether bfloat16 matrix work is fast on ``device``: a CUDA GPU, or a CPU with AMX/AVX512-BF16 tiles."""
    import torch

    if str(device).startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    is_amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(is_amx and is_amx()) or cpu_has_avx512_bf16()


def cpu_has_avx512_bf16() -> bool:
    """Whether this (Linux) CPU has the AVX512-BF16 instructions (measured on an AMD EPYC that has them but no
    AMX tiles: bf16 autocast 1.7-2x faster than float32)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return "avx512_bf16" in line.split()
    except OSError:
        return False
    return False


def autocast(device: str, precision: str = "auto") -> Any:
    """The forward pass's precision: ``"bf16"`` autocast, ``"fp32"``, or ``"auto"`` (bf16 where fast).

    Only the matrix products run in bfloat16 (torch autocast); weights stay float32.
    """
    import contextlib

    import torch

    if precision not in ("auto", "bf16", "fp32"):
        raise RerankerError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    use = precision == "bf16" or (precision == "auto" and bf16_supported(device))
    if not use:
        return contextlib.nullcontext()
    return torch.autocast("cuda" if str(device).startswith("cuda") else "cpu", dtype=torch.bfloat16)


def fp32_scoring_head(module: Any) -> None:
    """Run ``module`` (a scoring head) in float32 even inside a bf16 autocast.

    bfloat16 keeps 8 bits of mantissa: head outputs of 4.03 and 4.05 are the same bf16 number, and close
    candidates would tie. The encoder's last layer norm already runs in float32 under autocast, so a float32
    head restores the scores' resolution at no measurable cost.
    """
    import torch

    if module is None or getattr(module, "_xlir_fp32", False):
        return
    forward = module.forward

    def fp32(value: Any) -> Any:
        return value.float() if torch.is_tensor(value) and value.is_floating_point() else value

    def forward_fp32(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            return forward(*(fp32(a) for a in args), **{k: fp32(v) for k, v in kwargs.items()})

    module.forward = forward_fp32
    module._xlir_fp32 = True


def _check_texts(
    query: str, texts: Sequence[str], doc_langs: Sequence[str | None] | None = None
) -> list[str]:
    if not isinstance(query, str):
        raise RerankerError(f"the query must be a string, got {type(query).__name__}")
    if isinstance(texts, str):
        raise RerankerError("score a list of texts, not a single string (wrap it: [text]).")
    if doc_langs is not None and len(doc_langs) != len(texts):
        raise RerankerError(f"doc_langs has {len(doc_langs)} entries for {len(texts)} texts")
    return [t if isinstance(t, str) else str(t) for t in texts]


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
    from xlir.models.registry import ModelNotAvailableError, offline_hub, resolve_model

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


# ----------------------------------------------------------------------------------------------------------
# Rerankers
# ----------------------------------------------------------------------------------------------------------


def resolve_reranker(name: str) -> Path:
    """The folder of adapter reranker ``name``: a shipped one (``xlir/data/rerankers/<name>``) or a path."""
    if not isinstance(name, str) or not name.strip():
        raise RerankerError("the reranker name is empty: give a shipped reranker name or a folder path.")
    shipped = RERANKERS_DIR / name
    path = shipped if (shipped / RERANKER_CONFIG).is_file() else Path(name).expanduser()
    if not (path / RERANKER_CONFIG).is_file():
        raise RerankerError(
            f"no adapter reranker {name!r}: expected a folder with {RERANKER_CONFIG} and the saved ranking "
            f"adapter (shipped: {', '.join(shipped_rerankers()) or 'none'}); train one with "
            "`xlir train reranker`."
        )
    return path


def shipped_rerankers() -> list[str]:
    """Names of the rerankers inside the package."""
    if not RERANKERS_DIR.is_dir():
        return []
    return sorted(p.name for p in RERANKERS_DIR.iterdir() if (p / RERANKER_CONFIG).is_file())


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
        self.device = _device(device)
        autocast(self.device, precision)  # validates the name
        self.precision = precision
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
        from xlir.models.registry import offline_hub

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
        from xlir.models.registry import offline_hub

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
        """Relevance logits of ``query`` with each text (float32), grouped by language adapter."""
        texts = _check_texts(query, texts, doc_langs)
        out = np.zeros(len(texts), dtype=np.float32)
        if not texts:
            return out
        groups: dict[str | None, list[int]] = {}
        for i in range(len(texts)):
            groups.setdefault(self.adapter_for(query_lang, doc_langs[i] if doc_langs else None), []).append(i)
        with self._lock, self._torch.inference_mode():
            for adapter, members in groups.items():
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

        from xlir.models.registry import ModelNotAvailableError, offline_hub, resolve_model

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
        self.device = _device(device)
        autocast(self.device, precision)  # validates the name
        self.precision = precision
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
        texts = _check_texts(query, texts)
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


_CACHE: dict[tuple[str, str], Reranker] = {}
_CACHE_LOCK = threading.Lock()


def reranker_for(name_or_path: str | Path | None = None, device: str = "auto") -> Reranker:
    """A reranker by name, loaded once per process: ``None``/``"default"`` -> the shipped
    :data:`DEFAULT_RERANKER`; a shipped name or a folder with ``reranker.json`` -> :class:`AdapterReranker`
    (:class:`xlir.models.rerankers.gated.GatedReranker` where its ``kind`` is ``"gated"``);
    any other folder or cached hub id -> :class:`CrossEncoderReranker`."""
    name = str(name_or_path) if name_or_path not in (None, "", "default") else DEFAULT_RERANKER
    key = (name, device)
    with _CACHE_LOCK:
        if key not in _CACHE:
            shipped = (RERANKERS_DIR / name / RERANKER_CONFIG).is_file()
            if shipped or (Path(name).expanduser() / RERANKER_CONFIG).is_file():
                from xlir.models.rerankers.gated import GatedReranker, is_gated

                folder = RERANKERS_DIR / name if shipped else Path(name).expanduser()
                cls = GatedReranker if is_gated(folder) else AdapterReranker
                _CACHE[key] = cls(name, device=device)
            elif name == DEFAULT_RERANKER:
                raise RerankerError(
                    f"the shipped reranker {DEFAULT_RERANKER!r} is missing from {RERANKERS_DIR}; reinstall xlir "
                    "or train one with `xlir train reranker` and pass its folder."
                )
            else:
                _CACHE[key] = CrossEncoderReranker(name, device=device)
        return _CACHE[key]


# ----------------------------------------------------------------------------------------------------------
# Reranking a ranking
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RerankSettings:
    """How :func:`rerank` runs: depth, batch size, time budget per query, and score interpolation.

    ``interpolate``: weight of the first-stage score in the final score of reranked hits (0 = the reranker
    alone); both scores are z-normalized over the scored hits first.
    """

    k: int = 100
    batch_size: int = 16
    budget_s: float | None = None
    interpolate: float = 0.0


TextLookup = Callable[[Sequence[str]], Sequence[tuple[str, str | None]]]


def rerank(
    ranking: Ranking,
    query: str,
    reranker: Reranker,
    texts: TextLookup | Mapping[str, str],
    *,
    k: int = 100,
    batch_size: int = 16,
    budget_s: float | None = None,
    query_lang: str | None = None,
    interpolate: float = 0.0,
) -> Ranking:
    """Rerank the top ``k`` hits of ``ranking`` for ``query``; hits below ``k`` follow unchanged.

    ``texts``: docid -> text mapping, or a callable from docids to ``(text, lang)`` pairs. Without a budget,
    hits are scored ``batch_size`` at a time in order of text length (less padding). With ``budget_s``
    (seconds for this query) they are scored in first-stage order; before each batch, if the budget would
    be exceeded by another batch as long as the last one, scoring stops: the scored hits are reordered
    by reranker score, the unscored keep their first-stage order and score after them, and the ranking's
    source ends in ``+rerank-partial`` (``+rerank`` when all were scored).
    """
    if k < 1:
        raise RerankerError(f"rerank k must be >= 1, got {k}")
    if batch_size < 1:
        raise RerankerError(f"rerank batch_size must be >= 1, got {batch_size}")
    if budget_s is not None and budget_s < 0:
        raise RerankerError(f"the rerank time budget must be >= 0 seconds, got {budget_s}")
    if not 0.0 <= interpolate <= 1.0:
        raise RerankerError(f"interpolate must be within [0, 1], got {interpolate}")
    started = time.perf_counter()
    head, tail = list(ranking.hits[:k]), list(ranking.hits[k:])
    pairs = _lookup(texts, [h.docid for h in head], [h.lang for h in head])
    # Without a budget every hit is scored: batch texts of similar length together (less padding). With
    # one, score in first-stage order so that a cut keeps the best candidates reranked.
    scoring = (
        sorted(range(len(head)), key=lambda i: -len(pairs[i][0])) if budget_s is None else range(len(head))
    )
    batches = [list(scoring[start : start + batch_size]) for start in range(0, len(head), batch_size)]
    values = np.zeros(len(head), dtype=np.float64)
    n, last = 0, 0.0
    for members in batches:
        elapsed = time.perf_counter() - started
        if budget_s is not None and (budget_s == 0 or elapsed + last > budget_s):
            break
        batch_started = time.perf_counter()
        value = reranker.score(
            query,
            [pairs[i][0] for i in members],
            query_lang=query_lang,
            doc_langs=[pairs[i][1] for i in members],
        )
        if len(value) != len(members):
            raise RerankerError(
                f"reranker {reranker.name!r} returned {len(value)} scores for {len(members)} texts"
            )
        values[members] = np.asarray(value, dtype=np.float64)
        n += len(members)
        last = time.perf_counter() - batch_started
    scores = [float(v) for v in values[:n]]
    complete = n == len(head)
    if n < len(head):
        log.warning(
            "rerank budget of %.3f s ran out after %d of %d hits; the rest keep their first-stage order",
            budget_s or 0.0,
            n,
            len(head),
        )
    final = np.asarray(scores, dtype=np.float64)
    if interpolate > 0 and n > 1:
        first = np.asarray([h.score for h in head[:n]], dtype=np.float64)
        final = (1 - interpolate) * z_normalize(final) + interpolate * z_normalize(first)
    order = sorted(range(n), key=lambda i: (-final[i], i))
    # the reranker's own rank and score, as every channel's evidence is given; the hit's score (and the
    # order) is the interpolated one where the first stage has a weight
    own_rank = {i: r for r, i in enumerate(sorted(range(n), key=lambda i: (-scores[i], i)), start=1)}
    reranked = []
    for i in order:
        hit = head[i]
        sources = dict(hit.sources)
        sources[RERANK_SOURCE] = ChannelScore(rank=own_rank[i], score=float(scores[i]))
        reranked.append(Hit(docid=hit.docid, score=float(final[i]), lang=hit.lang, sources=sources))
    suffix = "+rerank" if complete else "+rerank-partial"
    return Ranking(source=ranking.source + suffix, hits=tuple(reranked + head[n:] + tail))


def first_stage_weight(reranker: Reranker) -> float:
    """The first stage's weight when ``reranker``'s score is interpolated with it (0 = reranker alone).

    An adapter reranker records it at training (``first_stage_weight`` in reranker.json: the weight with
    the best held-out English MRR@10 among those validated, ``valid_mrr10_averaged``); other rerankers
    and older files without it score alone.
    """
    info = getattr(reranker, "info", None) or {}
    if "first_stage_weight" in info:
        return float(info["first_stage_weight"])
    return best_weight(info.get("valid_mrr10_averaged") or {})


def best_weight(validation: Mapping[str, Any]) -> float:
    """The weight with the best mean MRR@10 in a validation record (``rerank`` = 0, ``interp0.3`` = 0.3),
    the smaller weight on a tie; 0 when there is none."""
    mean = validation.get("mean") or {}
    options = {0.0 if key == "rerank" else float(key[6:]): v for key, v in mean.items() if key != "dense"}
    return max(options, key=lambda w: (options[w], -w)) if options else 0.0


def rerank_status(ranking: Ranking) -> Literal["reranked", "partial", "none"]:
    """Whether ``ranking`` came out of :func:`rerank` whole, cut by its time budget, or not reranked."""
    if ranking.source.endswith("+rerank-partial"):
        return "partial"
    if ranking.source.endswith("+rerank"):
        return "reranked"
    return "none"


def z_normalize(values: np.ndarray) -> np.ndarray:
    """Scores shifted to mean 0 and scaled to standard deviation 1 (a constant list only shifted)."""
    std = float(values.std())
    return (values - values.mean()) / (std if std > 1e-12 else 1.0)


def _lookup(
    texts: TextLookup | Mapping[str, str], docids: Sequence[str], langs: Sequence[str | None]
) -> list[tuple[str, str | None]]:
    if callable(texts):
        found = list(texts(docids))
        if len(found) != len(docids):
            raise RerankerError(f"the text lookup returned {len(found)} texts for {len(docids)} documents")
        return [
            (t, lang if lang is not None else given) for (t, lang), given in zip(found, langs, strict=True)
        ]
    missing = [d for d in docids if d not in texts]
    if missing:
        raise RerankerError(
            f"no text for document(s) {missing[:5]} to rerank; the index's document store must hold the text "
            "(rebuild it with text stored) or pass a lookup that has it."
        )
    return [(texts[d], lang) for d, lang in zip(docids, langs, strict=True)]
