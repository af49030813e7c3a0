"""The trained ColBERT projection head of the multivector channel: the module, and how heads are saved,
found (shipped in ``xlir/data/heads`` or a folder) and loaded.

A head folder holds ``head.safetensors`` (the module's state dict) and ``head.json`` (its shape plus the
provenance and settings it was trained with).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from xlir.models.encoders.token_base import TokenEncoderError
from xlir.models.paths import shipped, shipped_names, shipped_or_path
from xlir.models.registry import DEFAULT_MODEL, canonical_name

#: Where the shipped heads live (inside the installed package).
HEADS_DIR = shipped("heads")
HEAD_WEIGHTS = "head.safetensors"
HEAD_CONFIG = "head.json"
#: The head trained by ``xlir train colbert`` and shipped for multilingual-e5-small (384 -> 384: on XQuAD
#: cross-lingual pairs it beat raw-state MaxSim on all 7 measured pairs, mean nDCG@10 0.920 vs 0.907; a
#: 384 -> 128 head lost, 0.883). See its head.json for command, data, seed and scores.
DEFAULT_HEAD = "me5-small-colbert-en"


class ColBERTHead(torch.nn.Module):
    """ColBERT's projection: ``Linear(in_dim, out_dim, bias=False)``, optionally plus a residual MLP.

    ``hidden`` > 0 adds ``Linear(in, hidden) -> GELU -> Linear(hidden, out)`` to the linear map.
    Outputs are not normalized here; the encoder L2-normalizes each token vector.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 0) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.hidden = int(in_dim), int(out_dim), int(hidden)
        self.linear = torch.nn.Linear(self.in_dim, self.out_dim, bias=False)
        self.mlp = (
            torch.nn.Sequential(
                torch.nn.Linear(self.in_dim, self.hidden),
                torch.nn.GELU(),
                torch.nn.Linear(self.hidden, self.out_dim),
            )
            if self.hidden > 0
            else None
        )
        if self.mlp is not None:
            torch.nn.init.zeros_(self.mlp[2].weight)
            torch.nn.init.zeros_(self.mlp[2].bias)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """Projected token states ``(..., out_dim)`` of ``states`` ``(..., in_dim)``."""
        out = self.linear(states)
        if self.mlp is not None:
            out = out + self.mlp(states)
        return out


def make_head(in_dim: int, out_dim: int, hidden: int = 0) -> ColBERTHead:
    """A fresh (untrained) :class:`ColBERTHead`."""
    return ColBERTHead(in_dim, out_dim, hidden)


def save_head(head: ColBERTHead, directory: Path | str, info: dict[str, Any]) -> Path:
    """Write ``head`` as ``head.safetensors`` + ``head.json`` (its shape and ``info``: provenance, settings)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(directory / HEAD_WEIGHTS))
    config = {"in_dim": head.in_dim, "out_dim": head.out_dim, "hidden": head.hidden, **info}
    (directory / HEAD_CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return directory


def resolve_head(name: str) -> Path:
    """The folder of head ``name``: a shipped head (``xlir/data/heads/<name>``) or a local folder."""
    if not isinstance(name, str) or not name.strip():
        raise TokenEncoderError("the head name is empty: give a shipped head name or a head folder path.")
    path = shipped_or_path(name, HEADS_DIR, HEAD_CONFIG)
    if not (path / HEAD_CONFIG).is_file() or not (path / HEAD_WEIGHTS).is_file():
        known = shipped_names(HEADS_DIR, HEAD_CONFIG)
        raise TokenEncoderError(
            f"no ColBERT head {name!r}: expected a folder with {HEAD_CONFIG} and {HEAD_WEIGHTS} "
            f"(shipped heads: {', '.join(known) or 'none'}); train one with `xlir train colbert`."
        )
    return path


def load_head(name: str) -> tuple[ColBERTHead, dict[str, Any]]:
    """Load head ``name`` (see :func:`resolve_head`): the module (eval mode, CPU) and its ``head.json``."""
    path = resolve_head(name)
    config = json.loads((path / HEAD_CONFIG).read_text("utf-8"))
    head = make_head(int(config["in_dim"]), int(config["out_dim"]), int(config.get("hidden", 0)))
    head.load_state_dict(load_file(str(path / HEAD_WEIGHTS)))
    head.eval()
    return head, config


def default_head(model: str) -> str | None:
    """The shipped head for ``model`` (``head="auto"``): :data:`DEFAULT_HEAD` for multilingual-e5-small, else None."""
    if canonical_name(model) == DEFAULT_MODEL and (HEADS_DIR / DEFAULT_HEAD / HEAD_CONFIG).is_file():
        return DEFAULT_HEAD
    return None
