"""``xlir train reranker --kind gated``: train a gated reranker (:mod:`xlir.models.rerankers.gated`) on English.

The data, negatives, held-out queries, optional machine-translated copies, listwise loss, time cap and
checkpoint averaging are those every reranker recipe shares (:mod:`xlir.training.rerank_common`, the same
settings object, and :func:`xlir.training.loop.fit_listwise`). What differs from the adapter recipe:

* the lower ``split_layer`` layers are frozen and carry no ranking adapter, so every training text's
  lower-layer states are computed once (:func:`xlir.models.rerankers.gated.encode_apart`) and each step runs
  only the joint layers: about three times cheaper than a full cross-encoder step;
* trained: the ranking adapter (joint layers only, up-projections starting at zero), the gates (their own
  learning rate ``gate_lr``: they start at -8 and must be able to move within one run), the score scale,
  the first-token term and the ColBERT projection (initialized from the shipped head ``head``);
* validation scores the held-out candidates from the same cached states.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from xlir.models.devices import autocast
from xlir.models.encoders.heads import load_head
from xlir.models.rerankers.base import RANK_ADAPTER, load_backbone
from xlir.models.rerankers.gated import Encoded, encode_apart, score_together
from xlir.models.rerankers.gated_scorer import GatedScorer, save_scorer, scorer_shape
from xlir.training.loop import fit_listwise, load_trainable_state, trainable_state
from xlir.training.rerank_common import (
    RerankTrainSettings,
    Split,
    TrainSettingsError,
    finish_run,
    start_run,
    write_reranker_json,
)

log = logging.getLogger(__name__)


def add_joint_rank_adapter(model: Any, reduction: int, split: int) -> None:
    """A fresh ``seq_bn`` ranking adapter on layers ``[split, n)`` only, its up-projections at zero (the
    adapter starts as the identity), trained alone; no head (the gated scorer is the head)."""
    import torch
    from adapters import SeqBnConfig

    config = SeqBnConfig(reduction_factor=reduction, leave_out=list(range(split)))
    model.add_adapter(RANK_ADAPTER, config=config, overwrite_ok=True)
    model.train_adapter(RANK_ADAPTER)
    model.active_adapters = RANK_ADAPTER
    with torch.no_grad():
        for name, param in model.named_parameters():
            if f"adapters.{RANK_ADAPTER}." in name and "adapter_up" in name:
                param.zero_()


class CachedStates:
    """Lower-layer states by text (queries and passages apart), computed once for a whole run."""

    def __init__(
        self, model: Any, tokenizer: Any, scorer: Any, split: int, prompts: dict[str, str], settings: Any
    ) -> None:
        self.model, self.tokenizer, self.scorer = model, tokenizer, scorer
        self.split, self.prompts = split, prompts
        self.settings = settings
        self.queries: dict[str, Encoded] = {}
        self.passages: dict[str, Encoded] = {}

    def add(self, texts: set[str], is_query: bool) -> None:
        import torch

        table = self.queries if is_query else self.passages
        todo = sorted(t for t in texts if t not in table)
        prompt = self.prompts.get("query" if is_query else "passage", "")
        length = self.settings.query_max_length if is_query else self.settings.max_length
        device = str(next(self.model.parameters()).device)
        for start in range(0, len(todo), 256):
            part = todo[start : start + 256]
            with torch.no_grad(), autocast(device, self.settings.precision):
                found = encode_apart(self.model, self.tokenizer, part, prompt, length, self.split, 32)
            for text, enc in zip(part, found, strict=True):
                table[text] = Encoded(enc.states.to(torch.float16).clone(), enc.scored.clone())
            log.info("%s states: %d/%d", "query" if is_query else "passage", start + len(part), len(todo))

    def score(self, query: str, texts: list[str], *_: Any, **__: Any) -> np.ndarray:
        """What :func:`xlir.training.rerank_common.validate` calls: scores from the cached states."""
        import torch

        out = []
        device = str(next(self.model.parameters()).device)
        with torch.no_grad(), autocast(device, self.settings.precision):
            for start in range(0, len(texts), 32):
                part = texts[start : start + 32]
                q = self.queries[query]
                value = score_together(
                    self.model, self.scorer, self.split, [q] * len(part), [self.passages[t] for t in part]
                )
                out.append(value.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def _texts_of(splits: list[Split]) -> tuple[set[str], set[str]]:
    queries: set[str] = set()
    passages: set[str] = set()
    for s in splits:
        for q, pos, negs in s.train:
            queries.add(q)
            passages.update([pos, *negs])
        for q, cands, _, _ in s.valid + s.valid_translated:
            queries.add(q)
            passages.update(cands)
    for s in splits:
        queries |= {s.translations[q] for q in list(queries) if q in s.translations}
        passages |= {s.translations[p] for p in list(passages) if p in s.translations}
    return queries, passages


def train_gated(settings: RerankTrainSettings, command: str | None = None) -> dict[str, Any]:
    """Mine, cache lower-layer states, train the joint layers (time-capped), average checkpoints, validate
    last and averaged, save both (``<out>`` averaged, ``<out>/last``)."""
    import torch

    if not 0 < settings.split_layer:
        raise TrainSettingsError(f"split_layer must be >= 1, got {settings.split_layer}")
    run = start_run(settings, command)
    device = run.device
    tokenizer, model, _ = load_backbone(settings.model, device)
    n_layers = int(model.config.num_hidden_layers)
    if settings.split_layer >= n_layers:
        raise TrainSettingsError(
            f"split_layer {settings.split_layer} must be below the {n_layers} layers of the model"
        )
    add_joint_rank_adapter(model, settings.reduction, settings.split_layer)
    projection, head_info = load_head(settings.head)
    projection.train()
    for p in projection.parameters():
        p.requires_grad_(True)
    scorer = GatedScorer(
        int(model.config.hidden_size),
        n_layers - settings.split_layer,
        int(model.config.num_attention_heads),
        projection,
        settings.gate_init,
    ).to(device)
    model.to(device)
    prompts = run.prompts
    cache = CachedStates(model, tokenizer, scorer, settings.split_layer, prompts, settings)
    model.eval()
    queries_all, passages_all = _texts_of(run.splits)
    cache.add(queries_all, True)
    cache.add(passages_all, False)
    run.stage_seconds["cache"] = time.perf_counter() - run.started - run.stage_seconds["mine"]
    gate_params = [scorer.gates]
    other = [p for p in model.parameters() if p.requires_grad] + [
        p for n, p in scorer.named_parameters() if n != "gates"
    ]
    optim = torch.optim.AdamW(
        [
            {"params": other, "lr": settings.lr, "weight_decay": settings.weight_decay},
            {"params": gate_params, "lr": settings.gate_lr, "weight_decay": 0.0},
        ]
    )

    def trainable() -> dict[str, Any]:
        return trainable_state(model) | {
            f"scorer.{n}": p.detach().clone() for n, p in scorer.named_parameters()
        }

    def load(state: dict[str, Any]) -> None:
        load_trainable_state(model, {n: v for n, v in state.items() if not n.startswith("scorer.")})
        params = dict(scorer.named_parameters())
        with torch.no_grad():
            for n, v in state.items():
                if n.startswith("scorer."):
                    params[n[len("scorer.") :]].copy_(v)

    def score(queries: list[str], texts: list[str]) -> Any:
        with autocast(device, settings.precision):
            return score_together(
                model,
                scorer,
                settings.split_layer,
                [cache.queries[q] for q in queries],
                [cache.passages[t] for t in texts],
            )

    model.train()
    scorer.train()
    fitted = fit_listwise(
        settings,
        run.groups,
        run.translations,
        run.rng,
        optim,
        other,
        score,
        trainable,
        progress=lambda: {"gate_max": round(float(scorer.gates.detach().max()), 3)},
    )
    model.eval()
    scorer.eval()

    def describe(out: Path, record: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": out.name,
            "kind": "gated",
            "backbone": settings.model,
            "split_layer": settings.split_layer,
            "adapter": {
                "config": "seq_bn",
                "reduction_factor": settings.reduction,
                "layers": f"{settings.split_layer}-{n_layers - 1} (the joint layers)",
            },
            "scorer": scorer_shape(scorer),
            "head": {
                "score": "exp(log_scale) * MaxSim (query-token mean, projected, special tokens left out) + "
                "linear on the first token",
                "projection_from": settings.head,
                "projection_trained_on": head_info.get("trained_on"),
                "gate_init": settings.gate_init,
            },
            "prompts": prompts,
            "max_length": settings.infer_max_length,
            "query_max_length": settings.query_max_length,
            "train_max_length": settings.max_length,
            **record,
            "gates": {
                "min": round(float(scorer.gates.detach().min()), 3),
                "max": round(float(scorer.gates.detach().max()), 3),
            },
        }

    return finish_run(
        run, fitted, cache, load, describe, lambda directory, info: save_gated(model, scorer, directory, info)
    )


def save_gated(model: Any, scorer: Any, directory: Path, info: dict[str, Any]) -> Path:
    """Write the ranking adapter (no head), the scorer and ``reranker.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_adapter(str(directory), RANK_ADAPTER, with_head=False, use_safetensors=True)
    save_scorer(scorer, directory)
    write_reranker_json(directory, info)
    return directory
