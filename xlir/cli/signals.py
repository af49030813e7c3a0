"""How ``xlir`` stops: a UserError as one line (exit 2), Ctrl-C or SIGTERM through the command's cleanup
with one line (exit 130 or 143)."""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

import click
import typer

from xlir.eval.cli import UserErrorsAsMessages

if TYPE_CHECKING:
    pass


from xlir.cli.console import console

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
