"""The ``xlir`` command: wires each subcommand to the layer that does the work, and shows the outcome.

Commands: ``index build|info|gc``, ``search``, ``serve``, ``demo``, ``models list|prepare``, ``train ...``
and ``eval ...``. A :class:`xlir.errors.UserError` raised anywhere below is shown as one line,
``error: <message>``, with exit status 2 (:class:`UserErrorsAsMessages`, the group ``xlir eval`` also runs
under when called alone); anything else is a bug and keeps its traceback. Ctrl-C (SIGINT) or SIGTERM
stops any command through its cleanup, with one line and exit status 130 or 143 (:class:`CommandLine`).
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.logging import RichHandler

from xlir.cli.console import console
from xlir.cli.index import index_app
from xlir.cli.model_commands import models_app
from xlir.cli.search import search
from xlir.cli.serve import demo, serve
from xlir.cli.signals import CommandLine
from xlir.cli.train_commands import train_app
from xlir.eval.cli import UserErrorsAsMessages
from xlir.eval.cli import app as eval_app

__all__ = ["CommandLine", "UserErrorsAsMessages", "app"]

app = typer.Typer(
    cls=CommandLine,
    help="xlir: cross-lingual retrieval. Build an index over a multilingual corpus, then search it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(index_app, name="index")
app.add_typer(eval_app, name="eval", help="TREC-style runs, scores, fusion, comparisons, language grids.")
app.add_typer(models_app, name="models")
app.add_typer(train_app, name="train")
app.command("search")(search)
app.command("serve")(serve)
app.command("demo")(demo)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)],
    )
