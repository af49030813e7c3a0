"""The installed shape of xlir: one top-level package, the shipped artifacts inside it, the layers contract.

The wheel is built from this checkout (no dependencies, no network) and unpacked. import-linter reads the
package tree twice: as `pip install xlir` lays it out, and as `lint-imports` run in the checkout sees it
(there, ``xlir/<layer>`` are links to the product owner's top-level folders, so a tool that walks the
``xlir`` package finds every layer).
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


def test_each_layer_folder_is_linked_inside_the_package() -> None:
    """``xlir/<layer>`` links to the top-level folder that pyproject maps ``xlir.<layer>`` to."""
    mapping = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in mapping.items():
        if package == "xlir":
            continue
        link = REPO.joinpath(*package.split("."))
        assert link.is_symlink() and link.resolve() == (REPO / folder).resolve(), package


@pytest.mark.parametrize("where", ["checkout", "wheel"])
def test_layers_and_no_cycles(where: str, installed: Path) -> None:
    """import-linter's contracts in pyproject.toml hold, with no exception listed: `lint-imports` run in the
    checkout (as a developer runs it) and over the unpacked wheel."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    for contract in config["contracts"]:
        assert "ignore_imports" not in contract, contract["name"]
    result = subprocess.run(
        [str(BIN / "lint-imports"), str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=REPO if where == "checkout" else installed,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout
