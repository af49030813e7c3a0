"""``xlir train colbert|reranker``: hand the arguments to the training layer's own command lines."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    pass


train_app = typer.Typer(
    help="Train the heads and adapters xlir ships (English data, zero-shot transfer).", no_args_is_help=True
)


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
