"""The one training loop of xlir's trainers, and what every trainer records and measures the same way.

* :func:`fit_listwise`: seeded epochs over (query, positive, mined negatives) groups, each query's positive
  against its negatives in one softmax (mixed-language groups, :func:`mixed_languages`, where translations
  are given), the :class:`WarmupLinearDecay` schedule fitted into a time budget, checkpoint snapshots of the
  trainable weights and their uniform average (as in SWA / model soups). A recipe passes only its scoring
  function, its parameters and its snapshot function;
* :func:`trainable_state` / :func:`load_trainable_state`: the snapshots of a model's trainable weights;
* :func:`mrr_at_10`: the validation measure of every trainer;
* :func:`provenance`: the fields every saved model's JSON records about the run that made it.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

#: (query, positive passage, mined negative passages)
Group = tuple[str, str, list[str]]


def mrr_at_10(rows: Sequence[np.ndarray], gold: Sequence[int]) -> float:
    """Mean reciprocal rank (cut at 10) of each row's gold column; a gold of -1 (not among the candidates)
    counts as a miss. Ties rank the gold first."""
    total = 0.0
    for scores, g in zip(rows, gold, strict=True):
        if g < 0:
            continue
        rank = int((scores > scores[g]).sum()) + 1
        total += 1.0 / rank if rank <= 10 else 0.0
    return total / max(1, len(gold))


class WarmupLinearDecay:
    """The learning-rate factor of a step: linear warmup over ``warmup`` of the run, then linear decay to 0
    at ``total_steps`` (which a trainer may shorten while running, see :func:`fit_listwise`)."""

    def __init__(self, total_steps: int, warmup: float) -> None:
        self.total_steps = total_steps
        self.warmup = warmup

    def __call__(self, step: int) -> float:
        warm = max(1, int(self.total_steps * self.warmup))
        return min(1.0, (step + 1) / warm) * max(0.0, 1 - step / max(1, self.total_steps))


def trainable_state(model: Any) -> dict[str, Any]:
    """A copy of the model's trainable parameters by name (one checkpoint snapshot)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: Any, state: dict[str, Any]) -> None:
    """Copy a :func:`trainable_state` snapshot (or an average of several) back into the model."""
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, v in state.items():
            params[n].copy_(v)


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


class ListwiseSettings(Protocol):
    """The settings :func:`fit_listwise` reads (a recipe's settings dataclass has them)."""

    epochs: int
    groups_per_step: int
    negatives: int
    warmup: float
    max_minutes: float
    checkpoints: int
    average_from: float
    translated_share: float


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


def _draw_batch(
    batch: Sequence[Group], settings: ListwiseSettings, translations: dict[str, str], rng: random.Random
) -> tuple[list[str], list[str]]:
    """The (query, passage) pairs of one step: each group's positive first, then ``negatives`` drawn ones."""
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
    return queries, texts


def fit_listwise(
    settings: ListwiseSettings,
    groups: Sequence[Group],
    translations: dict[str, str],
    rng: random.Random,
    optim: Any,
    clip: Sequence[Any],
    score: Callable[[list[str], list[str]], Any],
    trainable: Callable[[], dict[str, Any]],
    progress: Callable[[], dict[str, Any]] | None = None,
) -> Fitted:
    """``epochs`` seeded passes over ``groups``, ``groups_per_step`` per step, each query's positive against
    ``negatives`` drawn negatives in one softmax (mixed-language groups where ``translations`` has them),
    warmup + linear decay fitted into ``max_minutes`` after 10 steps, ``checkpoints`` snapshots of
    ``trainable()`` and the uniform average of those from ``average_from`` of the run on.

    ``score(queries, texts)`` returns one score per pair (a tensor); ``clip``: the parameters whose gradient
    norm is clipped to 1; ``progress()`` adds entries to each curve point."""
    import torch

    planned = settings.epochs * ((len(groups) + settings.groups_per_step - 1) // settings.groups_per_step)
    schedule = WarmupLinearDecay(planned, settings.warmup)
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
    while step < schedule.total_steps:
        batch = order[step * settings.groups_per_step : (step + 1) * settings.groups_per_step]
        queries, texts = _draw_batch(batch, settings, translations, rng)
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
            if fit < schedule.total_steps:
                log.info("max_minutes %.1f: %d of %d planned steps fit", settings.max_minutes, fit, planned)
                schedule.total_steps = max(step + 1, fit)
        every = max(1, schedule.total_steps // settings.checkpoints)
        if step % every == 0 or step == schedule.total_steps:
            snapshots.append((step, trainable()))
            entry = {
                "step": step,
                "loss": round(float(np.mean(losses[-every:])), 4),
                "seconds": round(elapsed),
            } | (progress() if progress else {})
            curve.append(entry)
            log.info("step %d/%d %s", step, schedule.total_steps, entry)
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


def provenance(
    settings: Any, data_dir: Path, device: Any, command: str | None, program: str
) -> dict[str, Any]:
    """Where a trained model came from: data folder, command (``program`` and this process's arguments when
    none is given), every setting (a dataclass), seed and device."""
    return {
        "data_dir": str(data_dir),
        "command": command or f"{program} " + " ".join(sys.argv[1:]),
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(settings).items()},
        "seed": settings.seed,
        "device": str(device),
    }
