"""The xlir command as a user runs it: a real process, real index, real output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import write_jsonl

XLIR = [sys.executable, "-m", "xlir.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command in a real process. XLIR_HOME is inherited: the prepared model is shared."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*XLIR, *args], capture_output=True, text=True, env=env, timeout=900)


def test_help_is_everywhere(tmp_path: Path) -> None:
    for args in (
        [],
        ["index"],
        ["index", "build"],
        ["search"],
        ["demo"],
        ["serve"],
        ["models"],
        ["eval"],
        ["train"],
        ["train", "colbert"],
    ):
        done = run(*args, "--help")
        assert done.returncode == 0, done.stderr
        assert "usage" in done.stdout.lower()


def test_build_info_search_round_trip(tmp_path: Path, sample: Path) -> None:
    index = tmp_path / "idx"
    done = run("index", "build", str(sample), str(index))
    assert done.returncode == 0, done.stderr
    assert "288 documents" in done.stderr

    info = run("index", "info", str(index), "--json")
    assert json.loads(info.stdout)["languages"]["zh"] == 48

    found = run("search", str(index), "Panthers defense points", "-k", "3", "--lang", "de", "--json")
    result = json.loads(found.stdout)
    assert result["hits"][0]["docid"] == "de-a00p00"
    assert 1 <= len(result["hits"]) <= 3
    assert {hit["lang"] for hit in result["hits"]} == {"de"}

    human = run("search", str(index), "Panthers defense points", "-k", "2")
    assert "en-a00p00" in human.stdout


def test_user_errors_are_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "fine", "lang": "en"}\n{"id": "b", "text": \n', encoding="utf-8")
    done = run("index", "build", str(bad), str(tmp_path / "idx"), "-c", "bm25")
    assert done.returncode == 2
    assert "bad.jsonl:2" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "idx").exists()

    skipped = run("index", "build", str(bad), str(tmp_path / "idx"), "--on-error", "skip", "-c", "bm25")
    assert skipped.returncode == 0, skipped.stderr
    assert "malformed_json" in skipped.stderr

    missing = run("search", str(tmp_path / "nowhere"), "query")
    assert missing.returncode == 2 and "no such index" in missing.stderr

    empty = run("search", str(tmp_path / "idx"), "  ")
    assert empty.returncode == 2 and "empty" in empty.stderr

    good = write_jsonl(tmp_path / "good.jsonl", [{"id": "a", "text": "fine", "lang": "en"}])
    unknown = run("index", "build", str(good), str(tmp_path / "idx2"), "-c", "nosuch")
    assert unknown.returncode == 2 and "unknown channel" in unknown.stderr
    assert "Traceback" not in unknown.stderr and len(unknown.stderr.strip().splitlines()) == 1


def test_only_user_errors_become_one_line() -> None:
    """The root group turns a UserError from any command into `error: ...` and exit 2; bugs keep their traceback."""
    import typer
    from typer.testing import CliRunner

    from xlir.cli import UserErrorsAsMessages
    from xlir.errors import NotFoundError

    app = typer.Typer(cls=UserErrorsAsMessages)

    @app.command()
    def user() -> None:
        raise NotFoundError("no collection named 'x'; check the name")

    @app.command()
    def bug() -> None:
        raise ValueError("an internal invariant broke")

    runner = CliRunner()
    shown = runner.invoke(app, ["user"])
    assert shown.exit_code == 2
    assert "error: no collection named 'x'; check the name" in shown.stderr
    crashed = runner.invoke(app, ["bug"])
    assert isinstance(crashed.exception, ValueError) and crashed.exit_code == 1


def test_demo_builds_the_sample_and_answers_across_languages(tmp_path: Path) -> None:
    done = run("demo", "--index-dir", str(tmp_path / "sample"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "sample" / "manifest.json").is_file()
    assert "en-a00p00" in done.stdout and "de-a00p00" in done.stdout


def test_corpus_without_languages_gets_them_detected(tmp_path: Path) -> None:
    corpus = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"id": "1", "text": "Der schnelle braune Fuchs springt über den faulen Hund."},
            {"id": "2", "text": "The quick brown fox jumps over the lazy dog."},
        ],
    )
    done = run("index", "build", str(corpus), str(tmp_path / "idx"), "-c", "bm25")
    assert done.returncode == 0, done.stderr
    info = json.loads(run("index", "info", str(tmp_path / "idx"), "--json").stdout)
    assert info["languages"] == {"de": 1, "en": 1}


def test_serve_answers_http_on_loopback(tmp_path: Path, sample_index: Path) -> None:
    import socket
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [*XLIR, "serve", str(sample_index), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stderr.read()
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.5)
        found = httpx.get(f"http://127.0.0.1:{port}/search", params={"q": "Panthers defense", "k": 3}).json()
        assert found["hits"][0]["id"] == "en-a00p00"
    finally:
        server.terminate()
        server.wait(timeout=30)
