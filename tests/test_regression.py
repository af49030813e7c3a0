"""The 2CR-style regression file, eval/experiments.yaml: its shape, and (slow) each table's command rerun.

The slow tests take tens of minutes to hours on 2 CPU cores (they encode every XQuAD query with several
neural channels), so they are marked ``slow`` and left out of the default run:
``pytest -m slow tests/test_regression.py``.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from xlir.eval.experiments import COMMAND, Experiments, experiments_file
from xlir.eval.reproduce import TASKS, build_parser, run_settings, task_args

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = Experiments.load()
SCORED = [table.task for table in EXPERIMENTS.tables if table.expected]


@pytest.mark.slow
@pytest.mark.parametrize("task", SCORED)
def test_reproduced_scores_match_the_experiments_file(task: str, shared_data: Path, tmp_path: Path) -> None:
    table = EXPERIMENTS.table(task)
    assert table is not None
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "xlir.eval.reproduce",
            *table.args,
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


def test_the_file_is_in_the_form_update_expected_writes() -> None:
    """So that --update-expected changes the measured lines only."""
    assert EXPERIMENTS.dump() == experiments_file().read_text(encoding="utf-8")


def test_every_task_has_one_table_and_every_table_a_known_task() -> None:
    assert sorted(table.task for table in EXPERIMENTS.tables) == sorted(TASKS)
    assert {"xquad-pairs", "xquad-pool", "tatoeba", "rerank", "multivector"} <= set(SCORED)


@pytest.mark.parametrize("table", EXPERIMENTS.tables, ids=lambda table: table.task)
def test_each_command_parses_and_runs_its_tables_settings(table) -> None:
    assert table.command.startswith(COMMAND + " ")
    args = build_parser(EXPERIMENTS.defaults).parse_args(table.args)  # exits on an unknown option
    assert args.tasks == table.task, "a table's command runs its own task only"
    assert not (args.check or args.update_expected or args.limit), "a table's command is a full run"
    settings = run_settings(EXPERIMENTS.defaults, args)
    assert settings.to_data(TASKS[table.task].settings) == table.settings


def test_expected_scores_are_measures_and_the_tolerance_is_small() -> None:
    assert 0 < EXPERIMENTS.tolerance < 0.05
    for table in EXPERIMENTS.tables:
        for system, value in table.expected.items():
            assert isinstance(value, float) and math.isfinite(value), (table.task, system)
            assert 0.0 <= value <= 1.0, (table.task, system, value)


def test_check_reports_other_settings_and_scores_beyond_the_tolerance() -> None:
    experiments = Experiments.load()
    table = experiments.table("xquad-pairs")
    assert table is not None
    measured = dict(table.expected)
    assert experiments.check("xquad-pairs", table.settings, measured) == []
    system = next(iter(measured))
    measured[system] += 2 * experiments.tolerance
    assert [p for p in experiments.check("xquad-pairs", table.settings, measured) if system in p]
    other = {**table.settings, "depth": 10}
    (problem,) = experiments.check("xquad-pairs", other, table.expected)
    assert "depth" in problem and table.command in problem
    assert experiments.check("dense-throughput", {}, {}) == []  # timings only: nothing to compare


def test_update_expected_rewrites_one_table_only(tmp_path: Path) -> None:
    experiments = Experiments.load()
    before = {table.task: table.expected for table in experiments.tables}
    table = experiments.table("tatoeba")
    assert table is not None
    experiments.record(
        "tatoeba",
        ["--tasks", "tatoeba", "--tatoeba-langs", "fra"],
        table.settings,
        {"xlir dense acc@1": 0.712345},
    )
    path = tmp_path / "experiments.yaml"
    experiments.save(path)
    again = Experiments.load(path)
    changed = again.table("tatoeba")
    assert changed is not None
    assert changed.expected == {"xlir dense acc@1": 0.7123}
    assert changed.args == ["--tasks", "tatoeba", "--tatoeba-langs", "fra"]
    assert {t.task: t.expected for t in again.tables if t.task != "tatoeba"} == {
        k: v for k, v in before.items() if k != "tatoeba"
    }


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
