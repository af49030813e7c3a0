"""The two consoles of the ``xlir`` command: messages and progress on stderr, results on stdout."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    pass


console = Console(stderr=True)
out = Console()
