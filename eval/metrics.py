"""Scoring runs against qrels with ``ir_measures``, and paired significance tests.

:func:`evaluate` scores ``{qid: Ranking}`` by the *order* of each ranking (hits are given descending
synthetic scores before ``ir_measures`` sees them, so trec_eval's re-sort by score and its docid
tie-break cannot reorder a ranking). Only judged queries (those in the qrels) are scored; with
``fill_missing=True`` (the default) a judged query that has no hits counts as 0 on every measure instead of
silently dropping out of the mean. So pass qrels restricted to the queries you ran (``Collection.pair``
does this).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import ir_measures
import numpy as np
from scipy import stats

from xlir.eval.errors import EvalError
from xlir.indexing.ranking import Ranking

logger = logging.getLogger(__name__)

DEFAULT_MEASURES: tuple[str, ...] = ("nDCG@10", "RR@10", "R@100", "AP")
_EXAMPLES = "nDCG@10, RR@10, R@100, AP, P@1, Success@1, Judged@10, RR(rel=2)@10"

PerQuery = Mapping[str, float] | Sequence[float]


@dataclass(frozen=True)
class EvalResult:
    """Scores of one run: per measure, the value for each judged query, and the mean over queries.

    Measures are keyed by the names the caller gave (``"nDCG@10"``). ``missing`` lists the judged queries
    the run had no hits for (scored 0 when ``fill_missing``, otherwise left out of ``per_query``).
    """

    measures: tuple[str, ...]
    per_query: dict[str, dict[str, float]]
    aggregates: dict[str, float]
    missing: tuple[str, ...] = ()
    unjudged: tuple[str, ...] = field(default=())

    @property
    def num_queries(self) -> int:
        """How many queries each mean is over."""
        return len(next(iter(self.per_query.values()), {}))

    def __getitem__(self, measure: str) -> float:
        """The mean of ``measure``; a KeyError names the measures this result has."""
        try:
            return self.aggregates[measure]
        except KeyError:
            raise KeyError(
                f"measure {measure!r} was not evaluated; this result has {list(self.measures)}"
            ) from None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary: means, per-query values, query counts."""
        return {
            "measures": list(self.measures),
            "aggregates": dict(self.aggregates),
            "per_query": {name: dict(values) for name, values in self.per_query.items()},
            "num_queries": self.num_queries,
            "missing": list(self.missing),
            "unjudged": list(self.unjudged),
        }


def parse_measures(measures: Iterable[str]) -> dict[str, ir_measures.Measure]:
    """Parse measure names with ``ir_measures.parse_measure``; a bad name raises ValueError with examples."""
    if isinstance(measures, str):
        measures = (measures,)
    parsed: dict[str, ir_measures.Measure] = {}
    for name in measures:
        if not isinstance(name, str) or not name.strip():
            raise EvalError(f"measure names are strings such as {_EXAMPLES}; got {name!r}")
        try:
            parsed[name] = ir_measures.parse_measure(name.strip())
        except Exception as exc:  # ir_measures raises NameError, ValueError, TypeError...
            raise EvalError(
                f"unknown or malformed measure {name!r} ({exc}); ir_measures names look like {_EXAMPLES}"
            ) from None
    if not parsed:
        raise EvalError(f"no measures given; e.g. {_EXAMPLES}")
    return parsed


def evaluate(
    run: Mapping[str, Ranking],
    qrels: Mapping[str, Mapping[str, int]],
    measures: Iterable[str] = DEFAULT_MEASURES,
    fill_missing: bool = True,
) -> EvalResult:
    """Score ``run`` (``{qid: Ranking}``) against ``qrels`` (``{qid: {docid: relevance}}``).

    Queries in the run but not in the qrels are unjudged and ignored (listed in ``unjudged``). A judged
    query with no hits scores 0 when ``fill_missing`` (default), or is left out when False (trec_eval
    without ``-c``).
    """
    parsed = parse_measures(measures)
    if not qrels:
        raise EvalError(
            "the qrels are empty: there is nothing to evaluate against; check the qrels file/filter"
        )
    run_dict: dict[str, dict[str, float]] = {}
    for qid, ranking in run.items():
        if not isinstance(ranking, Ranking):
            raise TypeError(f"run entry for query {qid!r} must be a Ranking, got {type(ranking).__name__}")
        scores: dict[str, float] = {}
        for position, hit in enumerate(ranking.hits):
            scores.setdefault(hit.docid, float(len(ranking.hits) - position))
        if scores:
            run_dict[str(qid)] = scores
    qrels_dict = {str(qid): {str(d): int(r) for d, r in docs.items()} for qid, docs in qrels.items()}

    judged = set(qrels_dict)
    missing = tuple(sorted(judged - set(run_dict)))
    unjudged = tuple(sorted(set(run_dict) - judged))
    if missing:
        logger.warning(
            "%d of %d judged queries have no hits in the run; %s",
            len(missing),
            len(judged),
            "they score 0" if fill_missing else "they are left out of the means",
        )
    scored_qids = sorted(judged) if fill_missing else sorted(judged & set(run_dict))

    by_measure: dict[ir_measures.Measure, list[str]] = {}
    for name, measure in parsed.items():
        by_measure.setdefault(measure, []).append(name)  # two spellings of one measure share its values
    per_query: dict[str, dict[str, float]] = {name: {} for name in parsed}
    judged_run = {qid: docs for qid, docs in run_dict.items() if qid in judged}
    if judged_run:
        for metric in ir_measures.iter_calc(list(by_measure), qrels_dict, judged_run):
            for name in by_measure.get(metric.measure, ()):
                per_query[name][metric.query_id] = float(metric.value)
    for name in parsed:
        values = per_query[name]
        per_query[name] = {qid: values.get(qid, 0.0) for qid in scored_qids if fill_missing or qid in values}
    aggregates = {
        name: (float(np.mean(list(values.values()))) if values else math.nan)
        for name, values in per_query.items()
    }
    return EvalResult(
        measures=tuple(parsed), per_query=per_query, aggregates=aggregates, missing=missing, unjudged=unjudged
    )


def accuracy_at_1(
    run: Mapping[str, Ranking], qrels: Mapping[str, Mapping[str, int]], fill_missing: bool = True
) -> float:
    """Fraction of judged queries whose first hit is relevant (ir_measures ``Success@1``)."""
    return evaluate(run, qrels, ("Success@1",), fill_missing=fill_missing).aggregates["Success@1"]


def paired_ttest(a_per_query: PerQuery, b_per_query: PerQuery) -> float:
    """Two-sided paired t-test p-value for per-query scores of two systems on the same queries.

    Takes ``{qid: value}`` mappings (same query ids) or equal-length sequences. Identical scores give 1.0.
    """
    a, b = _paired(a_per_query, b_per_query)
    diff = a - b
    if not np.any(diff):
        return 1.0
    if len(diff) < 2:
        raise EvalError("a paired t-test needs at least 2 queries")
    if np.all(diff == diff[0]):
        return 0.0  # a constant non-zero difference: zero variance, the difference is certain
    return float(stats.ttest_rel(a, b).pvalue)


def randomization_test(
    a_per_query: PerQuery, b_per_query: PerQuery, trials: int = 10000, seed: int = 0
) -> float:
    """Two-sided paired randomization (sign-flip permutation) test p-value for the mean difference.

    Each trial flips the sign of every query's difference with probability 1/2; the p-value is
    ``(1 + #trials with |mean| >= |observed mean|) / (1 + trials)``. Deterministic for a given ``seed``.
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials <= 0:
        raise EvalError(f"trials must be a positive integer (10000 is usual), got {trials!r}")
    a, b = _paired(a_per_query, b_per_query)
    diff = a - b
    observed = abs(diff.mean())
    if observed == 0.0:
        return 1.0
    rng = np.random.default_rng(seed)
    tolerance = 1e-12 * max(1.0, observed)
    hits = 0
    batch = max(1, min(trials, 2_000_000 // max(1, len(diff))))
    done = 0
    while done < trials:
        size = min(batch, trials - done)
        signs = rng.integers(0, 2, size=(size, len(diff)), dtype=np.int8) * 2 - 1
        means = np.abs(signs @ diff) / len(diff)
        hits += int(np.count_nonzero(means >= observed - tolerance))
        done += size
    return (hits + 1) / (trials + 1)


def _paired(a: PerQuery, b: PerQuery) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise TypeError("give both systems' scores as {qid: value} mappings, or both as sequences")
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        only_a = sorted(set(a) - set(b))
        only_b = sorted(set(b) - set(a))
        if only_a or only_b:
            raise ValueError(
                f"the two systems were scored on different queries ({len(only_a)} only in the first, e.g. "
                f"{only_a[:3]}; {len(only_b)} only in the second, e.g. {only_b[:3]}); evaluate both on the same "
                "qrels with fill_missing=True"
            )
        keys = sorted(a)
        a_values = np.array([a[key] for key in keys], dtype=float)
        b_values = np.array([b[key] for key in keys], dtype=float)
    else:
        a_values = np.asarray(list(a), dtype=float)
        b_values = np.asarray(list(b), dtype=float)
        if a_values.shape != b_values.shape:
            raise ValueError(f"paired scores need equal lengths, got {len(a_values)} and {len(b_values)}")
    if a_values.size == 0:
        raise ValueError("no per-query scores to compare")
    if not (np.all(np.isfinite(a_values)) and np.all(np.isfinite(b_values))):
        raise ValueError("per-query scores must be finite numbers (found NaN or infinity)")
    return a_values, b_values
