"""``xlir eval``: TREC-style runs, scores, fusion, system comparison, language-pair grids and pools.

A typer sub-app (``xlir.eval.cli.app``) that ``xlir`` mounts as ``xlir eval``; it also runs on its own
(``python -c "from xlir.eval.cli import app; app()" ...``). Results go to stdout (a table, ``--markdown`` or
``--json``); progress and notices go to stderr. A :class:`xlir.errors.UserError` (a bad option, a missing or
malformed file) is one line and exit status 2 (:class:`UserErrorsAsMessages`, which ``xlir`` uses too);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from xlir.errors import UserError

console = Console(stderr=True)
out = Console()


class UserErrorsAsMessages(TyperGroup):
    """A command group that shows a :class:`UserError` from any of its commands as one line, exit status 2.

    Defined here, the lowest layer with a command line of its own, so that ``xlir eval`` behaves the same
    run alone as mounted in ``xlir`` (whose root group is this class too).
    """

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except UserError as error:
            console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None


app = typer.Typer(
    cls=UserErrorsAsMessages,
    help="Evaluate TREC-style: run topics into run files, score, fuse and compare runs, "
    "language-pair grids and multilingual pools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

Measures = Annotated[
    list[str] | None,
    typer.Option(
        "--measure", "-m", help="ir_measures name, repeatable (default: nDCG@10, RR@10, R@100, AP)."
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
AsMarkdown = Annotated[bool, typer.Option("--markdown", help="Print a markdown table.")]
Channels = Annotated[
    list[str] | None, typer.Option("--channel", "-c", help="Channel(s), repeatable or comma-separated.")
]
Hits = Annotated[int, typer.Option("-k", help="Hits per query.")]
CollectionDir = Annotated[
    Path, typer.Argument(help="A collection (corpus/, queries/, qrels/) or its name under shared/data.")
]
WorkDir = Annotated[
    Path | None, typer.Option(help="Index cache (default $XLIR_HOME/eval-indexes); indexes are reused.")
]
BatchSize = Annotated[int, typer.Option(help="Queries per search call (1: true latency).")]


def _split(values: list[str] | None) -> list[str]:
    """Repeated and comma-separated option values as one list: ``-l en,de -l zh`` -> en, de, zh."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def _print_json(data: Any) -> None:
    from xlir.eval.trec import json_safe

    typer.echo(json.dumps(json_safe(data), indent=2, ensure_ascii=False))


def _work_dir(work_dir: Path | None) -> Path:
    if work_dir is not None:
        return work_dir
    from xlir.eval.grid import index_cache

    return index_cache()


def _latency_line(latency) -> str:  # noqa: ANN001
    kind = "amortized per query" if latency.amortized else "per query"
    return (
        f"latency {kind}: p50 {latency.p50_ms:.1f} ms, p95 {latency.p95_ms:.1f} ms, "
        f"{latency.queries_per_second:,.1f} queries/s"
    )


# --- run ---------------------------------------------------------------------------------------------


@app.command("run")
def run(
    index_dir: Annotated[Path, typer.Argument(help="An index directory (xlir index build).")],
    topics: Annotated[
        Path, typer.Option("--topics", "-t", help="Topics: TSV (qid<TAB>text), JSONL or TREC.")
    ],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="The TREC run file to write.")],
    channel: Channels = None,
    lang: Annotated[
        list[str] | None, typer.Option("--lang", "-l", help="Only documents in these languages.")
    ] = None,
    k: Hits = 1000,
    tag: Annotated[str | None, typer.Option(help="Run tag (6th column); default <index>-<channels>.")] = None,
    batch_size: Annotated[
        int, typer.Option(help="Queries per search call; 1 measures true per-query latency.")
    ] = 1,
    as_json: AsJson = False,
) -> None:
    """Run TOPICS through INDEX_DIR and write a TREC run file; report query latency (p50/p95)."""
    from xlir.eval.runner import default_tag, run_topics
    from xlir.eval.trec import read_topics
    from xlir.retrieval.searcher import Searcher

    channels = _split(channel) or None
    queries = read_topics(topics)
    with Searcher(index_dir, channels=channels) as searcher:
        result = run_topics(
            searcher, queries, k=k, langs=_split(lang) or None, channels=channels, batch_size=batch_size
        )
        run_tag = tag or default_tag(index_dir, searcher.channels)
    result.write(out_path, run_tag)
    latency = result.latency
    hits = sum(len(ranking) for ranking in result.rankings.values())
    if as_json:
        _print_json(
            {
                "run": str(out_path),
                "tag": run_tag,
                "queries": len(result.rankings),
                "hits": hits,
                "empty": list(result.empty),
                "channels": list(result.channels),
                "wall_seconds": result.wall_seconds,
                "latency": latency.to_dict(),
            }
        )
        return
    out.print(
        f"wrote {out_path}: {len(result.rankings):,} queries, {hits:,} hits, tag {run_tag}, "
        f"channels {list(result.channels)}",
        highlight=False,
        soft_wrap=True,
    )
    if result.empty:
        out.print(
            f"{len(result.empty)} queries found nothing (e.g. {list(result.empty[:3])})",
            highlight=False,
            soft_wrap=True,
        )
    out.print(_latency_line(latency), highlight=False, soft_wrap=True)


# --- score -------------------------------------------------------------------------------------------


@app.command("score")
def score(
    run_path: Annotated[Path, typer.Argument(help="A TREC run file.")],
    qrels: Annotated[Path, typer.Option("--qrels", "-q", help="TREC or BEIR qrels.")],
    measure: Measures = None,
    topics: Annotated[
        Path | None,
        typer.Option(
            help="Score exactly these topics (a judged topic without hits counts 0); default: the run's queries."
        ),
    ] = None,
    per_query: Annotated[bool, typer.Option("--per-query", help="Also show every query's values.")] = False,
    as_json: AsJson = False,
) -> None:
    """Score RUN against QRELS with ir_measures: means, optionally per query."""
    from xlir.eval.compare import restrict_qrels
    from xlir.eval.metrics import DEFAULT_MEASURES, evaluate
    from xlir.eval.trec import read_qrels, read_run, read_topics

    ranked = read_run(run_path)
    judged = read_qrels(qrels)
    qids = list(read_topics(topics)) if topics is not None else list(ranked)
    result = evaluate(ranked, restrict_qrels(judged, qids), _split(measure) or DEFAULT_MEASURES)
    if as_json:
        data = result.to_dict()
        if not per_query:
            data.pop("per_query")
        _print_json({"run": str(run_path), **data})
        return
    table = Table(title=f"{run_path.name}: {result.num_queries} judged queries")
    table.add_column("measure")
    table.add_column("mean", justify="right")
    for name in result.measures:
        table.add_row(name, f"{result.aggregates[name]:.4f}")
    out.print(table)
    if result.missing:
        out.print(
            f"{len(result.missing)} judged queries have no hits and score 0", highlight=False, soft_wrap=True
        )
    if per_query:
        rows = Table(title="per query")
        rows.add_column("qid")
        for name in result.measures:
            rows.add_column(name, justify="right")
        for qid in next(iter(result.per_query.values())):
            rows.add_row(qid, *(f"{result.per_query[name][qid]:.4f}" for name in result.measures))
        out.print(rows)


# --- fuse --------------------------------------------------------------------------------------------


@app.command("fuse")
def fuse(
    runs: Annotated[list[Path], typer.Argument(help="Two or more TREC run files.")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="The fused run file to write.")],
    method: Annotated[str, typer.Option(help="rrf, minmax or zscore.")] = "rrf",
    rrf_k: Annotated[int, typer.Option(help="RRF's k: a document scores sum 1/(k + rank).")] = 60,
    weight: Annotated[
        list[str] | None,
        typer.Option(help="NAME=W for minmax/zscore, repeatable; NAME is a run's tag (or file name)."),
    ] = None,
    depth: Annotated[int, typer.Option("-k", help="Hits kept per fused query.")] = 1000,
    tag: Annotated[str | None, typer.Option(help="Run tag of the fused run; default: the method.")] = None,
) -> None:
    """Fuse RUNS query by query (RRF, or min-max / z-score normalized weighted sums) into one run file."""
    from xlir.eval.compare import fuse_runs, parse_weights, system_names
    from xlir.eval.trec import read_run, write_run

    loaded = [read_run(path) for path in runs]
    names = system_names(runs, loaded)
    weights = parse_weights(weight)
    fused = fuse_runs(
        dict(zip(names, loaded, strict=True)),
        method,  # type: ignore[arg-type]
        rrf_k=rrf_k,
        weights=weights,
        limit=depth,
        source=tag or method,
    )
    write_run(out_path, fused, tag or method)
    out.print(
        f"wrote {out_path}: {len(fused):,} queries fused by {method} from {names}",
        highlight=False,
        soft_wrap=True,
    )


# --- compare -----------------------------------------------------------------------------------------


@app.command("compare")
def compare(
    runs: Annotated[list[Path], typer.Argument(help="TREC run files; the first is the baseline by default.")],
    qrels: Annotated[Path, typer.Option("--qrels", "-q", help="TREC or BEIR qrels.")],
    measure: Measures = None,
    baseline: Annotated[
        str | None, typer.Option(help="The baseline: a run file given, or its tag/name.")
    ] = None,
    topics: Annotated[
        Path | None, typer.Option(help="Score exactly these topics; default: every query any run has.")
    ] = None,
    trials: Annotated[int, typer.Option(help="Randomization test trials.")] = 10000,
    as_json: AsJson = False,
    markdown: AsMarkdown = False,
) -> None:
    """Compare RUNS on the same judged queries: means per measure, difference to the baseline and paired
    t-test and randomization test p-values."""
    from xlir.eval.compare import choose_baseline, compare_runs, restrict_qrels, system_names
    from xlir.eval.metrics import DEFAULT_MEASURES
    from xlir.eval.trec import read_qrels, read_run, read_topics

    loaded = [read_run(path) for path in runs]
    names = system_names(runs, loaded)
    base_name = choose_baseline(baseline, runs, names)
    qids: set[str] = set()
    for run_ in loaded:
        qids.update(run_)
    if topics is not None:
        qids = set(read_topics(topics))
    judged = restrict_qrels(read_qrels(qrels), qids)
    comparison = compare_runs(
        dict(zip(names, loaded, strict=True)),
        judged,
        _split(measure) or DEFAULT_MEASURES,
        baseline=base_name,
        trials=trials,
    )
    if as_json:
        _print_json(comparison.to_dict())
    elif markdown:
        typer.echo(comparison.to_markdown(), nl=False)
    else:
        table = Table(title=f"{comparison.num_queries} judged queries; baseline {comparison.baseline}")
        for name in ("system", "measure", "mean", "difference", "t-test p", "randomization p"):
            table.add_column(name, justify="left" if name in ("system", "measure") else "right")
        for row in comparison.long_rows():
            table.add_row(*row)
        out.print(table)
        out.print(
            "difference to the baseline; two-sided paired t-test and randomization test "
            f"({comparison.trials} trials) p-values; * = both p < 0.05",
            highlight=False,
        )


# --- grid and pool -----------------------------------------------------------------------------------


@app.command("grid")
def grid(
    collection_dir: CollectionDir,
    queries: Annotated[list[str], typer.Option("--queries", help="Query languages, e.g. en,de,zh.")],
    docs: Annotated[list[str], typer.Option("--docs", help="Document languages, e.g. en,de.")],
    channel: Channels = None,
    measure: Annotated[str, typer.Option("--measure", "-m", help="The measure per cell.")] = "nDCG@10",
    k: Hits = 100,
    work_dir: WorkDir = None,
    out_dir: Annotated[
        Path | None, typer.Option(help="Write each cell's run file and grid.json / grid.md here.")
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the heat map PNG here.")] = None,
    batch_size: BatchSize = 1,
    as_json: AsJson = False,
    markdown: AsMarkdown = False,
) -> None:
    """Queries in each X against documents in each Y: MEASURE per (X, Y), latency, and a heat map."""
    from xlir.eval.collection import Collection
    from xlir.eval.errors import EvalError
    from xlir.eval.grid import language_grid
    from xlir.eval.plots import heatmap

    channels = _split(channel) or ["bm25"]
    if plot is not None and plot.suffix.lower() != ".png":
        raise EvalError(f"--plot writes a PNG; give a path ending in .png, not {plot.name!r}")
    collection = Collection.at(collection_dir)
    with console.status(f"grid over {collection.name}"):
        result = language_grid(
            collection,
            _split(queries),
            _split(docs),
            channels=channels,
            cache_dir=_work_dir(work_dir),
            measure=measure,
            k=k,
            batch_size=batch_size,
        )
    if out_dir is not None:
        result.write(out_dir, "grid")
    if plot is not None:
        heatmap(
            result.matrix(),
            result.query_langs,
            result.doc_langs,
            plot,
            title=f"{collection.name} {measure} ({'+'.join(channels)})",
        )
    if as_json:
        _print_json(result.to_dict())
        return
    if markdown:
        typer.echo(result.to_markdown(), nl=False)
    else:
        table = Table(
            title=f"{collection.name} {measure} ({'+'.join(channels)}): rows = queries, columns = documents"
        )
        table.add_column("queries \\ documents")
        for d in result.doc_langs:
            table.add_column(d, justify="right")
        for q in result.query_langs:
            table.add_row(q, *(f"{result.value(q, d):.3f}" for d in result.doc_langs))
        out.print(table)
        latencies = [cell.latency for cell in result.cells.values()]
        out.print(
            f"latency per query over cells: p50 {min(x.p50_ms for x in latencies):.1f}-"
            f"{max(x.p50_ms for x in latencies):.1f} ms, p95 {min(x.p95_ms for x in latencies):.1f}-"
            f"{max(x.p95_ms for x in latencies):.1f} ms (per cell: --markdown or --json)",
            highlight=False,
        )
    if plot is not None:
        console.print(f"heat map: {plot}", highlight=False, soft_wrap=True)


@app.command("pool")
def pool(
    collection_dir: CollectionDir,
    channel: Channels = None,
    langs: Annotated[
        list[str] | None, typer.Option("--langs", help="Document languages in the pool (default: all).")
    ] = None,
    queries: Annotated[
        list[str] | None, typer.Option("--queries", help="Query languages (default: all with judgments).")
    ] = None,
    measure: Annotated[str, typer.Option("--measure", "-m", help="The effectiveness measure.")] = "nDCG@10",
    k: Hits = 100,
    work_dir: WorkDir = None,
    out_dir: Annotated[
        Path | None, typer.Option(help="Write each query language's run file and pool.json / pool.md here.")
    ] = None,
    batch_size: BatchSize = 1,
    as_json: AsJson = False,
    markdown: AsMarkdown = False,
) -> None:
    """All chosen corpora as ONE index; per query language: MEASURE, latency and language bias.

    Language bias (top 10): the own-language share of the hits vs the own-language share of the relevant
    documents; bias = their difference divided by the room it had, in [-1, 1] (0 = as among the relevant
    documents, 1 = the top 10 is all in the query's language).
    """
    from xlir.eval.collection import Collection
    from xlir.eval.grid import BIAS_LEGEND, multilingual_pool

    channels = _split(channel) or ["bm25"]
    collection = Collection.at(collection_dir)
    with console.status(f"pool over {collection.name}"):
        report = multilingual_pool(
            collection,
            _split(langs) or None,
            _split(queries) or None,
            channels=channels,
            cache_dir=_work_dir(work_dir),
            measure=measure,
            k=k,
            batch_size=batch_size,
        )
    if out_dir is not None:
        report.write(out_dir, "pool")
    if as_json:
        _print_json(report.to_dict())
        return
    if markdown:
        typer.echo(report.to_markdown(), nl=False)
        return
    table = Table(
        title=f"{collection.name} pool of {len(report.corpora)} corpora, "
        f"{sum(report.documents.values()):,} documents ({'+'.join(channels)})"
    )
    for name in (
        "query language",
        "queries",
        measure,
        "top-10 own share",
        "relevant own share",
        "bias",
        "p50 ms",
        "p95 ms",
    ):
        table.add_column(name, justify="left" if name == "query language" else "right")
    for row in report.rows:
        table.add_row(
            row.query_lang,
            str(row.num_queries),
            f"{row.score:.3f}",
            f"{row.bias.top_own_share:.3f}",
            f"{row.bias.rel_own_share:.3f}",
            f"{row.bias.bias:+.3f}",
            f"{row.latency.p50_ms:.1f}",
            f"{row.latency.p95_ms:.1f}",
        )
    out.print(table)
    out.print(BIAS_LEGEND, highlight=False)
