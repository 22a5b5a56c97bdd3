"""deploy/ cannot be started here (no container engine or cluster): validate every file with the
tools that run offline, and check that the pieces agree with each other and with the CLI.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import check_jsonschema
import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.deploy_files import (
    DEPLOY,
    ROOT,
    VENV_BIN,
    admin_host,
    check_proxy_args,
    compose,
    dockerfile,
    instructions,
    k8s,
    k8s_docs,
    proxy_options,
    systemd_unit,
)
from tracetap.settings import Settings

__all__: list[str] = []

# -- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_is_a_slim_multistage_non_root_image() -> None:
    df = dockerfile()
    assert df.is_multistage and set(df.parent_images) == {"python:3.12-slim"}
    assert any(v.startswith("--from=build ") for v in instructions("COPY"))
    assert "pip wheel" in instructions("RUN")[0] and "pip install" in instructions("RUN")[-1]
    user = instructions("USER")[-1]
    assert user.split(":")[0] == "10001"  # numeric: Kubernetes' runAsNonRoot can check it
    assert "--uid 10001" in df.content


def test_dockerfile_volumes_ports_and_healthcheck_agree() -> None:
    df = dockerfile()
    env = df.envs
    volumes = json.loads(instructions("VOLUME")[-1])
    assert {env["TRACETAP_CONFDIR"], env["TRACETAP_JOURNAL_DIR"]} == set(volumes)
    exposed = set(" ".join(instructions("EXPOSE")).split())
    assert exposed == {"8080", "8081", "8082", env["TRACETAP_ADMIN_PORT"]}
    [health] = instructions("HEALTHCHECK")
    assert "/healthz" in health and "TRACETAP_ADMIN_PORT" in health  # probes the served port
    assert json.loads(instructions("ENTRYPOINT")[-1]) == ["tracetap"]
    cmd = json.loads(instructions("CMD")[-1])
    check_proxy_args(cmd)
    assert "--admin-port" not in cmd  # would override TRACETAP_ADMIN_PORT and fool the probe
    assert {
        cmd[cmd.index(f) + 1] for f in ("--anthropic-port", "--openai-port", "--port")
    } <= exposed
    assert "TRACETAP_KEY_FILE" not in env  # a missing default key file would stop the proxy


def test_dockerfile_passes_hadolint() -> None:
    proc = subprocess.run(
        [str(VENV_BIN / "hadolint"), "--no-color", str(DEPLOY / "Dockerfile")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr


# -- compose -----------------------------------------------------------------------------------


def test_compose_file_follows_the_compose_spec() -> None:
    schema = (
        Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    )
    jsonschema.validate(compose(), json.loads(schema.read_text()))


def test_compose_starts_postgres_then_migration_then_proxy() -> None:
    doc = compose()
    services = doc["services"]
    assert services["postgres"]["image"] == "postgres:15"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    migrate, proxy = services["migrate"], services["tracetap"]
    assert migrate["command"] == ["db", "upgrade"] and migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert proxy["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    assert migrate["environment"]["TRACETAP_DB"] == proxy["environment"]["TRACETAP_DB"]
    assert migrate["image"] == proxy["image"] and "build" in proxy
    check_proxy_args(proxy["command"])


def test_compose_proxy_health_ports_volumes_and_secret() -> None:
    doc = compose()
    proxy = doc["services"]["tracetap"]
    env = proxy["environment"]
    admin = env["TRACETAP_ADMIN_PORT"]
    assert f"127.0.0.1:{admin}/healthz" in " ".join(proxy["healthcheck"]["test"])
    published = {p.rsplit(":", 1)[1] for p in proxy["ports"]}
    assert published == set(instructions("EXPOSE")[0].split())
    targets = {v.split(":")[1] for v in proxy["volumes"]}
    assert targets == set(json.loads(instructions("VOLUME")[-1]))
    assert all(v.split(":")[0] in doc["volumes"] for v in proxy["volumes"])
    [secret] = proxy["secrets"]
    assert env["TRACETAP_KEY_FILE"] == f"/run/secrets/{secret}" and secret in doc["secrets"]


# -- Kubernetes --------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", k8s_docs(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_kubernetes_manifests_validate_strictly(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "tracetap"


def test_kubernetes_migration_runs_before_the_proxies() -> None:
    job = k8s("Job", "tracetap-migrate")["spec"]["template"]["spec"]
    [migrate] = job["containers"]
    assert migrate["args"] == ["db", "upgrade"]
    pod = k8s("Deployment", "tracetap")["spec"]["template"]["spec"]
    wait = pod["initContainers"][0]
    assert re.search(r"until tracetap db check; do .*sleep", wait["command"][-1])
    assert wait["env"] == migrate["env"]  # waits on the database the Job migrates


def test_kubernetes_deployment_probes_ports_and_user() -> None:
    deployment = k8s("Deployment", "tracetap")
    assert deployment["spec"]["replicas"] == 3
    template = deployment["spec"]["template"]
    pod = template["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == instructions("USER")[-1].split(":")[0]
    [proxy] = pod["containers"]
    check_proxy_args(proxy["args"])
    assert proxy["securityContext"]["allowPrivilegeEscalation"] is False
    ports = {p["name"]: p["containerPort"] for p in proxy["ports"]}
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    admin = int(env["TRACETAP_ADMIN_PORT"])
    assert ports["admin"] == admin == int(template["metadata"]["annotations"]["prometheus.io/port"])
    for probe in ("readinessProbe", "livenessProbe"):
        get = proxy[probe]["httpGet"]
        assert get["path"] == "/healthz" and ports[get["port"]] == admin
    assert {str(p) for p in ports.values()} == set(instructions("EXPOSE")[0].split())
    assert {"cpu", "memory"} <= set(proxy["resources"]["limits"])


def test_kubernetes_volumes_and_secrets_fit_together() -> None:
    pod = k8s("Deployment", "tracetap")["spec"]["template"]["spec"]
    [proxy] = pod["containers"]
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    mounts = {m["mountPath"]: m["name"] for m in proxy["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts[env["TRACETAP_CONFDIR"]] == "mitmproxy" and mounts[env["TRACETAP_JOURNAL_DIR"]]
    key_dir, key_name = env["TRACETAP_KEY_FILE"].rsplit("/", 1)
    key_volume = volumes[mounts[key_dir]]["secret"]
    assert key_name in {i["path"] for i in key_volume["items"]}
    # every Secret key the pods use exists in the Secret they name
    used = [
        (v["secret"]["secretName"], i["key"])
        for v in volumes.values()
        if "secret" in v
        for i in v["secret"]["items"]
    ]
    job = k8s("Job", "tracetap-migrate")["spec"]["template"]["spec"]
    for container in [*pod["initContainers"], *pod["containers"], *job["containers"]]:
        used += [
            (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in container.get("env", [])
            if "valueFrom" in e
        ]
    assert {name for name, _ in used} == {"tracetap", "tracetap-ca"}
    for name, key in used:
        assert key in k8s("Secret", name)["stringData"], (name, key)
    # the CA comes from one Secret for all replicas, copied into the writable confdir
    ca_init = next(c for c in pod["initContainers"] if c["name"] == "ca")
    ca_mounts = {m["name"]: m["mountPath"] for m in ca_init["volumeMounts"]}
    assert volumes["ca"]["secret"]["secretName"] == "tracetap-ca"
    assert ca_mounts["mitmproxy"] == env["TRACETAP_CONFDIR"]
    assert f"{ca_mounts['ca']}/mitmproxy-ca.pem" in ca_init["command"][-1]


def test_kubernetes_service_selects_only_proxy_pods() -> None:
    service = k8s("Service", "tracetap")["spec"]
    deployment = k8s("Deployment", "tracetap")["spec"]
    job_labels = k8s("Job", "tracetap-migrate")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"] == deployment["selector"]["matchLabels"]
    assert not service["selector"].items() <= job_labels.items()
    [proxy] = deployment["template"]["spec"]["containers"]
    assert {p["targetPort"] for p in service["ports"]} == {p["name"] for p in proxy["ports"]}


# -- systemd -----------------------------------------------------------------------------------


def test_systemd_unit_has_the_required_settings() -> None:
    unit = systemd_unit()
    env = dict(e.split("=", 1) for e in unit["Service.Environment"])
    assert unit["Service.User"] == ["tracetap"] and unit["Service.StateDirectory"] == ["tracetap"]
    state = "/var/lib/tracetap"
    assert unit["Service.ReadWritePaths"] == [state]
    assert env["TRACETAP_CONFDIR"].startswith(state)
    assert env["TRACETAP_JOURNAL_DIR"].startswith(state)
    assert env["TRACETAP_DB"].startswith("postgresql")
    assert f"{env['XDG_DATA_HOME']}/tracetap" == state  # the key file is created in state
    assert unit["Service.ExecStartPre"][0].endswith("tracetap db upgrade")
    [start] = unit["Service.ExecStart"]
    check_proxy_args(start.split()[1:])
    for key, value in {
        "Restart": "on-failure",
        "NoNewPrivileges": "true",
        "ProtectSystem": "strict",
        "PrivateTmp": "true",
    }.items():
        assert unit[f"Service.{key}"] == [value]
    assert unit["Install.WantedBy"] == ["multi-user.target"]


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze (Debian's systemd package) is needed to verify the unit"
    unit = (DEPLOY / "systemd" / "tracetap.service").read_text()
    local = tmp_path / "tracetap.service"  # the binary must exist for verify to pass
    local.write_text(unit.replace("/opt/tracetap/.venv/bin/", f"{VENV_BIN}/"))
    proc = subprocess.run(
        [analyze, "verify", str(local)], check=False, capture_output=True, text=True, timeout=60
    )
    # verify exits 0 even on unknown keys, but names the file in every complaint
    assert proc.returncode == 0 and str(local) not in proc.stderr, proc.stderr


# -- all of them -------------------------------------------------------------------------------


def test_admin_endpoints_leave_loopback_only_where_reached_from_outside() -> None:
    """/healthz and /metrics have no authentication: tracetap serves them on loopback unless
    `--admin-host` says otherwise, and each form opens them only where something outside the
    container or host must reach them."""
    assert Settings().admin_host == "127.0.0.1"
    # the image: its HEALTHCHECK runs inside the container, on loopback
    cmd = json.loads(instructions("CMD")[-1])
    assert admin_host(cmd) == "127.0.0.1"
    [health] = instructions("HEALTHCHECK")
    assert "http://127.0.0.1:" in health
    # compose publishes the admin port (on the host's loopback only); Docker forwards it to the
    # container's address, so the proxy must listen there
    proxy = compose()["services"]["tracetap"]
    admin = proxy["environment"]["TRACETAP_ADMIN_PORT"]
    assert f"127.0.0.1:{admin}:{admin}" in proxy["ports"]
    assert admin_host(proxy["command"]) == "0.0.0.0"
    # Kubernetes: the kubelet's httpGet probes and Prometheus come to the pod's address
    [container] = k8s("Deployment", "tracetap")["spec"]["template"]["spec"]["containers"]
    assert {container[p]["httpGet"]["port"] for p in ("readinessProbe", "livenessProbe")} == {
        "admin"
    }
    assert admin_host(container["args"]) == "0.0.0.0"
    # the unit: agents and monitoring on this host
    [start] = systemd_unit()["Service.ExecStart"]
    assert admin_host(start.split()[1:]) == "127.0.0.1"


def test_every_tracetap_setting_in_deploy_is_one_tracetap_reads() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "tracetap").rglob("*.py"))
    cli_env = {e for e in proxy_options().values() if e}
    used = set()
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            used |= set(re.findall(r"\bTRACETAP_[A-Z_]+\b", path.read_text()))
    used -= {"TRACETAP_DB_PASSWORD"}  # compose's own interpolation variable
    assert {
        "TRACETAP_DB",
        "TRACETAP_KEY_FILE",
        "TRACETAP_CONFDIR",
        "TRACETAP_JOURNAL_DIR",
        "TRACETAP_ADMIN_PORT",
    } <= used
    for name in used:
        assert name in cli_env or f'"{name}"' in source, f"{name} is read nowhere in tracetap/"


def test_build_context_ignores_all_but_what_the_image_copies() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split("\n")
    rules = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"  # the checkout's .venv and data never reach the builder
    sources = {
        src.rstrip("/")
        for i in dockerfile().structure
        if i["instruction"] == "COPY" and "--from" not in i["value"]
        for src in i["value"].split()[:-1]
    }
    assert sources == {r[1:].rstrip("/") for r in rules if r.startswith("!")}
