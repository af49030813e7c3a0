"""The ColBERT head recipe (``xlir train colbert``): a projection head on a frozen multilingual backbone, English only.

ColBERT-XM's recipe, within reach of a 2-core CPU: the backbone (multilingual-e5-small) stays frozen, so
its token states are computed once and cached (under ``$XLIR_HOME/cache/colbert-train``, never the
repository); only a small head (``Linear(384, 128)``, optionally plus a residual MLP) is trained, with a
contrastive loss over MaxSim scores: each query's positive against mined hard negatives and every other
passage of the batch. Trained on English (MS MARCO dev.small pairs and the SQuAD train part under
``shared/data/train``), then used zero-shot in every language the backbone knows.

* negatives: the backbone's own dense ranking (mean-pooled token states) of each set's corpus, positives
  and passages that answer another query of the batch excluded;
* validation: held-out English queries of both sets, ranked against their whole set's corpus;
* the head is initialized from the top principal directions of the passage token states (so an untrained
  head already approximates raw-state MaxSim), and the best validation epoch is kept;
* the output folder holds ``head.safetensors`` and ``head.json`` with the command, data, seed and scores.

The data and its cached token states are :mod:`xlir.training.data`'s; the torch MaxSim the training and its
validation score with is here (:func:`score_all`), since only this recipe uses it.

The Korean MS MARCO copy is read only by :func:`transfer_check` (never for training).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xlir.models.encoders.heads import load_head, make_head, save_head
from xlir.models.encoders.tokens import HFTokenEncoder
from xlir.training.data import (
    TRAIN_SETS,
    TrainSet,
    cached_states,
    load_train_set,
    mean_pooled,
    subsample,
    train_dir,
)
from xlir.training.loop import WarmupLinearDecay, mrr_at_10, provenance

log = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    """Everything one training run depends on (recorded in ``head.json``)."""

    data_dir: str = ""
    out_dir: str = "colbert-head"
    model: str = "multilingual-e5-small"
    dim: int = 128
    hidden: int = 0
    epochs: int = 4
    batch_size: int = 32
    negatives: int = 3
    #: hard negatives are drawn from this many top dense-ranked passages
    mine_depth: int = 30
    lr: float = 2e-3
    #: MaxSim scores are multiplied by this before the softmax
    scale: float = 1.0
    seed: int = 13
    #: fraction of each set's queries held out for validation
    holdout: float = 0.08
    #: use about this many training queries per set, and only their positives as the corpus (0 = all);
    #: what keeps a CPU run short (the frozen backbone's token states are the expensive part)
    max_queries: int = 0
    query_max_length: int = 64
    doc_max_length: int = 256
    query_augment: int = 0
    device: str = "auto"
    sets: tuple[str, ...] = field(default_factory=lambda: TRAIN_SETS)


# ----------------------------------------------------------------------------------------------------------
# MaxSim in torch
# ----------------------------------------------------------------------------------------------------------


def pad(states: Sequence[Any], device: Any, max_len: int | None = None, dtype: Any = None) -> tuple[Any, Any]:
    """Stack variable-length ``(tokens, dim)`` matrices into a padded tensor and its boolean mask."""
    import torch

    lengths = [min(len(s), max_len) if max_len else len(s) for s in states]
    width = max(max(lengths), 1)
    dim = states[0].shape[1]
    out = torch.zeros((len(states), width, dim), dtype=dtype or torch.float32, device=device)
    mask = torch.zeros((len(states), width), dtype=torch.bool, device=device)
    for i, (s, n) in enumerate(zip(states, lengths, strict=True)):
        if n:
            t = s[:n] if torch.is_tensor(s) else torch.from_numpy(np.asarray(s[:n], dtype=np.float32))
            out[i, :n] = t.to(device=device, dtype=out.dtype)
            mask[i, :n] = True
    return out, mask


def maxsim_scores(q: Any, q_mask: Any, d: Any, d_mask: Any) -> Any:
    """``(queries, docs)`` MaxSim of padded, already-normalized token tensors."""
    import torch

    sims = torch.einsum("qtd,nsd->qnts", q, d)
    sims = sims.masked_fill(~d_mask[None, :, None, :], -1e4)
    best = sims.max(dim=3).values
    return (best * q_mask[:, None, :].to(best.dtype)).sum(dim=2)


def project(head: Any, x: Any) -> Any:
    """Apply ``head`` (None = identity) and L2-normalize the last dimension."""
    import torch

    if head is not None:
        x = head(x)
    return torch.nn.functional.normalize(x.float(), dim=-1)


def score_all(
    head: Any,
    queries: Sequence[np.ndarray],
    docs: Sequence[np.ndarray],
    device: Any,
    doc_max_length: int | None = None,
    budget: int = 2**27,
) -> np.ndarray:
    """Exhaustive MaxSim ``(len(queries), len(docs))`` of raw states through ``head`` (batched by memory)."""
    import torch

    order = sorted(range(len(docs)), key=lambda i: len(docs[i]))
    scores = np.zeros((len(queries), len(docs)), dtype=np.float32)
    with torch.inference_mode():
        q_pad, q_mask = pad(queries, device)
        q_vec = project(head, q_pad)
        for start in range(0, len(order), 256):
            ids = order[start : start + 256]
            d_pad, d_mask = pad([docs[i] for i in ids], device, doc_max_length)
            d_vec = project(head, d_pad)
            per_query = max(1, budget // max(1, len(ids) * d_pad.shape[1] * q_pad.shape[1]))
            for qs in range(0, len(queries), per_query):
                part = maxsim_scores(q_vec[qs : qs + per_query], q_mask[qs : qs + per_query], d_vec, d_mask)
                scores[qs : qs + per_query, ids] = part.float().cpu().numpy()
    return scores


# ----------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """One set's token states, split into training and validation queries, with mined negatives."""

    name: str
    pids: list[str]
    doc_states: list[np.ndarray]
    train: list[tuple[np.ndarray, int, list[int]]]  # (query states, positive doc index, negative indexes)
    valid: list[tuple[np.ndarray, int]]


def prepare(
    data: TrainSet,
    q_states: Sequence[np.ndarray],
    d_states: Sequence[np.ndarray],
    settings: TrainSettings,
    rng: random.Random,
) -> Prepared:
    """Split queries (seeded), mine dense hard negatives for the training ones."""
    pids = list(data.passages)
    index = {pid: i for i, pid in enumerate(pids)}
    qids = [q for q in data.queries if q in data.positives]
    rng.shuffle(qids)
    n_valid = max(1, int(round(len(qids) * settings.holdout)))
    valid_ids, train_ids = qids[:n_valid], qids[n_valid:]
    if settings.max_queries:
        train_ids = train_ids[: settings.max_queries]
    qpos = {q: i for i, q in enumerate(data.queries)}

    dvec = mean_pooled(d_states)
    qvec = mean_pooled([q_states[qpos[q]] for q in train_ids])
    train = []
    for start in range(0, len(train_ids), 1024):
        sims = qvec[start : start + 1024] @ dvec.T
        top = np.argsort(-sims, axis=1)[:, : settings.mine_depth + 1]
        for row, qid in enumerate(train_ids[start : start + 1024]):
            pos = index[data.positives[qid]]
            negs = [int(d) for d in top[row] if d != pos][: settings.mine_depth]
            train.append((q_states[qpos[qid]], pos, negs))
    valid = [(q_states[qpos[q]], index[data.positives[q]]) for q in valid_ids]
    return Prepared(data.name, pids, list(d_states), train, valid)


def pca_init(head: Any, states: Sequence[np.ndarray], dim: int, seed: int) -> None:
    """Set the head's linear map to the top ``dim`` right singular vectors of a sample of token states."""
    import torch

    rng = np.random.default_rng(seed)
    flat = np.concatenate([s for s in states if len(s)]).astype(np.float32)
    flat = flat[rng.choice(len(flat), min(len(flat), 50_000), replace=False)]
    flat /= np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
    _, _, vt = np.linalg.svd(flat, full_matrices=False)
    with torch.no_grad():
        head.linear.weight.copy_(torch.from_numpy(vt[:dim].copy()))


def validate(head: Any, sets: Sequence[Prepared], device: Any, settings: TrainSettings) -> dict[str, float]:
    """MRR@10 of the held-out queries of each set against that set's whole corpus."""
    result = {}
    for p in sets:
        scores = score_all(head, [q for q, _ in p.valid], p.doc_states, device, settings.doc_max_length)
        result[p.name] = round(mrr_at_10(scores, [g for _, g in p.valid]), 4)
    result["mean"] = round(float(np.mean([result[p.name] for p in sets])), 4)
    return result


def train_head(
    sets: Sequence[Prepared],
    settings: TrainSettings,
    device: Any,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train a head on the prepared sets; return the best-validating head (CPU, eval mode) and a report."""
    import torch

    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    in_dim = sets[0].doc_states[0].shape[1]
    head = make_head(in_dim, settings.dim, settings.hidden)
    pca_init(head, [s for p in sets for s in p.doc_states[:3000]], settings.dim, settings.seed)
    head.to(device)
    raw = validate(None, sets, device, settings)
    report: dict[str, Any] = {"raw_states_valid_mrr10": raw, "epochs": []}
    best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
    best = validate(head, sets, device, settings)
    report["pca_init_valid_mrr10"] = best
    optim = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=0.0)
    batches = [(i, j) for i, p in enumerate(sets) for j in range(0, len(p.train), settings.batch_size)]
    steps = settings.epochs * len(batches)
    # warmup over 5% of the steps (``steps // 20``), then linear decay
    sched = torch.optim.lr_scheduler.LambdaLR(optim, WarmupLinearDecay(steps, 0.05))
    for epoch in range(1, settings.epochs + 1):
        head.train()
        started = time.perf_counter()
        for p in sets:
            rng.shuffle(p.train)
        rng.shuffle(batches)
        losses = []
        for set_index, start in batches:
            p = sets[set_index]
            batch = p.train[start : start + settings.batch_size]
            docs = [pos for _, pos, _ in batch]
            for _, _pos, negs in batch:
                docs.extend(rng.sample(negs, min(settings.negatives, len(negs))))
            q_pad, q_mask = pad([q for q, _, _ in batch], device)
            d_pad, d_mask = pad([p.doc_states[d] for d in docs], device, settings.doc_max_length)
            scores = (
                maxsim_scores(project(head, q_pad), q_mask, project(head, d_pad), d_mask) * settings.scale
            )
            doc_ids = torch.tensor(docs, device=device)
            positives = doc_ids[: len(batch)]
            same = (doc_ids[None, :] == positives[:, None]) & ~torch.eye(
                len(batch), len(docs), dtype=torch.bool, device=device
            )
            scores = scores.masked_fill(same, -1e4)
            loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(batch), device=device))
            optim.zero_grad()
            loss.backward()
            optim.step()
            sched.step()
            losses.append(float(loss.detach()))
        head.eval()
        valid = validate(head, sets, device, settings)
        entry = {
            "epoch": epoch,
            "loss": round(float(np.mean(losses)), 4),
            "valid_mrr10": valid,
            "seconds": round(time.perf_counter() - started, 1),
        }
        report["epochs"].append(entry)
        log.info("epoch %d: %s", epoch, entry)
        if on_epoch:
            on_epoch(epoch, entry)
        if valid["mean"] > best["mean"]:
            best = valid
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
    head.load_state_dict(best_state)
    head.to("cpu").eval()
    report["best_valid_mrr10"] = best
    return head, report


def train_colbert(settings: TrainSettings, command: str | None = None) -> dict[str, Any]:
    """Cache token states, mine negatives, train, validate, and write the head to ``settings.out_dir``."""
    import torch

    started = time.perf_counter()
    data_dir = train_dir(settings.data_dir)
    encoder = HFTokenEncoder(
        settings.model,
        query_max_length=settings.query_max_length,
        doc_max_length=settings.doc_max_length,
        query_augment=settings.query_augment,
        device=settings.device,
    )
    device = encoder.device
    rng = random.Random(settings.seed)
    prepared = []
    for name in settings.sets:
        data = load_train_set(data_dir, name)
        if settings.max_queries:
            data = subsample(data, settings.max_queries, settings.holdout, settings.seed)
        q_states = cached_states(encoder, list(data.queries.values()), True, f"{name}-q")
        d_states = cached_states(encoder, list(data.passages.values()), False, f"{name}-d")
        prepared.append(prepare(data, q_states, d_states, settings, rng))
    encode_seconds = time.perf_counter() - started
    if device == "cpu":
        torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    head, report = train_head(prepared, settings, device)
    info = {
        "name": Path(settings.out_dir).name,
        "backbone": settings.model,
        "query_augment": settings.query_augment,
        "prompts": encoder.prompts,
        "trained_on": {
            p.name: {"train_queries": len(p.train), "valid_queries": len(p.valid), "passages": len(p.pids)}
            for p in prepared
        },
        **provenance(settings, data_dir, device, command, "xlir train colbert"),
        "encode_seconds": round(encode_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        **report,
    }
    save_head(head, settings.out_dir, info)
    return info


def transfer_check(head_name: str | None, data_dir: Path | None = None, limit: int = 500) -> dict[str, float]:
    """MRR@10 of Korean MS MARCO queries against the Korean passages (validation of transfer only)."""
    data = load_train_set(train_dir(data_dir), "msmarco-dev-small", "ko")
    encoder = HFTokenEncoder()
    qids = [q for q in data.queries if q in data.positives][:limit]
    pids = sorted({data.positives[q] for q in qids})
    index = {p: i for i, p in enumerate(pids)}
    q_states = cached_states(encoder, [data.queries[q] for q in qids], True, "ko-q")
    d_states = cached_states(encoder, [data.passages[p] for p in pids], False, "ko-d")
    head = load_head(head_name)[0] if head_name else None
    scores = score_all(head, q_states, d_states, encoder.device)
    return {"ko_mrr10": round(mrr_at_10(scores, [index[data.positives[q]] for q in qids]), 4)}
