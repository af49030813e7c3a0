"""Running a system over topics: ``{qid: text}`` -> ``{qid: Ranking}`` through :class:`Searcher`, timed.

A *run* is what TREC calls the output of one system on one topic set. :func:`run_topics` sends the topics
through :meth:`xlir.retrieval.searcher.Searcher.rankings` in batches of ``batch_size`` queries and records how
long each batch took. With ``batch_size=1`` (the default) every query is its own call, so the recorded
times are true per-query latencies (what an interactive user waits); with larger batches each query is
given its batch's time divided by the batch size (amortized latency, the throughput view - the neural
channels encode a batch at once).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xlir.eval.errors import EvalError
from xlir.eval.trec import write_run
from xlir.indexing.ranking import Ranking
from xlir.retrieval.searcher import Searcher

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatencyStats:
    """Query latency of one run in milliseconds, and throughput.

    ``amortized`` is True when queries were sent in batches (each query's latency is then its batch's
    time divided by the batch size, not a time anyone waited for).
    """

    queries: int
    p50_ms: float
    p95_ms: float
    mean_ms: float
    max_ms: float
    queries_per_second: float
    amortized: bool = False

    def to_dict(self) -> dict[str, float | int | bool]:
        return {
            "queries": self.queries,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "mean_ms": self.mean_ms,
            "max_ms": self.max_ms,
            "queries_per_second": self.queries_per_second,
            "amortized": self.amortized,
        }


def latency_stats(latencies: Mapping[str, float] | Sequence[float], amortized: bool = False) -> LatencyStats:
    """p50/p95/mean/max (milliseconds) and queries per second from per-query seconds."""
    values = np.asarray(
        list(latencies.values() if isinstance(latencies, Mapping) else latencies), dtype=float
    )
    if values.size == 0:
        nan = math.nan
        return LatencyStats(0, nan, nan, nan, nan, nan, amortized)
    total = float(values.sum())
    return LatencyStats(
        queries=int(values.size),
        p50_ms=float(np.percentile(values, 50) * 1000.0),
        p95_ms=float(np.percentile(values, 95) * 1000.0),
        mean_ms=float(values.mean() * 1000.0),
        max_ms=float(values.max() * 1000.0),
        queries_per_second=float(values.size / total) if total > 0 else math.inf,
        amortized=amortized,
    )


@dataclass(frozen=True)
class RunResult:
    """One system's rankings for a topic set, with the time each query took (seconds)."""

    rankings: dict[str, Ranking]
    latencies: dict[str, float]
    batch_size: int = 1
    k: int = 1000
    channels: tuple[str, ...] = ()
    langs: tuple[str, ...] | None = None
    wall_seconds: float = 0.0
    empty: tuple[str, ...] = field(default=())

    @property
    def latency(self) -> LatencyStats:
        """Latency summary (amortized when ``batch_size > 1``)."""
        return latency_stats(self.latencies, amortized=self.batch_size > 1)

    def write(self, path: str | Path, tag: str) -> Path:
        """Write the rankings as a TREC run file with run tag ``tag``."""
        return write_run(path, self.rankings, tag)


def run_topics(
    searcher: Searcher,
    topics: Mapping[str, str],
    *,
    k: int = 1000,
    langs: Collection[str] | None = None,
    channels: Sequence[str] | None = None,
    batch_size: int = 1,
) -> RunResult:
    """Search every topic with ``searcher.rankings`` (``batch_size`` queries a call) and time it.

    ``langs`` restricts the documents searched to those languages, ``channels`` picks the index's
    channels (all by default; several are fused with RRF by the searcher). Every topic gets a ranking,
    possibly empty (listed in ``RunResult.empty``; it scores 0 when evaluated with ``fill_missing``).
    """
    if not topics:
        raise EvalError("there are no topics to run; check the topics file (qid<TAB>text, one a line)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise EvalError(f"batch_size must be a positive integer (1 = one query a call), got {batch_size!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise EvalError(f"k (hits per query) must be a positive integer, got {k!r}")
    qids = list(topics)
    rankings: dict[str, Ranking] = {}
    latencies: dict[str, float] = {}
    started = time.perf_counter()
    for start in range(0, len(qids), batch_size):
        chunk = qids[start : start + batch_size]
        batch = {qid: topics[qid] for qid in chunk}
        tick = time.perf_counter()
        found = searcher.rankings(batch, k=k, langs=langs, channels=channels)
        seconds = time.perf_counter() - tick
        for qid in chunk:
            rankings[qid] = found[qid]
            latencies[qid] = seconds / len(chunk)
    wall = time.perf_counter() - started
    empty = tuple(qid for qid in qids if not rankings[qid].hits)
    if empty:
        logger.info("%d of %d topics found no documents (e.g. %s)", len(empty), len(qids), empty[:3])
    return RunResult(
        rankings=rankings,
        latencies=latencies,
        batch_size=batch_size,
        k=k,
        channels=tuple(channels) if channels else tuple(searcher.channels),
        langs=tuple(sorted(langs)) if langs else None,
        wall_seconds=wall,
        empty=empty,
    )


def run_index(
    index_dir: str | Path,
    topics: Mapping[str, str],
    *,
    k: int = 1000,
    langs: Collection[str] | None = None,
    channels: Sequence[str] | None = None,
    batch_size: int = 1,
) -> RunResult:
    """Open the index at ``index_dir`` (only the chosen ``channels``) and :func:`run_topics` on it."""
    with Searcher(index_dir, channels=channels) as searcher:
        return run_topics(searcher, topics, k=k, langs=langs, channels=channels, batch_size=batch_size)


def default_tag(index_dir: str | Path, channels: Sequence[str] | None) -> str:
    """A run tag from the index name and channels, e.g. ``xquad-bm25`` or ``xquad-bm25+dense``."""
    name = Path(index_dir).resolve().name or "index"
    parts = [name, "+".join(channels) if channels else "all"]
    return "-".join("".join(ch if not ch.isspace() else "_" for ch in part) for part in parts)
