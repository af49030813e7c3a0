"""Ctrl-C (SIGINT) and SIGTERM stop any `xlir` command with one line and exit 130 / 143, never a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

XLIR = [sys.executable, "-m", "xlir.cli"]


def test_sigint_during_a_build_is_one_line_and_the_previous_index_is_unchanged(tmp_path: Path) -> None:
    from xlir.indexing.builder import build_index
    from xlir.indexing.config import IndexConfig
    from xlir.indexing.documents import Document

    target = tmp_path / "idx"
    build_index([Document("old", "the previous index", "en")], target, IndexConfig(channels=("bm25",)))
    before = (target / "manifest.json").read_bytes()
    corpus = tmp_path / "big.jsonl"
    with corpus.open("w", encoding="utf-8") as stream:  # about 4 s of BM25 indexing on one core
        for i in range(80_000):
            stream.write(
                json.dumps({"id": f"d{i}", "text": f"word{i % 977} alpha {i} beta", "lang": "en"}) + "\n"
            )
    build = subprocess.Popen(
        [*XLIR, "index", "build", str(corpus), str(target), "-c", "bm25", "--overwrite"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".idx.tmp-*/bm25")):  # the build is writing its channels
        assert build.poll() is None, build.communicate()
        assert time.monotonic() < deadline, "the build never started writing"
        time.sleep(0.05)
    time.sleep(0.5)
    build.send_signal(signal.SIGINT)
    _, stderr = build.communicate(timeout=60)

    assert build.returncode == 130, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines == [
        "interrupted: the build stopped and removed its unfinished files; the previous index, if any, is unchanged"
    ]
    assert not list(tmp_path.glob(".idx.tmp-*")), "the unfinished build was left behind"
    assert (target / "manifest.json").read_bytes() == before


def _app_that_gets(signum: int, convert: bool):  # noqa: ANN202 (a typer app)
    """A one-command app of the `xlir` root group that sends itself ``signum`` while it works; ``convert``:
    the work turns the KeyboardInterrupt into another exception, as torch does (a RuntimeError)."""
    import typer

    from xlir.cli import CommandLine

    app = typer.Typer(cls=CommandLine)

    @app.command()
    def work() -> None:
        try:
            os.kill(os.getpid(), signum)
            time.sleep(10)
        except KeyboardInterrupt:
            if convert:
                raise RuntimeError("unknown parameter type") from None
            raise

    @app.command()
    def other() -> None:
        pass

    return app


@pytest.mark.parametrize(
    ("signum", "convert", "status", "line"),
    [
        (signal.SIGINT, False, 130, "interrupted: xlir work stopped"),
        (signal.SIGINT, True, 130, "interrupted: xlir work stopped"),
        (signal.SIGTERM, True, 143, "terminated: xlir work stopped"),
    ],
)
def test_a_signal_is_one_line_whatever_a_library_made_of_it(
    signum: int, convert: bool, status: int, line: str
) -> None:
    from typer.testing import CliRunner

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()
    result = CliRunner().invoke(_app_that_gets(signum, convert), ["work"])
    assert time.monotonic() - started < 5, "the signal did not stop the command"
    assert result.exit_code == status, result.output
    assert [text for text in result.stderr.splitlines() if text.strip()] == [line]
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # the caller's handlers are back


def test_an_ignored_sigint_stays_ignored(tmp_path: Path) -> None:
    """A command started with SIGINT ignored (nohup, a background job of a script) is not stopped by it."""
    script = tmp_path / "ignored.py"
    script.write_text(
        "import os, signal, sys, time, typer\n"
        "from xlir.cli import CommandLine\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "app = typer.Typer(cls=CommandLine)\n"
        "@app.command()\n"
        "def work() -> None:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(0.2)\n"
        "    print('finished')\n"
        "@app.command()\n"
        "def other() -> None:\n"
        "    pass\n"
        "app()\n",
        encoding="utf-8",
    )
    done = subprocess.run([sys.executable, str(script), "work"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "finished", done.stderr
