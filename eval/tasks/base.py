"""What every reproduction task shares: the task record, its context, the xlir runs and the markdown tables.

A task is one module of :mod:`xlir.eval.tasks` with a :class:`Task` named ``TASK``: its name (``--tasks``),
the :class:`~xlir.eval.experiments.Settings` fields it reads (its table's ``settings`` in the experiments
file) and ``run(context)``, which returns the table's markdown and the means that ``--check`` compares.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

from xlir.eval.experiments import Settings
from xlir.eval.metrics import evaluate
from xlir.eval.trec import Run
from xlir.retrieval.fusion import rrf
from xlir.retrieval.searcher import Searcher

T = TypeVar("T")


class TaskResult(NamedTuple):
    """A task's section of the results file (markdown) and its means ({system or measure: value})."""

    body: str
    means: dict[str, float]


@dataclass(frozen=True)
class TaskContext:
    """Where a task finds its data and keeps its indexes, and what it runs."""

    data: Path
    cache: Path
    work: Path
    settings: Settings
    #: queries per topic set (a quick smoke run); None = all
    limit: int | None = None
    #: xquad-pool: search a cached pool index instead of building it anew
    reuse_pool_index: bool = False

    def first(self, topics: Mapping[str, str]) -> dict[str, str]:
        """The topics a run takes: all of them, or the first ``limit``."""
        items = list(topics.items())
        return dict(items if self.limit is None else items[: self.limit])

    def cap(self, n: int) -> int:
        """A task's own query count, never above ``limit`` when one is given."""
        return n if self.limit is None else min(n, self.limit)


@dataclass(frozen=True)
class Task:
    """One reproduction task: the table it writes is the experiments file's table of the same name."""

    name: str
    settings: tuple[str, ...]
    run: Callable[[TaskContext], TaskResult]


def judged(qrels: Mapping[str, Mapping[str, int]], topics: Mapping[str, str]) -> dict[str, Mapping[str, int]]:
    """The judgments of the topics that were run (a --limit run must not count the others as zeros)."""
    return {qid: qrels[qid] for qid in topics if qid in qrels}


def xlir_runs(index: Path, topics: Mapping[str, str], channels: Sequence[str], depth: int) -> dict[str, Run]:
    """One run per channel, the fused run exactly as ``Searcher`` returns it, and fusion variants."""
    runs: dict[str, Run] = {}
    with Searcher(index) as searcher:
        for channel in channels:
            runs[f"xlir {channel}"] = searcher.rankings(topics, k=depth, channels=[channel])
        # What the product returns: every channel, BM25 limited to the query's language (FirstStage.scope);
        # the channels searched the same way as alone are not searched again.
        runs["xlir fused"] = searcher.rankings(
            topics, k=depth, searched={c: runs[f"xlir {c}"] for c in channels}
        )
    qids = list(topics)
    if "bm25" in channels:
        runs["xlir rrf, bm25 unscoped"] = {
            q: rrf([runs[f"xlir {c}"][q] for c in channels]).top(depth) for q in qids
        }
    if "dense" in channels and "sparse" in channels:
        runs["xlir fused dense+sparse"] = {
            q: rrf([runs["xlir dense"][q], runs["xlir sparse"][q]]).top(depth) for q in qids
        }
    return runs


def ndcg(run: Run, qrels: Mapping[str, Mapping[str, int]]) -> float:
    """nDCG@10 of a run."""
    return evaluate(run, qrels, ["nDCG@10"])["nDCG@10"]


def pair_names(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """``("de", "en")`` -> ``"de:en"``: a pair's column in the tables."""
    return [f"{q}:{d}" for q, d in pairs]


def pair_table(table: Mapping[str, Mapping[str, float]], columns: Sequence[str], title: str) -> list[str]:
    """Markdown lines: one row per system that has every column, the columns' mean last."""
    lines = [f"| {title} | " + " | ".join(columns) + " | mean |", "|---|" + "---:|" * (len(columns) + 1)]
    for system, values in table.items():
        if not all(c in values for c in columns):
            continue
        cells = " | ".join(f"{values[c]:.3f}" for c in columns)
        lines.append(f"| {system} | {cells} | {statistics.mean(values[c] for c in columns):.3f} |")
    return lines


def means(table: Mapping[str, Mapping[str, float]], label: str = "{}") -> dict[str, float]:
    """Each system's mean over its columns, keyed ``label.format(system)``."""
    return {label.format(system): statistics.mean(values.values()) for system, values in table.items()}


def timed(call: Callable[[T], object], items: Sequence[T]) -> tuple[list[float], float]:
    """``call`` on each item in turn: wall milliseconds per call, and process CPU milliseconds per call."""
    wall = []
    cpu_started = time.process_time()
    for item in items:
        started = time.perf_counter()
        call(item)
        wall.append((time.perf_counter() - started) * 1000)
    return wall, (time.process_time() - cpu_started) * 1000 / len(items)
