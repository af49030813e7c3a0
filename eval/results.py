"""The committed results file: each benchmark owns one marked section of docs/RESULTS.md and rewrites it."""

from __future__ import annotations

from pathlib import Path

HEADER = (
    "# Results\n\n"
    "Every table below was written by the command shown with it; rerun the command to regenerate it.\n"
)


def replace_section(path: Path, name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of the results file at ``path`` with ``body``."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
