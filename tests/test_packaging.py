"""The installed shape of xlir: one top-level package, the shipped artifacts inside it, the layers contract.

The wheel is built from this checkout (no dependencies, no network) and unpacked; import-linter then reads
the package tree exactly as `pip install xlir` lays it out (in the source tree the packages live in the
product owner's top-level folders, which a static import graph cannot follow).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, unpacked as site-packages would hold it."""
    wheels = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("xlir-*.whl")
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def test_the_wheel_adds_no_top_level_package_but_xlir(installed: Path) -> None:
    top = sorted(path.name for path in installed.iterdir())
    assert [name for name in top if not name.endswith(".dist-info")] == ["xlir"]
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    for package in declared:
        assert (installed.joinpath(*package.split(".")) / "__init__.py").is_file(), package


def test_the_wheel_carries_what_xlir_loads_at_run_time(installed: Path) -> None:
    data = installed / "xlir" / "data"
    assert (data / "heads" / "me5-small-colbert-en" / "head.safetensors").is_file()
    assert (data / "rerankers" / "me5-small-gated-en" / "reranker.json").is_file()
    assert any((data / "sample" / "corpus").iterdir())
    assert (installed / "xlir" / "server" / "static" / "index.html").is_file()


def test_layers_and_no_cycles(installed: Path) -> None:
    """import-linter's contracts in pyproject.toml hold, with no exception listed."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    for contract in config["contracts"]:
        assert "ignore_imports" not in contract, contract["name"]
    result = subprocess.run(
        [str(BIN / "lint-imports"), str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=installed,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout
