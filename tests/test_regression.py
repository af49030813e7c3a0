"""The 2CR-style regression check: rerun the reproduction commands and compare with eval/regressions.json.

Slow (tens of minutes on 2 CPU cores: it encodes every XQuAD query with two neural channels), so it is
marked ``slow`` and left out of the default run: ``pytest -m slow tests/test_regression.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from xlir.eval.reproduce import expected_scores, task_args

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "task", sorted(json.loads((REPO / "eval" / "regressions.json").read_text()).keys() - {"tolerance"})
)
def test_reproduced_scores_match_the_regression_file(task: str, shared_data: Path, tmp_path: Path) -> None:
    args, expected = expected_scores(task)
    assert expected, f"eval/regressions.json holds no expected scores for {task}"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "xlir.eval.reproduce",
            *args,
            "--check",
            "--data",
            str(shared_data),
            "--results",
            str(tmp_path / "RESULTS.md"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "REGRESSION" not in done.stderr


def test_a_task_command_keeps_the_experiment_options_and_drops_the_local_ones() -> None:
    argv = [
        "--tasks",
        "xquad-pool,tatoeba",
        "--data=../d",
        "--cache",
        "/c",
        "--tatoeba-channels",
        "bm25,dense",
    ]
    argv += ["--update-expected", "--results", "R.md", "--check"]
    assert task_args(argv, "tatoeba") == ["--tasks", "tatoeba", "--tatoeba-channels", "bm25,dense"]


def test_every_regression_entry_names_its_own_task() -> None:
    for task in json.loads((REPO / "eval" / "regressions.json").read_text()).keys() - {"tolerance"}:
        args, expected = expected_scores(task)
        assert args[:2] == ["--tasks", task] and expected, task
