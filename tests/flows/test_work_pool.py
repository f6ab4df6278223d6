"""The flows as a team deploys them: prefect.yaml's deployments on a process work pool of a real local Prefect
server, a flow run picked up and run by a real worker; one nightly slot per data root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.browser import free_port, stop, wait_http
from tests.conftest import REPO

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """A Prefect server on a free port with its own database; yields the environment that points at it."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}
    log = (home / "server.log").open("w")
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/api/health", 90)
        yield env
    finally:
        stop(proc)
        log.close()


def _prefect(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    done = subprocess.run([str(BIN / "prefect"), *args], cwd=REPO, env=env, text=True, capture_output=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_prefect_yaml_schedules_match_params() -> None:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    flows = yaml.safe_load((REPO / "params.yaml").read_text())["flows"]
    crons = {d["name"]: d["schedules"][0] for d in spec["deployments"] if d.get("schedules")}
    assert crons["nightly"] == {"cron": flows["nightly_cron"], "timezone": flows["timezone"]}
    assert crons["monitor"] == {"cron": flows["monitor_cron"], "timezone": flows["timezone"]}


@pytest.mark.slow
def test_deployments_run_through_a_work_pool_and_worker(server, tmp_path: Path) -> None:
    import httpx

    env, api = server, server["PREFECT_API_URL"]
    started = time.monotonic()
    _prefect(env, "work-pool", "create", "eliverec", "--type", "process")
    _prefect(env, "--no-prompt", "deploy", "--all", timeout=180)
    deployed = time.monotonic()
    params = {"profile": "tiny", "data_dir": str(tmp_path / "data")}
    out = _prefect(env, "deployment", "run", "rollout/rollout", "--params", json.dumps(params))
    run_id = next(w for w in out.split() if len(w) == 36 and w.count("-") == 4)
    _prefect(env, "worker", "start", "--pool", "eliverec", "--run-once", timeout=300)
    ran = time.monotonic()
    for _ in range(60):  # the worker reports the final state just before it exits
        run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()
        if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            break
        time.sleep(0.5)
    names = {d["name"] for d in httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()}
    print(f"deploy {deployed - started:.1f} s, run through the worker {ran - deployed:.1f} s")
    assert names == {"nightly", "monitor", "rollout"}
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["work_pool_name"] == "eliverec" and run["parameters"]["data_dir"] == params["data_dir"]


def test_one_nightly_slot_per_data_root(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.ops import nightly_slot

    monkeypatch.setenv("PREFECT_API_URL", server["PREFECT_API_URL"])
    second: list[str] = []

    def try_same_root() -> None:
        try:
            with nightly_slot(tmp_path / "a", timeout_s=2):
                second.append("acquired")
        except TimeoutError:
            second.append("waited")

    with nightly_slot(tmp_path / "a"):
        thread = threading.Thread(target=try_same_root)
        thread.start()
        with nightly_slot(tmp_path / "b", timeout_s=10):  # another data root does not wait
            pass
        thread.join()
    assert second == ["waited"]
    with nightly_slot(tmp_path / "a", timeout_s=10):  # released after the first run
        pass
