"""docker-compose.yaml is valid for every environment .env.example describes (each
MQTT_AUTH_MODE with each DEPLOYMENT_MODE), and renders the contracts the docs promise:
admin published on the host's loopback only, the proxy's address trusted for
X-Forwarded-For, the mode reaching every service. There is no Docker engine on test
machines; `docker-compose config` validates and renders without one."""

import itertools
import os
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT

AUTH_MODES = ("dev_no_auth", "dev_jwt_auth", "kms_jwt_auth")
DEPLOYMENT_MODES = ("dev", "prod")


def env_example():
    values = {}
    with open(os.path.join(ROOT, ".env.example"), encoding="utf-8") as file:
        for line in file:
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, value = line.partition("=")
                values[name] = value
    return values


def test_env_example_names_the_documented_environments():
    values = env_example()
    assert values["MQTT_AUTH_MODE"] in AUTH_MODES
    assert values["DEPLOYMENT_MODE"] in DEPLOYMENT_MODES
    text = open(os.path.join(ROOT, ".env.example"), encoding="utf-8").read()
    for mode in AUTH_MODES:
        assert mode in text, f".env.example does not describe {mode}"


@pytest.mark.parametrize("auth_mode,deployment_mode",
                         list(itertools.product(AUTH_MODES, DEPLOYMENT_MODES)))
def test_compose_config_accepts_each_environment(tmp_path, auth_mode, deployment_mode):
    docker_compose = shutil.which("docker-compose")
    assert docker_compose, "docker-compose is missing: apt-get install docker-compose"
    values = env_example()
    values.update(MQTT_AUTH_MODE=auth_mode, DEPLOYMENT_MODE=deployment_mode)
    if auth_mode == "kms_jwt_auth":
        values.update(ISM_KMS_KEY_ID="alias/ism-signing", AWS_REGION="eu-central-1")
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    clean_env = {k: v for k, v in os.environ.items()
                 if k not in values and not k.startswith(("ISM_", "AWS_", "COMPOSE_"))}
    result = subprocess.run(
        [docker_compose, "--project-directory", ROOT, "--env-file", str(env_file),
         "-f", os.path.join(ROOT, "docker-compose.yaml"), "config"],
        capture_output=True, text=True, env=clean_env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert set(services) == {"broker", "proxy", "session-manager"}

    service = services["session-manager"]
    assert service["environment"]["MQTT_AUTH_MODE"] == auth_mode
    assert services["broker"]["environment"]["MQTT_AUTH_MODE"] == auth_mode
    assert services["proxy"]["environment"]["DEPLOYMENT_MODE"] == deployment_mode
    assert service["environment"]["ISM_TRUSTED_PROXIES"] == \
        services["proxy"]["networks"]["ism"]["ipv4_address"]
    admin_ports = [p for p in service["ports"] if str(p).endswith(":50001/tcp")
                   or (isinstance(p, dict) and p.get("target") == 50001)]
    assert admin_ports == ["127.0.0.1:50001:50001/tcp"], service["ports"]
    # The certificate listener (client certificates) is served and published.
    broker = services["broker"]
    assert str(broker["environment"]["BROKER_CERT_PORT"]) == "8884"
    assert "0.0.0.0:8884:8884/tcp" in broker["ports"], broker["ports"]
    for name, svc in services.items():
        assert svc["restart"] == "unless-stopped", name
        assert "healthcheck" in svc, name
        assert svc["build"]["dockerfile"].startswith("deployment/"), name
    assert {"session-data", "signing-keys", "tls", "broker-data"} <= set(config["volumes"])
