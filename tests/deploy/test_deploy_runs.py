"""The commands and settings in deploy/ really run: the image's and the unit's recipes, taken
from the files themselves, migrate a real PostgreSQL and serve a healthy proxy on this host.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.deploy.deploy_files import (
    ROOT,
    VENV_BIN,
    compose,
    dockerfile,
    instructions,
    k8s,
    systemd_unit,
)
from tests.support.listening import listening_addresses, outside_address
from tests.support.postgres import PostgresServer
from tests.support.proxy import free_port

__all__: list[str] = []

TRACETAP = str(VENV_BIN / "tracetap")
PORT_FLAGS = ("--anthropic-port", "--openai-port", "--port")


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("TRACETAP_", "XDG_"))}


def _free_ports(args: list[str]) -> list[str]:
    """The same command line with every listening port moved to a free one (shared machine)."""
    out = list(args)
    for i, arg in enumerate(args[:-1]):
        if arg in PORT_FLAGS:
            out[i + 1] = str(free_port())
    return out


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen(
            args,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise


def _until(
    check: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"proxy exited {proc.returncode}:\n{log.read_text()}"
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not healthy after {timeout}s:\n{log.read_text()}")


def test_container_recipe_migrates_and_serves_a_healthy_proxy(tmp_path: Path, pg_url: str) -> None:
    data = tmp_path / "data"  # the image's /data, with its two volumes
    env = _base_env() | {k: v.replace("/data", str(data)) for k, v in dockerfile().envs.items()}
    for volume in json.loads(instructions("VOLUME")[-1]):
        Path(volume.replace("/data", str(data))).mkdir(parents=True)
    admin = free_port()
    env |= {"TRACETAP_DB": pg_url, "TRACETAP_ADMIN_PORT": str(admin)}
    key = tmp_path / "pseudonym_key"  # compose's secret file
    key.write_text("ab" * 32 + "\n")
    env["TRACETAP_KEY_FILE"] = str(key)

    # the Kubernetes pods' init container keeps waiting while the schema is missing ...
    wait = k8s("Deployment", "tracetap")["spec"]["template"]["spec"]["initContainers"][0]
    wait_cmd = wait["command"][-1].replace("tracetap ", f"{TRACETAP} ")
    waiting = subprocess.run(
        ["timeout", "4", "sh", "-c", wait_cmd],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert waiting.returncode == 124 and "waiting for the tracetap-migrate Job" in waiting.stdout
    # ... until compose's migrate service / the Kubernetes Job has run
    migrate = compose()["services"]["migrate"]["command"]
    assert (
        migrate
        == k8s("Job", "tracetap-migrate")["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    done = subprocess.run(
        [TRACETAP, *migrate], check=False, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    waited = subprocess.run(
        ["timeout", "30", "sh", "-c", wait_cmd],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert waited.returncode == 0, waited.stdout + waited.stderr

    assert json.loads(instructions("ENTRYPOINT")[-1]) == ["tracetap"]
    cmd = _free_ports(json.loads(instructions("CMD")[-1]))
    log = tmp_path / "proxy.log"
    proc = _start([TRACETAP, *cmd], env, log)
    [health] = instructions("HEALTHCHECK")
    probe = json.loads(health.split(" CMD ", 1)[1])
    probe[0] = sys.executable

    def healthy() -> bool:
        proc = subprocess.run(probe, check=False, env=env, capture_output=True, timeout=10)
        return proc.returncode == 0

    try:
        _until(healthy, proc, log)
        body = httpx.get(f"http://127.0.0.1:{admin}/healthz", timeout=5).json()
        assert body["status"] == "ok" and body["db_healthy"] is True
        metrics = httpx.get(f"http://127.0.0.1:{admin}/metrics", timeout=5).text
        assert "tracetap_db_healthy 1.0" in metrics
        assert listening_addresses(admin) == {"127.0.0.1"}  # the image keeps admin private
        assert (data / "mitmproxy" / "mitmproxy-ca.pem").exists()  # the CA is on its volume
        # the reverse-proxy ports of the command line accept connections
        for flag in ("--anthropic-port", "--openai-port"):
            port = cmd[cmd.index(flag) + 1]
            httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()


def test_kubernetes_probes_reach_the_admin_port_at_the_pod_address(tmp_path: Path) -> None:
    """The Deployment's args serve /healthz beyond loopback, where the kubelet probes it."""
    [container] = k8s("Deployment", "tracetap")["spec"]["template"]["spec"]["containers"]
    env = _base_env() | {
        e["name"]: e["value"].replace("/data", str(tmp_path / "data"))
        for e in container["env"]
        if "value" in e and e["name"] != "TRACETAP_KEY_FILE"  # a Secret there: made below
    }
    admin = free_port()
    key = tmp_path / "pseudonym.key"
    key.write_text("ab" * 32 + "\n")
    env |= {
        "TRACETAP_DB": f"sqlite:///{tmp_path / 'store.db'}",  # the Secret's URL, here SQLite
        "TRACETAP_ADMIN_PORT": str(admin),
        "TRACETAP_KEY_FILE": str(key),
    }
    log = tmp_path / "proxy.log"
    proc = _start([TRACETAP, *_free_ports(container["args"])], env, log)
    outside = outside_address()
    host = outside or "127.0.0.1"

    def healthy() -> bool:
        try:
            return httpx.get(f"http://{host}:{admin}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        _until(healthy, proc, log)
        assert listening_addresses(admin) == {"0.0.0.0"}
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()


def test_container_health_check_fails_without_a_proxy() -> None:
    [health] = instructions("HEALTHCHECK")
    probe = json.loads(health.split(" CMD ", 1)[1])
    env = _base_env() | {"TRACETAP_ADMIN_PORT": str(free_port())}
    proc = subprocess.run(
        [sys.executable, *probe[1:]], check=False, env=env, capture_output=True, timeout=10
    )
    assert proc.returncode != 0


def test_systemd_recipe_runs_over_the_local_socket(
    tmp_path: Path, pg_url: str, pg_server: PostgresServer
) -> None:
    unit = systemd_unit()
    root = tmp_path / "root"  # stands in for / : the unit's /var/lib/... paths live under it
    state = root / "var/lib" / unit["Service.StateDirectory"][0]
    state.mkdir(parents=True, mode=0o700)  # systemd creates the StateDirectory
    env = _base_env()
    for assignment in unit["Service.Environment"]:
        name, value = assignment.split("=", 1)
        env[name] = value.replace("/var/lib", str(root / "var/lib"))
    database = pg_url.rsplit("/", 1)[1]
    assert env["TRACETAP_DB"] == "postgresql+psycopg://tracetap@/tracetap"  # no password:
    assert env["PGHOST"] == "/run/postgresql"  # the local socket, peer authentication
    env["TRACETAP_DB"] = f"postgresql+psycopg://postgres@/{database}"
    env |= {"PGHOST": str(pg_server.root), "PGPORT": str(pg_server.port)}
    admin = free_port()
    env["TRACETAP_ADMIN_PORT"] = str(admin)

    pre = unit["Service.ExecStartPre"][0].replace("/opt/tracetap/.venv/bin/", f"{VENV_BIN}/")
    done = subprocess.run(
        pre.split(), check=False, env=env, capture_output=True, text=True, timeout=120, cwd=state
    )
    assert done.returncode == 0, done.stdout + done.stderr
    start = unit["Service.ExecStart"][0].replace("/opt/tracetap/.venv/bin/", f"{VENV_BIN}/")
    log = tmp_path / "proxy.log"
    proc = _start(_free_ports(start.split()), env, log)

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{admin}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        _until(healthy, proc, log)
        key = state / "pseudonym.key"  # created on first start, private
        assert key.exists() and stat.S_IMODE(key.stat().st_mode) == 0o600
        assert (Path(env["TRACETAP_CONFDIR"]) / "mitmproxy-ca.pem").exists()
        assert str(Path(env["TRACETAP_CONFDIR"])).startswith(str(state))
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()


def test_image_build_stage_makes_a_complete_wheel(tmp_path: Path) -> None:
    """The build stage's COPY set is enough for a wheel that carries the migrations."""
    src = tmp_path / "src"
    src.mkdir()
    build = [
        i["value"].split()
        for i in dockerfile().structure
        if i["instruction"] == "COPY" and "--from" not in i["value"]
    ]
    assert build, "the build stage copies the sources"
    for *paths, _dest in build:
        for rel in paths:
            origin = ROOT / rel
            if origin.is_dir():
                shutil.copytree(origin, src / rel, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(origin, src / rel)
    wheels = tmp_path / "wheels"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--wheel-dir",
            str(wheels),
            str(src),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [wheel] = wheels.glob("tracetap-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(site)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "tracetap = tracetap.cli:main" in (site / entry_points).read_text()  # ENTRYPOINT
    assert {
        "tracetap/storage/migrations/env.py",
        "tracetap/storage/migrations/script.py.mako",
        "tracetap/storage/migrations/versions/0001_initial.py",
    } <= names
    assert not any("__pycache__" in n for n in names)
    # the packaged code alone (not this checkout) runs the migrations the image's migrate runs
    run = (
        "import sys, tracetap; assert tracetap.__file__.startswith(sys.argv[1]), "
        "tracetap.__file__; from tracetap.cli import main; "
        "sys.argv = ['tracetap', 'db', 'upgrade', '--db', sys.argv[2]]; main()"
    )
    db = f"sqlite:///{tmp_path / 'packaged.db'}"
    env = _base_env() | {"PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", run, str(site), db],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    check = subprocess.run(
        [TRACETAP, "db", "check", "--db", db],
        check=False,
        env=_base_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
