"""Index configuration: one config section per channel composed into one config, saved in the manifest.

What is written at build time is read back at search time, so a searcher always uses exactly the
settings the index was built with (ColBERT's lesson). The channel sections come from the registry
(:data:`xlir.indexing.channels.CHANNELS`): :class:`IndexConfig` has one field per registered channel,
named after it (``IndexConfig(channels=("dense",), dense=DenseConfig(...))``), so a new channel needs
no line here. The section classes are re-exported from here, where users import them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, make_dataclass
from typing import Any, Literal

from xlir.indexing.channels import CHANNELS
from xlir.indexing.channels.bm25.settings import BM25Config
from xlir.indexing.channels.dense.settings import DenseConfig
from xlir.indexing.channels.multivector.settings import MultiVectorConfig
from xlir.indexing.channels.sparse.settings import SparseConfig
from xlir.indexing.channels.translate.settings import TranslateConfig

__all__ = [
    "BM25Config",
    "DenseConfig",
    "IndexConfig",
    "LanguageConfig",
    "MultiVectorConfig",
    "OnError",
    "SparseConfig",
    "TranslateConfig",
]

OnError = Literal["stop", "skip"]


@dataclass(frozen=True)
class LanguageConfig:
    """How a document's language is resolved when the corpus does not give one."""

    #: language assumed for every document without a ``lang`` field; None = detect each one.
    default: str | None = None
    #: documents whose detected language has a confidence below this are put in the neutral sub-index.
    min_confidence: float = 0.3


class _IndexConfigMethods:
    """The methods of :class:`IndexConfig` (its fields are made from the channel registry below)."""

    def channel_config(self, channel: str) -> dict[str, Any]:
        """The settings a channel's writer receives (its own section, or {})."""
        return asdict(getattr(self, channel)) if channel in CHANNELS else {}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)  # type: ignore[call-overload]
        data["channels"] = list(self.channels)  # type: ignore[attr-defined]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexConfig:
        """The config a manifest recorded (a section it lacks, e.g. from an older xlir, gets defaults)."""
        sections = {name: spec.settings(**data.get(name, {})) for name, spec in CHANNELS.items()}
        return cls(  # type: ignore[call-arg]
            channels=tuple(data.get("channels", ("bm25",))),
            **sections,
            language=LanguageConfig(**data.get("language", {})),
            fields=dict(data.get("fields") or {}),
            on_error=data.get("on_error", "stop"),
        )


#: Everything an index build needs besides the corpus: ``channels`` to build, one section per registered
#: channel (``bm25``, ``dense``, ...), ``language``, ``fields`` (declared metadata fields, name -> type, see
#: :mod:`xlir.indexing.fields`; the build infers the others and records all in ``Manifest.fields``) and
#: ``on_error`` ("stop" at the first bad corpus line, or "skip" it and count it in the manifest).
#: A frozen dataclass; field order = manifest order.
IndexConfig = make_dataclass(
    "IndexConfig",
    [
        ("channels", tuple[str, ...], field(default=("bm25",))),
        *((name, spec.settings, field(default_factory=spec.settings)) for name, spec in CHANNELS.items()),
        ("language", LanguageConfig, field(default_factory=LanguageConfig)),
        ("fields", dict[str, str], field(default_factory=dict)),
        ("on_error", OnError, field(default="stop")),
    ],
    bases=(_IndexConfigMethods,),
    frozen=True,
    namespace={"__doc__": "Everything an index build needs besides the corpus (see the module docstring)."},
)
IndexConfig.__module__ = __name__
