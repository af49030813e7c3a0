"""The gated reranker's scorer: cross-segment attention gates, the ColBERT token projection and the score head
(an ``nn.Module``), and how it is saved in a gated reranker folder (``scorer.safetensors`` + its shape in
``reranker.json``). How the scorer is used: :mod:`xlir.models.rerankers.gated`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from xlir.models.encoders.heads import ColBERTHead, make_head
from xlir.models.rerankers.base import RERANKER_CONFIG, RerankerError

#: The scorer's weights inside a gated reranker folder.
SCORER_WEIGHTS = "scorer.safetensors"
#: Additive attention bias that stands for "no attention" (padding; a fully closed gate).
CLOSED = -1.0e4


class GatedScorer(torch.nn.Module):
    """Cross-segment attention gates, the token projection and the score head of a gated reranker.

    ``gates``: ``(joint layers, heads, 2)`` additive biases on attention logits across the segments
    (``[..., 0]`` query tokens attending passage tokens, ``[..., 1]`` the reverse). ``projection``: a
    ColBERT head (``Linear(hidden, dim)``; see :mod:`xlir.models.encoders.heads`). ``first``: a linear score
    on the sequence's first token. A fresh scorer has its gates at ``gate_init`` (-8: nearly closed) and the
    first-token term at zero, so it scores as ``exp(log_scale) * MaxSim``.
    """

    def __init__(
        self,
        hidden: int,
        layers: int,
        heads: int,
        projection: ColBERTHead,
        gate_init: float = -8.0,
        scale: float = 20.0,
    ) -> None:
        super().__init__()
        self.hidden, self.layers, self.heads = int(hidden), int(layers), int(heads)
        self.projection = projection
        self.gates = torch.nn.Parameter(torch.full((self.layers, self.heads, 2), float(gate_init)))
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(scale)))
        self.first = torch.nn.Linear(self.hidden, 1)
        torch.nn.init.zeros_(self.first.weight)
        torch.nn.init.zeros_(self.first.bias)

    def bias(self, layer: int, segment: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The additive attention mask of joint layer ``layer``: ``(batch, heads, seq, seq)``.

        ``segment``: ``(batch, seq)`` 0 = query token, 1 = passage token; ``valid``: ``(batch, seq)``
        False for padding (never attended).
        """
        rows, cols = segment[:, :, None], segment[:, None, :]
        cross = (rows != cols)[:, None]  # (b, 1, s, s)
        gate = self.gates[layer]  # (heads, 2)
        # direction by the row's segment: query rows read passage keys with gate 0, passage rows gate 1
        per_row = torch.where(
            rows[:, None] == 0, gate[None, :, 0, None, None], gate[None, :, 1, None, None]
        )  # (b, h, s, 1)
        out = torch.where(cross, per_row, torch.zeros((), device=segment.device))
        return out.masked_fill(~valid[:, None, None, :], CLOSED)

    def forward(self, states: torch.Tensor, segment: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
        """Scores ``(batch,)`` from the last layer's ``states`` ``(batch, seq, hidden)``; ``scored``
        marks the non-special tokens MaxSim reads."""
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            states = states.float()
            vec = torch.nn.functional.normalize(self.projection(states), dim=-1)
            query = scored & (segment == 0)
            passage = scored & (segment == 1)
            sims = torch.einsum("bid,bjd->bij", vec, vec)
            sims = sims.masked_fill(~passage[:, None, :], -2.0)
            best = sims.max(dim=2).values
            q = query.float()
            maxsim = (best * q).sum(dim=1) / q.sum(dim=1).clamp_min(1.0)
            return self.log_scale.exp() * maxsim + self.first(states[:, 0]).squeeze(-1)


def load_scorer(path: Path, info: Mapping[str, Any]) -> GatedScorer:
    """The :class:`GatedScorer` saved in a gated reranker folder."""
    shape = info.get("scorer") or {}
    try:
        hidden, layers, heads, dim = (int(shape[k]) for k in ("hidden", "layers", "heads", "dim"))
    except (KeyError, TypeError, ValueError) as exc:
        raise RerankerError(
            f"{path / RERANKER_CONFIG} has no complete 'scorer' shape (hidden, layers, heads, dim); "
            "retrain with `xlir train reranker --kind gated`"
        ) from exc
    scorer = GatedScorer(hidden, layers, heads, make_head(hidden, dim))
    weights = path / SCORER_WEIGHTS
    if not weights.is_file():
        raise RerankerError(
            f"gated reranker {path}: {SCORER_WEIGHTS} is missing; retrain or re-copy the folder"
        )
    scorer.load_state_dict(load_file(str(weights)))
    return scorer.eval()


def save_scorer(scorer: GatedScorer, directory: Path) -> None:
    """Write the scorer's weights (``scorer.safetensors``)."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in scorer.state_dict().items()}
    save_file(state, str(Path(directory) / SCORER_WEIGHTS))


def scorer_shape(scorer: GatedScorer) -> dict[str, int]:
    """What reranker.json records to rebuild the scorer."""
    return {
        "hidden": scorer.hidden,
        "layers": scorer.layers,
        "heads": scorer.heads,
        "dim": int(scorer.projection.out_dim),
    }
