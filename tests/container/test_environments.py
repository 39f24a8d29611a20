"""The five other environments of docs/DEPLOYMENT.md, each brought up from `.env.example`
with the settings the doc names, and checked from the host: ES256 tokens, the production
proxy with generated and with bring-your-own certificates, AWS KMS signing (moto's KMS API
in a container beside the stack), and dev_no_auth.
"""

import base64
import os
import re
import shutil
import time

import boto3
import pytest
import requests
from cryptography.hazmat.primitives import serialization

from conftest import LOOPBACK_BINDS
from doc_blocks import doc_block
from stack_checks import Endpoints, connect_device, create_session, full_session_check, join

DEPLOYMENT = "docs/DEPLOYMENT.md"


def bring_up(compose, fresh=True, **settings):
    if fresh:
        compose.down()
    compose.write_env(**LOOPBACK_BINDS, **settings)
    result = compose.run("up", "-d", timeout=900, check=False)
    if result.returncode != 0:
        pytest.fail(f"docker-compose up -d failed:\n{result.stderr}\n{compose.logs_tail()}")
    compose.wait_healthy()
    assert compose.inspect("session-manager", "{{.RestartCount}}") == "0"


def ca_from_stack(compose):
    compose.shell(doc_block(DEPLOYMENT, "ca-file"))
    return os.path.join(compose.directory, "ca.pem")


def test_dev_jwt_auth_with_es256(compose):
    bring_up(compose, ISM_JWT_ALG="ES256")
    endpoints = Endpoints(ca_file=ca_from_stack(compose))
    jwks = requests.get(f"{endpoints.public_url}/.well-known/jwks.json", timeout=10).json()
    assert [key["alg"] for key in jwks["keys"]] == ["ES256"]
    full_session_check(endpoints)
    compose.down()


def test_prod_with_generated_certificates(compose):
    bring_up(compose, DEPLOYMENT_MODE="prod")
    endpoints = Endpoints(prod=True, ca_file=ca_from_stack(compose))
    redirect = requests.get("http://127.0.0.1/api/v1/sessions/1/join", allow_redirects=False,
                            timeout=10)
    assert redirect.status_code == 301 and redirect.headers["location"].startswith("https://")
    page = requests.get("https://localhost/", verify=endpoints.ca_file, timeout=10)
    assert page.status_code == 200 and "strict-transport-security" in page.headers
    full_session_check(endpoints)
    compose.down()


def test_prod_with_bring_your_own_certificates(compose):
    certs = os.path.join(compose.directory, "certs")
    shutil.rmtree(certs, ignore_errors=True)
    compose.down()
    compose.write_env(**LOOPBACK_BINDS)
    compose.shell(doc_block(DEPLOYMENT, "byo-certificates"), timeout=300)
    # Private keys: the directory is root's alone, as an operator would keep it. The
    # default TLS_AUTOGENERATE=true stays: the service must leave the directory alone.
    os.chmod(certs, 0o700)
    for name in os.listdir(certs):
        os.chmod(os.path.join(certs, name), 0o600 if name.endswith(".key") else 0o644)
    documented = {"ca.pem", "ca.key", "server.pem", "server.key", "client-ca.pem",
                  "client-ca.key"}
    assert set(os.listdir(certs)) == documented
    bring_up(compose, TLS_SOURCE="./certs", DEPLOYMENT_MODE="prod")
    assert set(os.listdir(certs)) == documented, "the service wrote into the operator's directory"
    endpoints = Endpoints(prod=True, ca_file=os.path.join(certs, "ca.pem"))
    full_session_check(endpoints)
    compose.down()
    shutil.rmtree(certs, ignore_errors=True)


def test_kms_jwt_auth_against_a_kms_api(compose):
    compose.down()
    compose.extra_files = [os.path.join(os.path.dirname(__file__), "kms", "compose.override.yaml")]
    try:
        compose.write_env(**LOOPBACK_BINDS)
        compose.run("up", "-d", "--build", "kms", timeout=900)
        kms = boto3.client("kms", endpoint_url="http://127.0.0.1:4566", region_name="eu-central-1",
                           aws_access_key_id="test", aws_secret_access_key="test")
        key_id = None
        for _ in range(60):
            try:
                key_id = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
                break
            except Exception:  # moto still starting
                time.sleep(1)
        assert key_id, "moto's KMS API did not come up"
        bring_up(compose, fresh=False, MQTT_AUTH_MODE="kms_jwt_auth", ISM_KMS_KEY_ID=key_id,
                 AWS_REGION="eu-central-1", AWS_ACCESS_KEY_ID="test",
                 AWS_SECRET_ACCESS_KEY="test", AWS_ENDPOINT_URL="http://kms:5000")
        endpoints = Endpoints(ca_file=ca_from_stack(compose))
        jwks = requests.get(f"{endpoints.public_url}/.well-known/jwks.json", timeout=10).json()
        # The published key is the KMS key's public half.
        public = serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])
        modulus = public.public_numbers().n.to_bytes(256, "big")
        assert jwks["keys"][0]["alg"] == "RS256"
        assert jwks["keys"][0]["n"] == base64.urlsafe_b64encode(modulus).rstrip(b"=").decode()
        full_session_check(endpoints)
    finally:
        compose.down()
        compose.extra_files = []


def test_dev_no_auth_works_and_says_so(compose):
    bring_up(compose, MQTT_AUTH_MODE="dev_no_auth")
    endpoints = Endpoints()
    session_id, pin = create_session(endpoints)
    devices = [connect_device(endpoints, transport, session_id, pin) for transport in ("tcp", "ws")]
    try:
        for device in devices:
            assert device.subscribe(f"/{session_id}/#", qos=1)
        devices[0].publish(f"/{session_id}/chat", "hello", qos=1)
        assert devices[1].receive(5).payload == b"hello"
    finally:
        for device in devices:
            device.close()
    assert "dev_no_auth" in compose.logs("session-manager"), "the service does not say it runs without auth"
    assert "dev_no_auth" in compose.logs("broker"), "the broker does not say it admits anonymous clients"
    compose.down()
