"""The gated reranker: a cross-encoder that starts as late interaction and learns how much to read across.

A full cross-encoder trained on a few thousand English pairs on a CPU learns English word matching; across
languages it ranked below the first stage it was reranking (docs/RESULTS.md, "rerank"). Late interaction
(ColBERT's MaxSim over separately encoded query and passage) transfers well zero-shot, because the backbone's
multilingual token space does the matching. This reranker joins the two:

* layers ``[0, split)`` of the backbone encode the query and the passage **apart** (frozen; the passage's
  states do not depend on the query, so they can be computed once per text);
* layers ``[split, n)`` read the two **together** as one sequence ``[query ; passage]``, carrying the
  bottleneck **ranking adapter** (``seq_bn`` from the `adapters` library, left out of the lower layers);
  attention across the two segments goes through learned **gates**: an additive bias on the attention
  logits, one per layer, head and direction (query->passage, passage->query), starting at ``gate_init``
  (-8: nearly closed);
* the score is ``exp(log_scale) * MaxSim`` (the mean over the query's tokens of the best cosine with a
  passage token, both through the shipped ColBERT projection, special tokens left out) plus a linear
  term on the first token (zero at the start).

With the gates closed and the adapter's up-projections at zero (how a fresh one starts) the score *is*
ColBERT MaxSim over the backbone's last layer: training starts from a ranker that already works across
languages, and can only open the gates where English relevance data says it pays. Language adapters
(user-supplied, see :class:`xlir.models.rerankers.adapter.AdapterReranker`) apply to each text's lower layers by its
own language and are stacked under the ranking adapter in the joint layers by the passage's language.

* :class:`~xlir.models.rerankers.gated_scorer.GatedScorer` - gates, projection and score head (saved as
  ``scorer.safetensors`` + the shape in reranker.json);
* :func:`encode_apart` - lower-layer states of texts (what training caches);
* :func:`score_together` - scores of (query, passage) state pairs through the joint layers and the head;
* :class:`GatedReranker` - the :class:`~xlir.models.rerankers.base.Reranker` over a saved folder
  (``reranker.json`` with ``"kind": "gated"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xlir.models.devices import autocast
from xlir.models.hub import offline_hub
from xlir.models.rerankers.adapter import AdapterReranker
from xlir.models.rerankers.base import RANK_ADAPTER, RerankerError, SelectBy, group_indices
from xlir.models.rerankers.gated_scorer import CLOSED, GatedScorer, load_scorer


@dataclass
class Encoded:
    """One text's lower-layer states (``(tokens, hidden)``) and which of its tokens MaxSim scores."""

    states: Any
    scored: Any


def backbone_parts(model: Any) -> tuple[Any, list[Any]]:
    """(embeddings, transformer layers) of an adapter model's BERT/XLM-R-like base model."""
    base = getattr(model, "base_model", model)
    embeddings = getattr(base, "embeddings", None)
    encoder = getattr(base, "encoder", None)
    layers = list(getattr(encoder, "layer", []) or [])
    if embeddings is None or not layers:
        raise RerankerError(
            f"the gated reranker needs a BERT-like encoder (embeddings + encoder.layer); "
            f"{type(base).__name__} has none"
        )
    return embeddings, layers


def _run_layer(layer: Any, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    out = layer(hidden, mask)
    return out[0] if isinstance(out, tuple) else out


def _special_ids(tokenizer: Any) -> list[int]:
    return sorted({int(i) for i in tokenizer.all_special_ids})


def encode_apart(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    prompt: str,
    max_length: int,
    split: int,
    batch_size: int = 32,
) -> list[Encoded]:
    """Each text's states after layers ``[0, split)``, encoded alone (the active adapters apply)."""
    embeddings, layers = backbone_parts(model)
    device = next(model.parameters()).device
    special = torch.tensor(_special_ids(tokenizer), device=device)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    found: dict[int, Encoded] = {}
    for start in range(0, len(order), batch_size):
        members = order[start : start + batch_size]
        batch = tokenizer(
            [prompt + texts[i] for i in members],
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="pt",
        ).to(device)
        ids, valid = batch["input_ids"], batch["attention_mask"].bool()
        hidden = embeddings(input_ids=ids, token_type_ids=torch.zeros_like(ids))
        mask = torch.zeros(valid.shape, dtype=hidden.dtype, device=device).masked_fill(~valid, CLOSED)
        mask = mask[:, None, None, :]
        for layer in layers[:split]:
            hidden = _run_layer(layer, hidden, mask)
        scored = valid & ~torch.isin(ids, special)
        for row, i in enumerate(members):
            n = int(valid[row].sum())
            found[i] = Encoded(hidden[row, :n].detach(), scored[row, :n])
    return [found[i] for i in range(len(texts))]


def score_together(
    model: Any, scorer: GatedScorer, split: int, queries: Sequence[Encoded], passages: Sequence[Encoded]
) -> torch.Tensor:
    """Scores ``(pairs,)`` of ``queries[i]`` with ``passages[i]`` through layers ``[split, n)`` and the head."""
    _, layers = backbone_parts(model)
    if len(queries) != len(passages):
        raise RerankerError(f"{len(queries)} queries for {len(passages)} passages")
    device = queries[0].states.device
    lq = max(len(q.scored) for q in queries)
    lp = max(len(p.scored) for p in passages)
    n, width = len(queries), queries[0].states.shape[-1]
    hidden = torch.zeros((n, lq + lp, width), device=device, dtype=torch.float32)
    valid = torch.zeros((n, lq + lp), device=device, dtype=torch.bool)
    scored = torch.zeros_like(valid)
    segment = torch.ones((n, lq + lp), device=device, dtype=torch.long)
    segment[:, :lq] = 0
    for i, (q, p) in enumerate(zip(queries, passages, strict=True)):
        a, b = len(q.scored), len(p.scored)
        hidden[i, :a] = q.states.to(device=device, dtype=torch.float32)
        hidden[i, lq : lq + b] = p.states.to(device=device, dtype=torch.float32)
        valid[i, :a] = True
        valid[i, lq : lq + b] = True
        scored[i, :a] = q.scored
        scored[i, lq : lq + b] = p.scored
    for j, layer in enumerate(layers[split:]):
        hidden = _run_layer(layer, hidden, scorer.bias(j, segment, valid).to(hidden.dtype))
    return scorer(hidden, segment, scored & valid)


class GatedReranker(AdapterReranker):
    """A saved gated reranker (see the module docstring) as a :class:`~xlir.models.rerankers.base.Reranker`.

    Same options as :class:`~xlir.models.rerankers.adapter.AdapterReranker`; ``query_max_length`` caps the query's tokens
    (the passage's cap is ``max_length``); ``cache_passages``: how many passages' lower-layer states are
    kept for the next queries (:class:`PassageCache`; 0 = none).
    """

    def __init__(
        self,
        reranker: str | Path,
        language_adapters: Mapping[str, str | Path] | None = None,
        *,
        backbone: str | None = None,
        max_length: int | None = None,
        query_max_length: int | None = None,
        batch_size: int = 32,
        select_by: SelectBy = "document",
        device: str = "auto",
        precision: str = "auto",
        cache_passages: int = 2048,
    ) -> None:
        # before the base class loads language adapters (adding one drops the cache)
        self._passages = PassageCache(cache_passages)
        super().__init__(
            reranker,
            language_adapters,
            backbone=backbone,
            max_length=max_length,
            batch_size=batch_size,
            select_by=select_by,
            device=device,
            precision=precision,
        )
        self.query_max_length = int(query_max_length or self.info.get("query_max_length") or 64)
        self.split = int(self.info.get("split_layer") or 8)
        self.scorer = load_scorer(self.path, self.info).to(self.device)

    def _check_kind(self) -> None:
        if self.info.get("kind") != "gated":
            raise RerankerError(f"{self.path} is not a gated reranker (kind {self.info.get('kind')!r})")

    def _load_ranking(self) -> None:
        with offline_hub():  # the ranking adapter only: the scorer is the head
            self.model.load_adapter(
                str(self.path), load_as=RANK_ADAPTER, with_head=False, use_safetensors=True
            )

    @classmethod
    def from_parts(
        cls,
        model: Any,
        tokenizer: Any,
        scorer: GatedScorer,
        split: int,
        *,
        name: str = "in-memory",
        prompts: Mapping[str, str] | None = None,
        max_length: int = 256,
        query_max_length: int = 64,
        batch_size: int = 32,
        precision: str = "auto",
    ) -> GatedReranker:
        """Wrap a model with a ``rank`` adapter and a scorer that are in memory (training, tests)."""
        self = cls.from_model(
            model,
            tokenizer,
            name=name,
            prompts=prompts,
            max_length=max_length,
            batch_size=batch_size,
            precision=precision,
        )
        self.info = {"name": name, "kind": "gated", "split_layer": split}
        self.scorer, self.split = scorer, int(split)
        self._passages = PassageCache(0)
        self.query_max_length = int(query_max_length)
        return self

    def add_language_adapter(self, lang: str, folder: str | Path) -> None:
        """Load a language adapter (see the base class); cached passage states are dropped."""
        super().add_language_adapter(lang, folder)
        self._passages = PassageCache(self._passages.capacity)

    def _activate(self, lang_adapter: str | None) -> None:
        # joint layers: Stack(lang, rank) (MAD-X), or the ranking adapter alone
        from adapters.composition import Stack

        self._set_active(Stack(lang_adapter, RANK_ADAPTER) if lang_adapter else RANK_ADAPTER)

    def _activate_apart(self, lang_adapter: str | None) -> None:
        # lower layers: the text's own language adapter alone (the ranking adapter is not there)
        self._set_active(lang_adapter if lang_adapter else RANK_ADAPTER)

    def _set_active(self, setup: Any) -> None:
        # on the base model: the adapter model's own setter would look for a prediction head to go with
        # the setup (a gated reranker has none: its scorer is the head) and log that it found none
        base = getattr(self.model, "base_model", self.model)
        base.set_active_adapters(setup)
        self._active = None

    def _language(self, lang: str | None) -> str | None:
        return self.languages.get(lang.lower()) if lang else None

    def describe(self) -> dict[str, Any]:
        """What this reranker is."""
        return super().describe() | {"kind": "gated", "split_layer": self.split}

    def _score(
        self, query: str, texts: list[str], query_lang: str | None, doc_langs: list[str | None]
    ) -> np.ndarray:
        """:meth:`score` of checked, non-empty ``texts`` (see the base class): lower layers apart in each
        text's own language, passage states cached, then the joint layers and the scorer."""
        out = np.zeros(len(texts), dtype=np.float32)
        with autocast(self.device, self.precision):
            self._activate_apart(self._language(query_lang))
            q = encode_apart(
                self.model,
                self.tokenizer,
                [query],
                self.prompts.get("query", ""),
                self.query_max_length,
                self.split,
            )[0]
            for lang, members in group_indices(code.lower() if code else None for code in doc_langs).items():
                adapter = self._language(lang)
                docs = self._passages.get_many([texts[i] for i in members], adapter)
                todo = [j for j, d in enumerate(docs) if d is None]
                if todo:
                    self._activate_apart(adapter)
                    fresh = encode_apart(
                        self.model,
                        self.tokenizer,
                        [texts[members[j]] for j in todo],
                        self.prompts.get("passage", ""),
                        self.max_length,
                        self.split,
                        self.batch_size,
                    )
                    for j, enc in zip(todo, fresh, strict=True):
                        docs[j] = enc
                        self._passages.put(texts[members[j]], adapter, enc)
                self._activate(self.adapter_for(query_lang, lang))
                for start in range(0, len(members), self.batch_size):
                    part = docs[start : start + self.batch_size]
                    value = score_together(self.model, self.scorer, self.split, [q] * len(part), part)
                    out[members[start : start + len(part)]] = value.float().cpu().numpy()
        self._active = None
        return out


class PassageCache:
    """Lower-layer passage states by (text, language adapter), least recently used out first.

    A passage's lower layers do not depend on the query: a document that comes back for another query (the
    same collection's popular paragraphs, a user paging) skips them. Held in float16; ``capacity`` 0 = off.
    """

    def __init__(self, capacity: int) -> None:
        from collections import OrderedDict

        if capacity < 0:
            raise RerankerError(f"cache_passages must be >= 0, got {capacity}")
        self.capacity = int(capacity)
        self._items: OrderedDict[tuple[str, str], Encoded] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get_many(self, texts: Sequence[str], adapter: str | None) -> list[Encoded | None]:
        """The cached states of each text (None where not cached)."""
        out: list[Encoded | None] = []
        for text in texts:
            key = (text, adapter or "")
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            out.append(found)
        return out

    def put(self, text: str, adapter: str | None, encoded: Encoded) -> None:
        """Keep ``encoded`` (float16), evicting the least recently used beyond the capacity."""
        if not self.capacity:
            return
        self._items[(text, adapter or "")] = Encoded(encoded.states.to(torch.float16), encoded.scored)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)


__all__ = [
    "Encoded",
    "GatedReranker",
    "PassageCache",
    "encode_apart",
    "score_together",
]
