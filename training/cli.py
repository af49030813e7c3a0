"""The command lines of ``xlir train colbert`` and ``xlir train reranker`` (argparse), and the reranker kinds.

``xlir train`` (in :mod:`xlir.cli`) hands its arguments over unparsed: each command's flags are its settings
dataclass's fields (:class:`~xlir.training.colbert.TrainSettings`,
:class:`~xlir.training.rerank_common.RerankTrainSettings`), with the same defaults. ``--kind`` picks the
reranker recipe (:data:`RERANKER_RECIPES`). Each prints its main scores as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

from xlir.training.colbert import TrainSettings, train_colbert
from xlir.training.gated import train_gated
from xlir.training.rerank_common import KINDS, RerankTrainSettings, revalidate
from xlir.training.reranker import train_adapter

COLBERT_HELP = (
    "``xlir train colbert``: train a ColBERT projection head on a frozen multilingual backbone, English only."
)
RERANKER_HELP = (
    "``xlir train reranker``: train the ranking adapter of a cross-encoder reranker, English only."
)

#: The recipe that trains each reranker kind (``--kind``).
RERANKER_RECIPES: dict[str, Callable[[RerankTrainSettings, str | None], dict[str, Any]]] = {
    "adapter": train_adapter,
    "gated": train_gated,
}


def train_reranker(settings: RerankTrainSettings, command: str | None = None) -> dict[str, Any]:
    """Train a reranker of ``settings.kind`` with its recipe; returns what its ``reranker.json`` records."""
    settings.check()  # an unknown kind among the rest
    return RERANKER_RECIPES[settings.kind](settings, command)


def _add_number_flags(parser: argparse.ArgumentParser, defaults: Any) -> None:
    """``--<name>`` (underscores as dashes) for every int, then every float field of the settings dataclass,
    typed and defaulted as the field."""
    for kind in (int, float):
        for setting in fields(defaults):
            if setting.type == kind.__name__:
                flag = "--" + setting.name.replace("_", "-")
                parser.add_argument(flag, type=kind, default=getattr(defaults, setting.name))


def _command(program: str, argv: Sequence[str] | None) -> str:
    """The command line recorded in the saved model's JSON."""
    return program + " " + " ".join(argv if argv is not None else sys.argv[1:])


def _parser(prog: str, description: str, defaults: Any, output: str) -> argparse.ArgumentParser:
    """The flags both commands share: data and output folders, every number setting, the model."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--data-dir", default="", help="shared/data/train (default: beside the checkout)")
    parser.add_argument("--out", default=defaults.out_dir, help=f"output folder of the {output}")
    _add_number_flags(parser, defaults)
    parser.add_argument("--model", default=defaults.model)
    return parser


def colbert_main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line of ``xlir train colbert``: prints the training report as JSON."""
    defaults = TrainSettings()
    parser = _parser("xlir train colbert", COLBERT_HELP, defaults, "head")
    parser.add_argument("--device", default=defaults.device)
    values = vars(parser.parse_args(argv))
    settings = TrainSettings(data_dir=values.pop("data_dir"), out_dir=values.pop("out"), **values)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    info = train_colbert(settings, _command("xlir train colbert", argv))
    print(json.dumps({k: info[k] for k in ("best_valid_mrr10", "raw_states_valid_mrr10", "total_seconds")}))
    return info


def reranker_main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line of ``xlir train reranker``: prints the validation scores as JSON."""
    defaults = RerankTrainSettings()
    parser = _parser("xlir train reranker", RERANKER_HELP, defaults, "reranker")
    parser.add_argument(
        "--translate",
        default=defaults.translate,
        help="also train on machine-translated queries and passages in this language (e.g. pt)",
    )
    parser.add_argument("--init", default=defaults.init, help="start from this reranker's adapter and head")
    parser.add_argument(
        "--kind",
        default=defaults.kind,
        choices=KINDS,
        help="adapter: full cross-encoder; gated: separate lower layers, gated joint upper layers (MaxSim start)",
    )
    parser.add_argument(
        "--head", default=defaults.head, help="gated: the ColBERT head the projection starts from"
    )
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument("--precision", default=defaults.precision, choices=("auto", "bf16", "fp32"))
    parser.add_argument(
        "--revalidate",
        action="store_true",
        help="validate the reranker already in --out again (same held-out queries) and update its reranker.json",
    )
    values = vars(parser.parse_args(argv))
    again = values.pop("revalidate")
    settings = RerankTrainSettings(data_dir=values.pop("data_dir"), out_dir=values.pop("out"), **values)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if again:
        result = revalidate(settings)
        print(json.dumps({k: v["mean"] for k, v in result.items()}))
        return result
    info = train_reranker(settings, _command("xlir train reranker", argv))
    print(json.dumps({k: info[k] for k in ("valid_mrr10_last", "valid_mrr10_averaged", "total_seconds")}))
    return info
