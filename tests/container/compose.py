"""One compose project in the private engine that `scripts/container-test` started: the
checkout's copy (ISM_CONTAINER_CONTEXT) is the project directory, so every command runs
exactly where a user would run it, with the project's own docker-compose.yaml and a `.env`
made from `.env.example`.

Debian ships docker-compose 1.29 only, so shell snippets taken from the docs run with a
`docker` function that turns `docker compose …` into `docker-compose …` and leaves every
other `docker` command alone.
"""

import os
import re
import subprocess
import time

import pytest
import requests

# `docker compose` (v2) → `docker-compose` (v1.29), for snippets copied from the docs.
COMPOSE_V1_SHIM = """
docker() {
    if [ "${1:-}" = compose ]; then shift; command docker-compose "$@"; else command docker "$@"; fi
}
"""


def context_dir():
    path = os.environ.get("ISM_CONTAINER_CONTEXT")
    if not path:
        pytest.fail("ISM_CONTAINER_CONTEXT is not set: run these tests with scripts/container-test, "
                    "which starts the private engine and prepares the build context")
    return path


class Compose:
    """The compose project in `directory` (the checkout's copy)."""

    def __init__(self, directory):
        self.directory = directory
        self.extra_files = []

    # --- .env -------------------------------------------------------------------------
    def env_path(self):
        return os.path.join(self.directory, ".env")

    def write_env(self, **overrides):
        """`cp .env.example .env`, then the given settings changed as a user edits them."""
        with open(os.path.join(self.directory, ".env.example")) as source:
            lines = source.read().splitlines()
        self._write_env_lines(lines, overrides)

    def set_env(self, **overrides):
        """Changes settings in the current `.env`."""
        with open(self.env_path()) as current:
            lines = current.read().splitlines()
        self._write_env_lines(lines, overrides)

    def _write_env_lines(self, lines, overrides):
        remaining = dict(overrides)
        out = []
        for line in lines:
            match = re.match(r"^([A-Z0-9_]+)=", line)
            if match and match.group(1) in remaining:
                out.append(f"{match.group(1)}={remaining.pop(match.group(1))}")
            else:
                out.append(line)
        out.extend(f"{name}={value}" for name, value in remaining.items())
        with open(self.env_path(), "w") as env:
            env.write("\n".join(out) + "\n")

    def env_value(self, name):
        with open(self.env_path()) as env:
            for line in env:
                if line.startswith(name + "="):
                    return line.split("=", 1)[1].strip()
        return None

    # --- commands -----------------------------------------------------------------------
    def _files(self):
        args = []
        if self.extra_files:
            args += ["-f", os.path.join(self.directory, "docker-compose.yaml")]
            for extra in self.extra_files:
                args += ["-f", extra]
        return args

    def run(self, *args, check=True, timeout=600, input=None):
        """`docker-compose ARGS` in the project directory; the CompletedProcess."""
        result = subprocess.run(["docker-compose", *self._files(), *args], cwd=self.directory,
                                capture_output=True, text=True, timeout=timeout, input=input)
        if check and result.returncode != 0:
            pytest.fail(f"docker-compose {' '.join(args)} failed ({result.returncode}):\n"
                        f"{result.stdout}\n{result.stderr}")
        return result

    def shell(self, script, check=True, timeout=900, env=None):
        """A snippet from the docs, run by bash in the project directory as written (with
        `docker compose` meaning docker-compose 1.29)."""
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", COMPOSE_V1_SHIM + script],
                                cwd=self.directory, capture_output=True, text=True,
                                timeout=timeout, env={**os.environ, **(env or {})})
        if check and result.returncode != 0:
            pytest.fail(f"documented commands failed ({result.returncode}):\n{script}\n"
                        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
        return result

    def logs(self, service):
        return self.run("logs", "--no-color", service, check=False).stdout

    def container_id(self, service):
        return self.run("ps", "-q", service).stdout.strip()

    def inspect(self, service, template):
        container = self.container_id(service)
        result = subprocess.run(["docker", "inspect", "-f", template, container],
                                capture_output=True, text=True, check=True)
        return result.stdout.strip()

    def wait_healthy(self, services=("session-manager", "broker", "proxy"), timeout=180):
        """Waits until every service's container reports healthy; fails with their logs."""
        deadline = time.monotonic() + timeout
        states = {}
        while time.monotonic() < deadline:
            states = {}
            for service in services:
                container = self.container_id(service)
                if not container:
                    states[service] = "absent"
                    continue
                result = subprocess.run(
                    ["docker", "inspect", "-f", "{{.State.Status}}/{{.State.Health.Status}}",
                     container], capture_output=True, text=True)
                states[service] = result.stdout.strip() or result.stderr.strip()
            if all(state == "running/healthy" for state in states.values()):
                return
            time.sleep(1)
        pytest.fail(f"not healthy within {timeout}s: {states}\n{self.logs_tail(services)}")

    def logs_tail(self, services=("session-manager", "broker", "proxy")):
        """The end of each service's log, for a failure message."""
        return "\n".join(f"--- {s}\n{self.logs(s)[-3000:]}" for s in services)

    def down(self):
        self.run("down", "-v", "--remove-orphans", "-t", "5", check=False, timeout=300)


def wait_for_http(url, timeout=60, **kwargs):
    """The first response from `url` (any status), once something answers there."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            return requests.get(url, timeout=5, **kwargs)
        except requests.RequestException as error:
            last = error
            time.sleep(0.5)
    pytest.fail(f"nothing answered at {url} within {timeout}s: {last}")
