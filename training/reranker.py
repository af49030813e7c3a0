"""The adapter reranker recipe (``xlir train reranker``): train the ranking adapter of a cross-encoder, English only.

The recipe (sized for a 2-core CPU; a GPU is used when present): multilingual-e5-small stays frozen; a
bottleneck ranking adapter (``seq_bn``, reduction 16) and a one-logit head on the first token are trained
on (query, passage) pairs from the English training sets under ``shared/data/train`` (MS MARCO dev.small
pairs and the SQuAD train part), with a listwise loss: each query's positive against ``negatives`` hard
negatives in one softmax. Then it is used zero-shot in every language the backbone knows.

* data: :func:`xlir.training.data.load_train_set` / ``subsample`` (the same seeded subsets as the
  ColBERT head); negatives are mined with xlir's own dense first stage, multilingual-e5-small
  mean-pooled states (the token states cached by :func:`xlir.training.data.cached_states`), over each
  set's corpus, the positive excluded (:func:`xlir.training.rerank_common.prepare_set`);
* validation: held-out English queries of both sets; the reranker reorders the dense top ``valid_depth``
  and MRR@10 is compared with the dense order itself (and with interpolations of the two scores);
* checkpoint averaging: the trainable weights are snapshotted ``checkpoints`` times across the run and the
  snapshots from ``average_from`` of the run on are averaged (:func:`xlir.training.loop.fit_listwise`);
  both the last and the averaged weights are validated and saved (``<out>`` = averaged, ``<out>/last`` =
  last);
* ``max_minutes`` caps the training loop: the step time is measured and the schedule shortened to fit;
* ``reranker.json`` records the command, data, seed, settings, timings and every validation score.

The Korean MS MARCO copy and XQuAD are never read here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xlir.models.devices import autocast, fp32_scoring_head
from xlir.models.hub import offline_hub
from xlir.models.rerankers.adapter import AdapterReranker
from xlir.models.rerankers.base import (
    RANK_ADAPTER,
    load_backbone,
    logits,
    new_rank_adapter,
    resolve_reranker,
    tokenize_pairs,
)
from xlir.training.loop import fit_listwise, load_trainable_state, trainable_state
from xlir.training.rerank_common import RerankTrainSettings, finish_run, start_run, write_reranker_json


def init_rank_adapter(model: Any, reranker: str) -> None:
    """Load the ranking adapter and head of an existing reranker (shipped name or folder) to train further."""
    path = resolve_reranker(reranker)
    with offline_hub():
        model.load_adapter(str(path), load_as=RANK_ADAPTER, with_head=True, use_safetensors=True)
    fp32_scoring_head(model.heads[RANK_ADAPTER])
    model.train_adapter(RANK_ADAPTER)
    model.active_adapters = RANK_ADAPTER
    model.active_head = RANK_ADAPTER


def save_reranker(model: Any, directory: Path, info: dict[str, Any]) -> Path:
    """Write the ranking adapter + head (safetensors) and ``reranker.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_adapter(str(directory), RANK_ADAPTER, with_head=True, use_safetensors=True)
    write_reranker_json(directory, info)
    return directory


def train_adapter(settings: RerankTrainSettings, command: str | None = None) -> dict[str, Any]:
    """Mine, train (time-capped), average checkpoints, validate last and averaged, save both."""
    import torch

    run = start_run(settings, command)
    device = run.device
    tokenizer, model, _ = load_backbone(settings.model, device)
    if settings.init:
        init_rank_adapter(model, settings.init)
    else:
        new_rank_adapter(model, settings.reduction)
    model.to(device)
    prompts = run.prompts
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)

    def score(queries: list[str], texts: list[str]) -> Any:
        enc = tokenize_pairs(tokenizer, queries, texts, prompts, settings.max_length).to(device)
        with autocast(device, settings.precision):
            return logits(model, enc)

    model.train()
    fitted = fit_listwise(
        settings, run.groups, run.translations, run.rng, optim, params, score, lambda: trainable_state(model)
    )
    model.eval()
    reranker = AdapterReranker.from_model(
        model,
        tokenizer,
        prompts=prompts,
        max_length=settings.infer_max_length,
        batch_size=32,
        precision=settings.precision,
    )

    def describe(out: Path, record: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": out.name,
            "kind": "adapter",
            "backbone": settings.model,
            "adapter": {
                "config": "seq_bn",
                "reduction_factor": settings.reduction,
                "head": "1 logit, first token",
            },
            "prompts": prompts,
            "max_length": settings.infer_max_length,
            "train_max_length": settings.max_length,
            "initialized_from": settings.init or None,
            **record,
        }

    return finish_run(
        run,
        fitted,
        reranker,
        lambda state: load_trainable_state(model, state),
        describe,
        lambda directory, info: save_reranker(model, directory, info),
    )
