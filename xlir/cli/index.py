"""``xlir index build|info|gc``: build an index from a corpus, show what one holds, clean up after dead builds."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from xlir.errors import UserError
from xlir.models.paths import shipped

if TYPE_CHECKING:
    from xlir.indexing.config import IndexConfig
    from xlir.indexing.manifest import Manifest


from xlir.cli.console import console, out
from xlir.cli.progress import build_progress

index_app = typer.Typer(help="Build and inspect indexes.", no_args_is_help=True)

#: What `xlir index build` and `xlir demo` build unless told otherwise: BM25 for exact words in each
#: language, dense for meaning across languages. Add `-c sparse` for the learned sparse channel.
DEFAULT_CHANNELS = ["bm25", "dense"]


def sample_corpus() -> Path:
    """The bundled multilingual sample corpus (an XQuAD excerpt in 6 languages)."""
    return shipped("sample")


@index_app.command("build")
def index_build(
    corpus: Annotated[
        Path, typer.Argument(help="JSONL file(s) dir, BEIR dir, or a collection (corpus/*.jsonl).")
    ],
    index_dir: Annotated[Path, typer.Argument(help="Where to write the index (a new or empty directory).")],
    channel: Annotated[
        list[str] | None, typer.Option("--channel", "-c", help="Channel(s) to build [default: bm25, dense].")
    ] = None,
    lang: Annotated[str | None, typer.Option(help="Language of documents that have no 'lang' field.")] = None,
    on_error: Annotated[
        str | None, typer.Option(help="'stop' at the first bad line, or 'skip' and count it [default: stop].")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing index (atomically).")] = False,
    k1: Annotated[float | None, typer.Option(help="BM25 k1 [default: 0.9].")] = None,
    b: Annotated[float | None, typer.Option(help="BM25 b [default: 0.4].")] = None,
    model: Annotated[
        str | None, typer.Option(help="Backbone of the neural channels (dense, multivector): a name or path.")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda, for the neural channels.")] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Documents per encoder batch, for every channel that batches.")
    ] = None,
    faiss_index: Annotated[
        str | None, typer.Option(help="The dense channel's FAISS index: auto, flat, hnsw or ivfpq.")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Torch threads [default: the cores available].")
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="A JSON, YAML or TOML file of IndexConfig sections, as the manifest's config writes them "
            '(e.g. {"dense": {"batch_size": 64}}); the options above override it.',
        ),
    ] = None,
    progress_every: Annotated[
        float, typer.Option(min=0.1, help="Seconds between progress lines when stderr is not a terminal.")
    ] = 5.0,
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
    fails naming it (or waits, with --wait). Leftovers of interrupted builds are cleaned first. Progress
    per stage (read, each channel, docstore, publish) shows live on a terminal, else as a line every
    --progress-every seconds.
    """
    from xlir.indexing.config_file import config_from, merged, read_config_file, sections_with
    from xlir.indexing.fields import parse_field_specs

    if on_error is not None and on_error not in ("stop", "skip"):
        raise UserError(f"--on-error must be 'stop' or 'skip', not {on_error!r}")
    if device is not None and device not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, not {device!r}")
    if faiss_index is not None and faiss_index not in ("auto", "flat", "hnsw", "ivfpq"):
        raise UserError(f"--faiss-index must be auto, flat, hnsw or ivfpq, not {faiss_index!r}")
    given = read_config_file(config_file) if config_file is not None else {}
    options: dict[str, Any] = {"channels": channel, "on_error": on_error}
    if lang is not None:
        options["language"] = {"default": _normalized(lang)}
    if field:
        options["fields"] = parse_field_specs(field)
    per_section = {"k1": k1, "b": b, "device": device, "batch_size": batch_size}
    for key, value in per_section.items():
        for section in sections_with(key) if value is not None else ():
            options.setdefault(section, {})[key] = value
    for section in ("dense", "multivector") if model is not None else ():
        options.setdefault(section, {})["model"] = model
    if faiss_index is not None:
        options.setdefault("dense", {})["index"] = faiss_index
    data = merged({"channels": DEFAULT_CHANNELS}, given)
    data = merged(data, {k: v for k, v in options.items() if v is not None})
    config = config_from(data, where=str(config_file) if config_file else "options")
    _set_threads(config, threads)
    manifest = _build(
        corpus, index_dir, config, overwrite, wait=wait, timeout=wait_timeout, progress_every=progress_every
    )
    _print_manifest(index_dir, manifest)


def _set_threads(config: IndexConfig, threads: int | None) -> None:
    """Torch's threads for a build with a neural channel: ``threads``, else the cores this process may use."""
    if not set(config.channels) - {"bm25"}:
        return
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    import torch

    torch.set_num_threads(threads)


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
    progress_every: float = 5.0,
) -> Manifest:
    from xlir.indexing.builder import build_index
    from xlir.indexing.readers import ReadReport, open_corpus

    report = ReadReport()
    documents = open_corpus(corpus, lang=config.language.default, on_error=config.on_error, report=report)
    with build_progress(console, every=progress_every) as progress:
        manifest = build_index(
            documents,
            index_dir,
            config,
            overwrite=overwrite,
            sources=[str(corpus)],
            skipped=report.skipped,
            wait=wait,
            timeout=timeout,
            progress=progress,
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
