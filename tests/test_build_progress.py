"""Build progress lines in a log, and build options from the command line and ``--config FILE``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_jsonl

from xlir.indexing.config_file import config_from, merged, read_config_file
from xlir.indexing.errors import ConfigError
from xlir.indexing.progress import ProgressState, corpus_size

XLIR = [sys.executable, "-m", "xlir.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*XLIR, *args], capture_output=True, text=True, env=env, timeout=600)


def corpus(tmp_path: Path, n: int = 60) -> Path:
    path = tmp_path / "corpus.jsonl"
    write_jsonl(
        path, [{"id": f"d{i}", "text": f"document number {i} about cats", "lang": "en"} for i in range(n)]
    )
    return path


def test_a_build_in_a_log_prints_progress_lines_with_totals_and_rates(tmp_path: Path) -> None:
    result = run(
        "index",
        "build",
        str(corpus(tmp_path)),
        str(tmp_path / "idx"),
        "-c",
        "bm25",
        "--progress-every",
        "0.2",
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("build: ")]
    assert any(
        re.fullmatch(r"build: read 60/60 docs, [\d.]+ docs/s, done in [\d.]+ s", line) for line in lines
    ), lines
    assert any(re.fullmatch(r"build: bm25 60/60 docs, [\d.]+ docs/s, .*", line) for line in lines), lines
    assert any(line.startswith("build: docstore 60/60 docs") for line in lines), lines
    assert any(line.startswith("build: publish done") for line in lines), lines


def test_config_file_maps_onto_index_config_and_options_override_it(tmp_path: Path) -> None:
    config = tmp_path / "build.yaml"
    config.write_text("channels: [bm25]\nbm25: {k1: 1.5, b: 0.3}\ndense: {batch_size: 64, model: x}\n")
    index = tmp_path / "idx"
    result = run(
        "index", "build", str(corpus(tmp_path)), str(index), "--config", str(config),
        "--b", "0.6", "--batch-size", "8", "--faiss-index", "hnsw", "--model", "m2", "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    recorded = json.loads((index / "manifest.json").read_text())["config"]
    assert recorded["channels"] == ["bm25"]
    assert recorded["bm25"] == {"k1": 1.5, "b": 0.6}
    assert recorded["dense"]["batch_size"] == 8 and recorded["sparse"]["batch_size"] == 8
    assert recorded["dense"]["index"] == "hnsw" and recorded["dense"]["device"] == "cpu"
    assert recorded["dense"]["model"] == recorded["multivector"]["model"] == "m2"


@pytest.mark.parametrize(
    ("text", "suffix", "expected"),
    [
        (
            '{"dense": {"batchsize": 64}}',
            ".json",
            "unknown key 'dense.batchsize'; known keys of dense: model, batch_size",
        ),
        ('[bm25]\nk1 = "high"\n', ".toml", "'bm25.k1' must be a number, not 'high'"),
        (
            '{"chanels": ["bm25"]}',
            ".json",
            "unknown key 'chanels'; known keys at the top level: channels, bm25",
        ),
    ],
)
def test_a_bad_config_file_is_one_line_exit_2(tmp_path: Path, text: str, suffix: str, expected: str) -> None:
    config = tmp_path / f"build{suffix}"
    config.write_text(text)
    result = run("index", "build", str(corpus(tmp_path, 3)), str(tmp_path / "idx"), "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert expected in result.stderr
    assert not (tmp_path / "idx").exists()


def test_a_bad_option_value_is_one_line_exit_2(tmp_path: Path) -> None:
    result = run("index", "build", str(corpus(tmp_path, 3)), str(tmp_path / "idx"), "--device", "tpu")
    assert result.returncode == 2 and "--device must be auto, cpu or cuda" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_config_helpers(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('channels = ["bm25", "dense"]\n[dense]\nbatch_size = 64\n')
    data = read_config_file(path)
    config = config_from(merged(data, {"dense": {"device": "cpu"}}))
    assert config.channels == ("bm25", "dense")
    assert config.dense.batch_size == 64 and config.dense.device == "cpu"
    with pytest.raises(ConfigError, match="must end in"):
        read_config_file(tmp_path / "c.ini")


def test_progress_state_rates_and_corpus_size(tmp_path: Path) -> None:
    state = ProgressState()
    state.start("dense", 960)
    state.advance("dense", 480, 40.0)
    assert state.stages["dense"].line() == "dense 480/960 docs, 12.0 docs/s, eta 40 s"
    state.finish("dense")
    assert state.active() == []
    (tmp_path / "a.jsonl").write_text('{"id": "1", "text": "x"}\n\n{"id": "2", "text": "y"}')
    from xlir.indexing.readers import open_corpus

    assert corpus_size(open_corpus(tmp_path / "a.jsonl")) == 2
    assert corpus_size([1, 2, 3]) == 3
    assert corpus_size(iter([1])) is None
