"""The experiments file, ``eval/experiments.yaml``: every table of ``docs/RESULTS.md`` as data.

After Pyserini's 2CR files (``pyserini/2cr/*.yaml``), one file of conditions drives both the result pages
and the regression checks. It holds:

* ``tolerance``: how far a measured mean may lie from its expected value;
* ``defaults``: the value of every :class:`Settings` field, i.e. what ``python -m xlir.eval.reproduce
  --tasks T`` runs when no option is given (the fields that are options of ``reproduce`` say so);
* ``tables``: one entry per table: its ``task``, a ``description``, the ``command`` that reproduces it,
  the ``settings`` that command runs with (the fields its task reads) and the ``expected`` means.

This module reads, writes and checks the file; it knows no task (:mod:`xlir.eval.reproduce` wires them).
The file is kept in the form :meth:`Experiments.save` writes, so ``--update-expected`` changes only what
was measured.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

#: Every table's command starts so; the rest are the arguments of ``xlir.eval.reproduce``.
COMMAND = "python -m xlir.eval.reproduce"


def experiments_file() -> Path:
    """The experiments file shipped in the ``xlir.eval`` package."""
    return Path(str(resources.files("xlir.eval").joinpath("experiments.yaml")))


class ExperimentsFileError(ValueError):
    """The experiments file does not have the shape this module reads (a project bug, not a user's)."""


def _option(help_text: str) -> dict[str, str]:
    """Field metadata: the setting is also an option of ``reproduce`` (``--name-with-dashes``)."""
    return {"help": help_text}


@dataclass(frozen=True)
class Settings:
    """Every setting a reproduction task reads. Values come from the file's ``defaults``, then from options."""

    #: hits per query in every run
    depth: int
    #: the xlir channels built and searched (each alone, and fused)
    channels: tuple[str, ...]
    #: XQuAD (query language, document language) pairs
    xquad_pairs: tuple[tuple[str, str], ...]
    #: English queries timed per channel combination on the XQuAD pool
    pool_latency_queries: int
    tatoeba_channels: tuple[str, ...] = field(metadata=_option("xlir channels run on the Tatoeba languages"))
    tatoeba_langs: tuple[str, ...] | None = field(
        metadata=_option("comma-separated Tatoeba languages (default: all)")
    )
    #: Tatoeba languages shown one by one (and the multivector and rerank tasks' Tatoeba subset)
    tatoeba_focus: tuple[str, ...]
    #: XQuAD corpora whose paragraphs the dense-throughput task encodes
    throughput_languages: tuple[str, ...]
    #: paragraphs encoded by the dense-throughput task
    throughput_documents: int
    #: alternating rounds (direct, inside a build) of the dense-throughput task
    throughput_rounds: int
    mv_tatoeba_per_lang: int = field(
        metadata=_option(
            "multivector latency over Tatoeba: English sides and sentences per language (0 = all ~178k texts)"
        )
    )
    #: hits asked of the multivector channel: the search default (it re-scores max(k, ndocs / 4) documents)
    mv_k: int
    #: already-encoded queries timed per multivector index
    mv_latency_queries: int
    #: queries timed end to end (encoding included) per multivector index
    mv_e2e_queries: int
    rerank_queries: int = field(metadata=_option("rerank task: queries per XQuAD pair (a fixed stride)"))
    rerank_pool_queries: int = field(metadata=_option("rerank task: queries per pool query language"))
    rerank_tatoeba_queries: int = field(metadata=_option("rerank task: queries per Tatoeba language"))
    rerank_last_queries: int = field(
        metadata=_option("rerank task: queries per XQuAD pair for the last checkpoint (vs the averaged one)")
    )
    #: first-stage hits reranked
    rerank_k: int
    #: pool queries per language timed cold and warm
    rerank_latency_queries: int
    reranker: str = field(
        metadata=_option(
            "rerank task: the reranker measured (a shipped name or a folder from `xlir train reranker`)"
        )
    )

    @classmethod
    def from_data(cls, values: Mapping[str, object]) -> Settings:
        """Settings from the file's form (lists, ``"de:en"`` pairs); every field must be given."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing, unknown = set(names) - set(values), set(values) - set(names)
        if missing or unknown:
            raise ExperimentsFileError(f"defaults: missing {sorted(missing)}, unknown {sorted(unknown)}")
        return cls(**{name: _from_data(name, values[name]) for name in names})

    def to_data(self, names: Sequence[str] | None = None) -> dict[str, object]:
        """The file's form of the fields ``names`` (default: all), in that order."""
        names = names if names is not None else [f.name for f in dataclasses.fields(self)]
        return {name: _to_data(getattr(self, name)) for name in names}

    @staticmethod
    def options() -> list[dataclasses.Field]:
        """The fields that are also options of ``reproduce``."""
        return [f for f in dataclasses.fields(Settings) if "help" in f.metadata]

    def option_text(self, name: str) -> str:
        """A field's value as its option is written on a command line (lists comma-separated)."""
        value = getattr(self, name)
        return ",".join(value) if isinstance(value, tuple) else str(value)

    @staticmethod
    def parse_option(name: str, text: str) -> object:
        """An option's text as the field's value."""
        kind = next(f.type for f in dataclasses.fields(Settings) if f.name == name)
        if kind == "int":
            return int(text)
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in text.split(",") if part.strip())
        return text


def _from_data(name: str, value: object) -> object:
    if isinstance(value, list):
        if name == "xquad_pairs":
            return tuple(tuple(str(pair).split(":", 1)) for pair in value)
        return tuple(value)
    return value


def _to_data(value: object) -> object:
    if isinstance(value, tuple):
        return [":".join(v) if isinstance(v, tuple) else v for v in value]
    return value


@dataclass
class Table:
    """One table of the results file: the task that makes it, how, and the means it is expected to give."""

    task: str
    description: str
    command: str
    settings: dict[str, object]
    expected: dict[str, float]

    @property
    def args(self) -> list[str]:
        """The command's arguments to ``reproduce`` (after ``python -m xlir.eval.reproduce``)."""
        words = shlex.split(self.command)
        prefix = shlex.split(COMMAND)
        if words[: len(prefix)] != prefix:
            raise ExperimentsFileError(
                f"{self.task}: the command must start with {COMMAND!r}: {self.command}"
            )
        return words[len(prefix) :]


@dataclass
class Experiments:
    """The whole file: tolerance, default settings and the tables."""

    about: str
    tolerance: float
    defaults: Settings
    tables: list[Table]

    @classmethod
    def load(cls, path: Path | None = None) -> Experiments:
        data = yaml.safe_load((path or experiments_file()).read_text(encoding="utf-8"))
        return cls(
            about=data["about"],
            tolerance=float(data["tolerance"]),
            defaults=Settings.from_data(data["defaults"]),
            tables=[Table(**table) for table in data["tables"]],
        )

    def dump(self) -> str:
        """The file's text (block mappings; lists of plain values on one line)."""
        data = {
            "about": self.about,
            "tolerance": self.tolerance,
            "defaults": self.defaults.to_data(),
            "tables": [dataclasses.asdict(table) for table in self.tables],
        }
        return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)

    def save(self, path: Path | None = None) -> None:
        (path or experiments_file()).write_text(self.dump(), encoding="utf-8")

    def table(self, task: str) -> Table | None:
        return next((table for table in self.tables if table.task == task), None)

    def record(
        self, task: str, args: Sequence[str], settings: dict[str, object], means: Mapping[str, float]
    ) -> None:
        """Write ``task``'s command, settings and measured means (rounded to 4 places); other tables stay."""
        command = " ".join([COMMAND, shlex.join(args)])
        expected = {system: round(value, 4) for system, value in means.items()}
        table = self.table(task)
        if table is None:
            self.tables.append(Table(task, "", command, settings, expected))
        else:
            table.command, table.settings, table.expected = command, settings, expected

    def check(self, task: str, settings: Mapping[str, object], means: Mapping[str, float]) -> list[str]:
        """Differences between a run of ``task`` and its table: other settings, or a mean off by more
        than the tolerance. A task without expected scores (timings only) has none."""
        table = self.table(task)
        if table is None or not table.expected:
            return []
        if dict(settings) != table.settings:
            differ = sorted(
                k for k in settings.keys() | table.settings.keys() if settings.get(k) != table.settings.get(k)
            )
            return [
                f"{task}: run with other settings than its table ({', '.join(differ)}); its scores were "
                f"measured by `{table.command}`"
            ]
        problems = []
        for system, value in table.expected.items():
            if system not in means:
                problems.append(f"{task}: {system} was not measured")
            elif abs(means[system] - value) > self.tolerance:
                problems.append(
                    f"{task}: {system} {means[system]:.4f}, expected {value:.4f} +- {self.tolerance}"
                )
        return problems


class _Dumper(yaml.SafeDumper):
    """Lists of plain values in flow style (``[bm25, dense]``), multi-line text as a literal block."""


def _represent_list(dumper: yaml.SafeDumper, value: list) -> yaml.Node:
    flow = all(not isinstance(item, (dict, list)) for item in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(str, _represent_str)
