"""A real `xlir serve` subprocess on 127.0.0.1 for tests: a free port, start, wait until ready, stop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(index_dir: Path, env: Mapping[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """Start `xlir serve INDEX_DIR` on a free port (not waiting): the process and its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "xlir.cli", "serve", str(index_dir), "--port", str(port)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, f"http://127.0.0.1:{port}"


def wait_ready(process: subprocess.Popen[str], url: str, timeout: float = 180) -> None:
    """Wait until ``url``/readyz answers 200; the server's stderr in the error if it exited first."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"xlir serve exited: {process.communicate()[1]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"xlir serve at {url} never got ready")
        time.sleep(0.2)


def stop(*processes: subprocess.Popen[str]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


@contextmanager
def serving(index_dir: Path, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """A ready server on ``index_dir`` for the duration of the block: its base URL."""
    process, url = start(index_dir, env)
    try:
        wait_ready(process, url)
        yield url
    finally:
        stop(process)
