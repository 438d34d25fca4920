"""docker-compose.yml is valid (checked with the docker client when it is installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_is_valid():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker client not installed")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("docker compose plugin not installed")
    env = {"SOCIALSEC_PII_KEY": "x", "SOCIALSEC_PII_HASH_KEY": "x", "SOCIALSEC_INTERNAL_TOKEN": "x", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--services"],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert set(r.stdout.split()) >= {"gateway", "registration", "contribution", "card", "review", "postgres", "redis"}


def test_every_service_in_compose_migrates_on_start_and_has_a_healthcheck():
    text = (ROOT / "docker-compose.yml").read_text()
    for name in ("registration", "contribution", "card", "review", "gateway"):
        assert f"  {name}:\n" in text
    assert text.count("healthcheck:") >= 7


def test_compose_runs_the_services_on_nats_jetstream_one_node_or_a_three_node_cluster():
    import yaml

    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert "-js" in services["nats"]["command"] and "profiles" not in services["nats"]
    cluster = [n for n, s in services.items() if "cluster" in (s.get("profiles") or [])]
    assert sorted(cluster) == ["nats-1", "nats-2", "nats-3"]
    for n in cluster:
        assert "-js" in services[n]["command"] and "--routes" in services[n]["command"]
    for name in ("registration", "contribution", "card", "review"):
        env = services[name]["environment"]
        assert env["SOCIALSEC_EVENT_TRANSPORT"] == "nats" and "nats" in env["SOCIALSEC_NATS_URL"]
        assert "nats" in services[name]["depends_on"]
