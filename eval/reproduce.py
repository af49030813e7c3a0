"""Regenerate the result tables in docs/RESULTS.md: every system, every task, baselines in the same run.

    python -m xlir.eval.reproduce                                       # all tasks (hours of CPU on 2 cores)
    python -m xlir.eval.reproduce --tasks xquad-pairs --check           # and compare with the expected scores

The experiments are data, in eval/experiments.yaml (the 2CR idea): each table's task, the settings and
command that make it, and its expected means; the options' defaults below come from the same file.
Systems: Pyserini BM25 and mE5-small used directly (the baselines), each xlir channel (bm25, dense,
sparse, multivector) and the fused first stage (what ``Searcher`` returns by default). Tasks, one module
each under xlir.eval.tasks:

- xquad-pairs: XQuAD cross-lingual pairs (queries in X, paragraphs in Y), nDCG@10 per pair.
- xquad-pool: all 12 XQuAD corpora as one index; nDCG@10 and language bias per query language; build
  time, size and query latency per channel (this index is built fresh in every run).
- tatoeba: every Tatoeba language X -> its English side: accuracy@1 and nDCG@10 per language.
- rerank: the fused first stage vs fused + rerank on fixed query subsets of the three above.
- dense-throughput, multivector: the dense channel's encoding overhead; the late-interaction channel's
  own study (trained head vs raw states, bytes per token, MaxSim latency).

Each task's table replaces its own section of the results file as soon as it is done. --check compares
the measured means with the table's expected ones and exits 1 on other settings or a difference beyond
the file's tolerance; --update-expected writes the command, settings and means back into the file (the
slow test tests/test_regression.py reruns each table's own command).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from xlir.eval.experiments import Experiments, Settings
from xlir.eval.grid import index_cache
from xlir.eval.results import replace_section
from xlir.eval.tasks import dense_throughput, multivector, rerank, tatoeba, xquad_pairs, xquad_pool
from xlir.eval.tasks.base import Task, TaskContext
from xlir.models.paths import data_root

#: Every task, in the order a full run does them.
TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        xquad_pairs.TASK,
        xquad_pool.TASK,
        tatoeba.TASK,
        rerank.TASK,
        dense_throughput.TASK,
        multivector.TASK,
    )
}

#: Options that say where things are on this machine, or what to do with the scores: not part of an
#: experiment's command in the experiments file.
_LOCAL_OPTIONS = {"--tasks", "--data", "--cache", "--results"}
_LOCAL_FLAGS = {"--check", "--update-expected", "--reuse-pool-index"}


def build_parser(defaults: Settings) -> argparse.ArgumentParser:
    """The command line; the experiment options default to the experiments file's ``defaults``."""
    parser = argparse.ArgumentParser(
        prog="python -m xlir.eval.reproduce",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=data_root(), help="the shared collections")
    parser.add_argument("--results", type=Path, default=Path("docs/RESULTS.md"))
    parser.add_argument(
        "--tasks", default=",".join(TASKS), help=f"comma-separated subset of {', '.join(TASKS)}"
    )
    parser.add_argument(
        "--cache", type=Path, default=None, help="index cache (default $XLIR_HOME/eval-indexes)"
    )
    parser.add_argument("--limit", type=int, default=None, help="queries per topic set (a quick smoke run)")
    for option in Settings.options():
        value = getattr(defaults, option.name)
        parser.add_argument(
            "--" + option.name.replace("_", "-"),
            type=lambda text, name=option.name: Settings.parse_option(name, text),
            default=value,
            help=option.metadata["help"]
            + ("" if value is None else f" (default {defaults.option_text(option.name)})"),
        )
    parser.add_argument(
        "--reuse-pool-index",
        action="store_true",
        help="xquad-pool: search a cached pool index instead of building it anew (its build time is then "
        "the cached build's, and the table says so)",
    )
    parser.add_argument("--check", action="store_true", help="compare the means with the experiments file")
    parser.add_argument("--update-expected", action="store_true", help="write the measured means as expected")
    return parser


def run_settings(defaults: Settings, args: argparse.Namespace) -> Settings:
    """The file's defaults with the experiment options of the command line."""
    return dataclasses.replace(defaults, **{o.name: getattr(args, o.name) for o in Settings.options()})


def task_args(argv: Sequence[str], task: str) -> list[str]:
    """The arguments that reproduce ``task`` alone: ``--tasks task`` and every experiment option of ``argv``."""
    out, skip = ["--tasks", task], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in _LOCAL_FLAGS:
            continue
        if name in _LOCAL_OPTIONS:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    experiments = Experiments.load()
    parser = build_parser(experiments.defaults)
    args = parser.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
    if args.update_expected and args.limit is not None:
        parser.error("--update-expected records full runs only; drop --limit")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = run_settings(experiments.defaults, args)
    argv = list(argv if argv is not None else sys.argv[1:])
    command = "python -m xlir.eval.reproduce " + " ".join(argv)
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="xlir-reproduce-") as tmp:
        context = TaskContext(
            data=args.data,
            cache=args.cache or index_cache(),
            work=Path(tmp),
            settings=settings,
            limit=args.limit,
            reuse_pool_index=args.reuse_pool_index,
        )
        for name in tasks:
            task = TASKS[name]
            started = time.perf_counter()
            body, means = task.run(context)
            minutes = (time.perf_counter() - started) / 60
            header = (
                f"## {name}\n\nCommand: `{command}` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores, "
                f"{minutes:.0f} min{', first ' + str(args.limit) + ' queries per set' if args.limit else ''}).\n\n"
            )
            if args.limit is None:
                replace_section(args.results, f"reproduce-{name}", header + body)
            else:
                print(header + body)
            table_settings = settings.to_data(task.settings)
            if args.check:
                problems += experiments.check(name, table_settings, means)
            if args.update_expected:  # after each task, so a long run that is stopped keeps what it measured
                experiments.record(name, task_args(argv, name), table_settings, means)
                experiments.save()
    for problem in problems:
        print(f"REGRESSION {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
