"""deploy/: the Kubernetes manifests validate against the Kubernetes API schemas
(kubernetes-validate, offline, strict: unknown fields fail), the compose file passes
`docker compose config`, both run a consumer for every queue of the service, and Flower's
credentials have no default anywhere."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from config.celery import WORK_QUEUES
from config.settings import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
KUBERNETES_VERSION = "1.30.0"


def manifests() -> list[tuple[Path, dict]]:
    documents = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        documents += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def consumed_queues(commands: list[list[str]]) -> set[str]:
    queues: set[str] = set()
    for command in commands:
        if "worker" in command and "--queues" in command:
            queues |= set(command[command.index("--queues") + 1].split(","))
    return queues


def test_every_manifest_is_valid_kubernetes() -> None:
    documents = manifests()
    kinds = {doc["kind"] for _, doc in documents}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler",
            "Job"} <= kinds
    for path, doc in documents:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name}: {doc['kind']} {doc['metadata']['name']}: {exc.message}")


def test_an_invalid_manifest_is_caught() -> None:
    _, deployment = next((p, d) for p, d in manifests() if d["kind"] == "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kubernetes_and_compose_consume_every_queue() -> None:
    k8s_commands = [
        container["args"]
        for _, doc in manifests() if doc["kind"] == "Deployment"
        for container in doc["spec"]["template"]["spec"]["containers"]
    ]
    assert consumed_queues(k8s_commands) == set(WORK_QUEUES)
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    compose_commands = [s["command"] for s in compose["services"].values() if "command" in s]
    assert consumed_queues(compose_commands) == set(WORK_QUEUES)


def compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(
        ["docker", "compose", "version"], capture_output=True, timeout=30
    ).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_accepts_the_compose_file(tmp_path: Path) -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    compose_file = DEPLOY / "docker-compose.yml"
    env = {**os.environ, "FLOWER_BASIC_AUTH": "ops:a-secret"}
    checked = subprocess.run([*command, "-f", str(compose_file), "config", "-q"],
                             capture_output=True, text=True, timeout=60, env=env)
    assert checked.returncode == 0, checked.stderr
    # Flower's credentials have no default: without them compose refuses the file.
    env.pop("FLOWER_BASIC_AUTH")
    unset = subprocess.run([*command, "-f", str(compose_file), "config", "-q"],
                           capture_output=True, text=True, timeout=60, env=env)
    assert unset.returncode != 0 and "FLOWER_BASIC_AUTH" in unset.stderr
    # And it does refuse a broken file, so the check above means something.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(compose_file.read_text().replace("    command: [\"beat\"]",
                                                       "    comand: [\"beat\"]", 1))
    refused = subprocess.run([*command, "-f", str(broken), "config", "-q"],
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "FLOWER_BASIC_AUTH": "ops:a-secret"})
    assert refused.returncode != 0


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file())


def test_flower_credentials_have_no_default_anywhere() -> None:
    """Flower shows every tenant's messages: deploy/ never holds its credentials, and each
    Flower that listens beyond loopback gets them from a secret that has no default."""
    for path in deploy_files():
        content = path.read_text()
        assert "admin:change-me" not in content, path
        # FLOWER_BASIC_AUTH is only ever named, never given a value (or a default) here.
        code = "\n".join(line for line in content.splitlines()
                         if not line.lstrip().startswith("#"))
        for value in re.findall(r"FLOWER_BASIC_AUTH\s*[:=]\s*(\S[^\n]*)", code):
            assert value.startswith("${FLOWER_BASIC_AUTH:?"), (path, value)
    for _, doc in manifests():
        for values in (doc.get("data") or {}, doc.get("stringData") or {}):
            assert "FLOWER_BASIC_AUTH" not in values, doc["metadata"]["name"]
    secrets = {doc["metadata"]["name"] for _, doc in manifests() if doc["kind"] == "Secret"}

    flowers = [container for _, doc in manifests() if doc["kind"] == "Deployment"
               for container in doc["spec"]["template"]["spec"]["containers"]
               if "flower" in container["args"]]
    assert flowers
    for container in flowers:
        [auth] = [e for e in container.get("env", []) if e["name"] == "FLOWER_BASIC_AUTH"]
        reference = auth["valueFrom"]["secretKeyRef"]
        assert not reference.get("optional")  # no pod without the credentials
        assert reference["name"] not in secrets  # the operator's Secret, not one of deploy/

    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    flower = compose["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert all(str(port).startswith("127.0.0.1:") for port in flower.get("ports", []))


def test_the_active_store_is_not_the_brokers_redis() -> None:
    """An active-store outage must leave the broker and beat running (the workers then fall
    back to PostgreSQL): in both deployments they are on another Redis server."""
    from urllib.parse import urlsplit

    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    config = next(doc for _, doc in manifests() if doc["kind"] == "ConfigMap")
    for env in (compose["x-service"]["environment"], config["data"]):
        active = urlsplit(env["REDIS_URL"]).netloc
        assert active not in {urlsplit(env[name]).netloc for name in (
            "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "BEAT_REDIS_URL")}
    services = compose["services"]
    broker_host = urlsplit(compose["x-service"]["environment"]["CELERY_BROKER_URL"]).hostname
    assert broker_host in services and broker_host in compose["x-service"]["depends_on"]
