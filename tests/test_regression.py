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

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "task", sorted(json.loads((REPO / "eval" / "regressions.json").read_text()).keys() - {"tolerance"})
)
def test_reproduced_scores_match_the_regression_file(task: str, shared_data: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "eval.reproduce",
            "--tasks",
            task,
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
