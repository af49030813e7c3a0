"""Comparing and fusing runs: systems x measures with paired significance, and run-level fusion.

* :func:`compare_runs` scores several runs on the same judged queries and tests each against a baseline
  with the two-sided paired t-test and the paired randomization test (:mod:`xlir.eval.metrics`).
* :func:`fuse_runs` fuses runs query by query with :func:`xlir.retrieval.fusion.rrf` or
  :func:`xlir.retrieval.fusion.normalized_fusion` (min-max or z-score).
* :func:`restrict_qrels` keeps the judgments of the queries that were run, so that a judged query a
  system found nothing for counts as 0 instead of silently leaving the mean.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from xlir.eval.errors import EvalError
from xlir.eval.metrics import DEFAULT_MEASURES, EvalResult, evaluate, paired_ttest, randomization_test
from xlir.eval.trec import Qrels, Run
from xlir.indexing.ranking import Ranking
from xlir.retrieval.fusion import normalized_fusion, rrf

logger = logging.getLogger(__name__)

FusionMethod = Literal["rrf", "minmax", "zscore"]
FUSION_METHODS: tuple[str, ...] = ("rrf", "minmax", "zscore")


def restrict_qrels(qrels: Qrels, qids: Collection[str]) -> Qrels:
    """The judgments of the queries in ``qids`` only; a ValueError if none of them is judged."""
    wanted = set(qids)
    restricted = {qid: docs for qid, docs in qrels.items() if qid in wanted}
    if not restricted:
        example = next(iter(wanted), None)
        raise EvalError(
            f"none of the {len(wanted)} queries (e.g. {example!r}) is judged in the qrels "
            f"({len(qrels)} judged queries, e.g. {next(iter(qrels), None)!r}); check that the run and "
            "the qrels belong to the same topics"
        )
    dropped = len(qrels) - len(restricted)
    if dropped:
        logger.info(
            "scoring %d judged queries; %d other judged queries were not run", len(restricted), dropped
        )
    return restricted


def system_names(paths: Sequence[str | Path], runs: Sequence[Run]) -> list[str]:
    """A distinct name per run: its run tag, else the file name without suffix, else ``name#i``."""
    tags = [
        next(iter(run.values())).source if run else Path(path).stem
        for path, run in zip(paths, runs, strict=True)
    ]
    if len(set(tags)) == len(tags):
        return tags
    stems = [Path(path).stem for path in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{stem}#{i}" for i, stem in enumerate(stems, start=1)]


def fuse_runs(
    runs: Mapping[str, Run],
    method: FusionMethod = "rrf",
    *,
    rrf_k: int = 60,
    weights: Mapping[str, float] | None = None,
    limit: int | None = 1000,
    source: str | None = None,
) -> Run:
    """Fuse named runs (``{name: {qid: Ranking}}``) query by query into one run.

    Every query of any input is fused from the inputs that have it. Each input ranking is renamed to its
    run's name, which keys ``weights`` (``minmax``/``zscore`` only; missing names weigh 1.0) and the hits'
    provenance. ``limit`` cuts each fused ranking (``None``: keep all). The fused rankings' ``source``
    is ``source`` (default: the method name).
    """
    if method not in FUSION_METHODS:
        raise EvalError(f"unknown fusion method {method!r}; use one of {list(FUSION_METHODS)}")
    if len(runs) < 2:
        raise EvalError(f"fusion needs at least 2 runs, got {len(runs)}")
    if weights and method == "rrf":
        raise EvalError("weights apply to --method minmax or zscore; rrf weighs every run equally")
    unknown = sorted(set(weights or {}) - set(runs))
    if unknown:
        raise EvalError(f"weights name unknown run(s) {unknown}; the runs are {list(runs)}")
    source = source or method
    qids: dict[str, None] = {}
    for run in runs.values():
        qids.update(dict.fromkeys(run))
    fused: Run = {}
    try:
        for qid in qids:
            inputs = [dataclasses.replace(run[qid], source=name) for name, run in runs.items() if qid in run]
            if method == "rrf":
                fused[qid] = rrf(inputs, k=rrf_k, source=source, limit=limit)
                continue
            used = {ranking.source: float((weights or {}).get(ranking.source, 1.0)) for ranking in inputs}
            if not any(used.values()):
                fused[qid] = Ranking(source=source)
                continue
            fused[qid] = normalized_fusion(inputs, weights=used, method=method, source=source, limit=limit)
    except ValueError as exc:  # fusion's checks of what it was given: rrf_k, limit, weights, the runs' scores
        raise EvalError(str(exc)) from exc
    return fused


def parse_weights(values: Sequence[str] | None) -> dict[str, float] | None:
    """``["bm25=0.7", "dense=0.3"]`` (``--weight NAME=NUMBER``) as ``{name: weight}``; None when none given."""
    if not values:
        return None
    weights: dict[str, float] = {}
    for value in values:
        name, sep, number = value.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            weights[name] = float(number)
        except ValueError:
            raise EvalError(f"--weight {value!r} must be NAME=NUMBER, e.g. --weight bm25=0.7") from None
    return weights


def choose_baseline(baseline: str | None, paths: Sequence[str | Path], names: Sequence[str]) -> str:
    """The name of the baseline run: ``baseline`` as a run's name or as its path; the first run by default."""
    if baseline is None:
        return names[0]
    if baseline in names:
        return baseline
    by_path = {str(path): name for path, name in zip(paths, names, strict=True)}
    if baseline in by_path:
        return by_path[baseline]
    raise EvalError(f"--baseline {baseline!r} is none of the runs: give one of {names} or its path")


@dataclass(frozen=True)
class SystemScores:
    """One system's means, and against the baseline: difference and paired p-values per measure."""

    name: str
    result: EvalResult
    delta: dict[str, float]
    ttest_p: dict[str, float]
    randomization_p: dict[str, float]


@dataclass(frozen=True)
class Comparison:
    """Systems x measures on the same judged queries; p-values are paired tests against ``baseline``."""

    measures: tuple[str, ...]
    baseline: str
    systems: tuple[SystemScores, ...]
    num_queries: int
    trials: int

    def to_dict(self) -> dict[str, object]:
        return {
            "baseline": self.baseline,
            "measures": list(self.measures),
            "num_queries": self.num_queries,
            "randomization_trials": self.trials,
            "systems": [
                {
                    "name": system.name,
                    "means": dict(system.result.aggregates),
                    "delta": system.delta,
                    "ttest_p": system.ttest_p,
                    "randomization_p": system.randomization_p,
                }
                for system in self.systems
            ],
        }

    def rows(self) -> list[list[str]]:
        """Table cells: system, then per measure ``mean (+delta, p_t, p_rand)``."""
        rows = []
        for system in self.systems:
            cells = [system.name + (" (baseline)" if system.name == self.baseline else "")]
            for measure in self.measures:
                mean = system.result.aggregates[measure]
                if system.name == self.baseline:
                    cells.append(f"{mean:.4f}")
                else:
                    cells.append(
                        f"{mean:.4f} ({system.delta[measure]:+.4f}; t {_p(system.ttest_p[measure])}, "
                        f"rand {_p(system.randomization_p[measure])}){_stars(system, measure)}"
                    )
            rows.append(cells)
        return rows

    def long_rows(self) -> list[list[str]]:
        """One row per (system, measure): system, measure, mean, difference, t-test p, randomization p."""
        rows = []
        for system in self.systems:
            is_base = system.name == self.baseline
            for measure in self.measures:
                rows.append(
                    [
                        system.name + (" (baseline)" if is_base else ""),
                        measure,
                        f"{system.result.aggregates[measure]:.4f}",
                        "" if is_base else f"{system.delta[measure]:+.4f}",
                        "" if is_base else _p(system.ttest_p[measure]).removeprefix("p="),
                        ""
                        if is_base
                        else _p(system.randomization_p[measure]).removeprefix("p=") + _stars(system, measure),
                    ]
                )
        return rows

    def to_markdown(self) -> str:
        """A markdown table; ``*`` marks p < 0.05 in both tests."""
        header = ["system", *self.measures]
        lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(self.measures)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows()]
        lines.append("")
        lines.append(
            f"{self.num_queries} queries; in parentheses: difference to {self.baseline}, two-sided paired "
            f"t-test and randomization test ({self.trials} trials) p-values; * = both p < 0.05."
        )
        return "\n".join(lines) + "\n"


def compare_runs(
    runs: Mapping[str, Run],
    qrels: Qrels,
    measures: Sequence[str] = DEFAULT_MEASURES,
    *,
    baseline: str | None = None,
    trials: int = 10000,
    seed: int = 0,
) -> Comparison:
    """Score every run on the same judged queries and test each against ``baseline`` (default: the first).

    Pass qrels restricted to the queries that were run (:func:`restrict_qrels`): every judged query is
    scored for every system (a query a system has no hits for counts 0), which keeps the tests paired.
    """
    if not runs:
        raise EvalError("give at least one run to compare")
    names = list(runs)
    baseline = baseline if baseline is not None else names[0]
    if baseline not in runs:
        raise EvalError(f"baseline {baseline!r} is not one of the runs {names}")
    results = {name: evaluate(run, qrels, measures) for name, run in runs.items()}
    base = results[baseline]
    systems = []
    for name in names:
        result = results[name]
        delta, t_p, r_p = {}, {}, {}
        for measure in result.measures:
            delta[measure] = result.aggregates[measure] - base.aggregates[measure]
            if name == baseline:
                t_p[measure] = r_p[measure] = 1.0
                continue
            a, b = result.per_query[measure], base.per_query[measure]
            t_p[measure] = paired_ttest(a, b) if len(a) >= 2 else math.nan
            r_p[measure] = randomization_test(a, b, trials=trials, seed=seed)
        systems.append(SystemScores(name, result, delta, t_p, r_p))
    return Comparison(
        measures=tuple(base.measures),
        baseline=baseline,
        systems=tuple(systems),
        num_queries=base.num_queries,
        trials=trials,
    )


def _p(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return "p<0.001" if value < 0.001 else f"p={value:.3f}"


def _stars(system: SystemScores, measure: str) -> str:
    t_p, r_p = system.ttest_p[measure], system.randomization_p[measure]
    return " *" if t_p < 0.05 and r_p < 0.05 else ""
