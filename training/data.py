"""The English training data every trainer reads, and the frozen backbone's token states of it, cached.

* :data:`TRAIN_SETS` / :func:`load_train_set`: the training sets under ``shared/data/train`` (MS MARCO
  dev.small pairs and the SQuAD train part), each in the shared layout ``<set>/{queries,corpus,qrels}/<lang>``,
  positives only; :func:`subsample` takes the seeded subsets that keep a CPU run short;
* :func:`cached_states`: an encoder's raw token states of a list of texts, computed once and cached on disk
  by content (under ``$XLIR_HOME/cache/colbert-train``, never the repository), so that the ColBERT head and
  the rerankers, trained with the same encoder settings, share them;
* :func:`mean_pooled`: the dense first stage over those states (mean-pooled, L2-normalized), which mines
  the hard negatives of every trainer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xlir.errors import NotFoundError
from xlir.eval.trec import read_qrels, read_topics
from xlir.models.paths import cache_dir, data_root

log = logging.getLogger(__name__)

TRAIN_SETS = ("msmarco-dev-small", "squad-train-part")


class TrainSetNotFoundError(NotFoundError, FileNotFoundError):
    """A training set named on the command line is not in the data folder."""


@dataclass
class TrainSet:
    """One English training set: texts, the positive passage of each query, and the held-out queries."""

    name: str
    queries: dict[str, str]
    passages: dict[str, str]
    positives: dict[str, str]


def train_dir(data_dir: str | Path | None = None) -> Path:
    """``data_dir`` where given, else ``train/`` under the shared data root (``$XLIR_DATA``, else
    ``shared/data`` beside the checkout)."""
    return Path(data_dir) if data_dir else data_root() / "train"


def load_train_set(root: Path, name: str, lang: str = "en") -> TrainSet:
    """Read ``<root>/<name>/{queries,corpus,qrels}/<lang>`` (the shared layout, positives only)."""
    base = Path(root) / name
    if not base.is_dir():
        raise TrainSetNotFoundError(
            f"training set {base} does not exist; pass --data-dir pointing at shared/data/train "
            "(it holds msmarco-dev-small and squad-train-part)."
        )
    queries = read_topics(base / "queries" / f"{lang}.tsv")
    passages: dict[str, str] = {}
    with open(base / "corpus" / f"{lang}.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                passages[str(row["id"])] = str(row["text"])
    positives: dict[str, str] = {}
    for qid, docs in read_qrels(base / "qrels" / f"{lang}.txt").items():
        best = [d for d, rel in docs.items() if rel > 0 and d in passages]
        if best and qid in queries:
            positives[qid] = sorted(best)[0]
    return TrainSet(name, queries, passages, positives)


def subsample(
    data: TrainSet, max_queries: int, holdout: float, seed: int, from_end: bool = False
) -> TrainSet:
    """A seeded subset: about ``max_queries`` training queries (plus their held-out share) and, as the corpus,
    only the passages that are positives of the kept queries (how MS MARCO dev.small's corpus is made).

    ``from_end``: take the queries from the end of the seeded permutation instead of its beginning, i.e.
    disjoint from the subset the same seed gives without it (the shipped ColBERT head's training queries),
    for a model that starts from that head and must be validated on queries it never saw."""
    qids = sorted(q for q in data.queries if q in data.positives)
    random.Random(seed).shuffle(qids)
    n = int(round(max_queries / max(1e-9, 1 - holdout)))
    keep = qids[len(qids) - n :] if from_end else qids[:n]
    pids = {data.positives[q] for q in keep}
    kept = set(keep)
    return TrainSet(
        data.name,
        {q: t for q, t in data.queries.items() if q in kept},
        {p: t for p, t in data.passages.items() if p in pids},
        {q: data.positives[q] for q in keep},
    )


def cached_states(
    encoder: Any, texts: Sequence[str], is_query: bool, tag: str, cache: Path | None = None
) -> list[np.ndarray]:
    """The encoder's raw token states of ``texts`` (float16), computed once and cached on disk by content."""
    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            [
                str(encoder.path),
                encoder.prompts,
                is_query,
                encoder.query_max_length,
                encoder.doc_max_length,
                encoder.query_augment,
            ]
        ).encode()
    )
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    cache = cache or cache_dir("colbert-train")
    path = cache / f"{tag}-{digest.hexdigest()[:16]}.npz"
    if path.is_file():
        data = np.load(path)
        flat, offsets = data["states"], data["offsets"]
        return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    started = time.perf_counter()
    states: list[np.ndarray] = []
    for start in range(0, len(texts), 512):
        part = encoder.token_states(list(texts[start : start + 512]), is_query=is_query)
        states.extend(s.astype(np.float16) for s in part)
        log.info("%s: %d/%d texts encoded", tag, len(states), len(texts))
    offsets = np.zeros(len(states) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in states], out=offsets[1:])
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, states=np.concatenate(states), offsets=offsets)
    tmp.replace(path)
    log.info("%s: %d texts in %.1f s, cached at %s", tag, len(texts), time.perf_counter() - started, path)
    return states


def mean_pooled(states: Sequence[np.ndarray]) -> np.ndarray:
    """One L2-normalized vector per text: the mean of its token states (the dense first stage)."""
    m = np.stack([s.astype(np.float32).mean(axis=0) if len(s) else np.zeros(s.shape[1]) for s in states])
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
