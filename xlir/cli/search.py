"""``xlir search``: one query against an index, with filters, sort and facets; hits as a list or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from xlir.retrieval.searcher import SearchResult


from xlir.cli.console import out


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
