"""Where xlir keeps and finds things on disk: the one place these paths are resolved.

- ``xlir_home()``: ``$XLIR_HOME`` (default ``~/.cache/xlir``; an empty value counts as unset, ``~``
  is expanded): prepared models, caches, evaluation indexes.
- ``data_root()``: ``$XLIR_DATA``, else ``shared/data`` beside the repository checkout: the shared
  collections (XQuAD, Tatoeba, ``train/``).
- ``shipped(...)``: artifacts that ship inside the ``xlir`` package (trained heads, rerankers, the
  sample corpus), found through ``importlib.resources`` so they resolve in an installed wheel too;
  ``shipped_or_path(...)`` / ``shipped_names(...)``: a shipped artifact folder by name, or a user's folder.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

HOME_ENV = "XLIR_HOME"
DATA_ENV = "XLIR_DATA"

#: the repository checkout this module sits in (``<repo>/models/paths.py`` in a source tree).
_CHECKOUT = Path(__file__).resolve().parents[1]


def xlir_home() -> Path:
    """``$XLIR_HOME`` (default ``~/.cache/xlir``): where xlir keeps prepared models and caches."""
    value = os.environ.get(HOME_ENV, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".cache" / "xlir"


def cache_dir(*parts: str) -> Path:
    """``$XLIR_HOME/cache/<parts>``: recomputable intermediate results (not created here)."""
    return xlir_home().joinpath("cache", *parts)


def data_root() -> Path:
    """``$XLIR_DATA`` if set, else ``shared/data`` next to the repository checkout (may not exist)."""
    value = os.environ.get(DATA_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    return _CHECKOUT.parent / "shared" / "data"


def shared_data_dir() -> Path | None:
    """:func:`data_root` if it exists, else None."""
    root = data_root()
    return root if root.is_dir() else None


def shipped(*parts: str) -> Path:
    """A path inside the artifacts shipped with xlir (``xlir/data/<parts>``)."""
    return Path(str(resources.files("xlir").joinpath("data", *parts)))


def shipped_or_path(name: str, shipped_dir: Path, marker: str) -> Path:
    """The folder ``name`` names: ``shipped_dir/name`` where that holds ``marker`` (a shipped artifact),
    else ``name`` as a path (``~`` expanded; whether it holds ``marker`` is the caller's to check)."""
    bundled = shipped_dir / name
    return bundled if (bundled / marker).is_file() else Path(name).expanduser()


def shipped_names(shipped_dir: Path, marker: str) -> list[str]:
    """Names of the folders in ``shipped_dir`` that hold ``marker`` (sorted; none if it is missing)."""
    if not shipped_dir.is_dir():
        return []
    return sorted(p.name for p in shipped_dir.iterdir() if (p / marker).is_file())
