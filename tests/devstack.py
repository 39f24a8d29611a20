"""Runs `scripts/dev-stack` (the session manager, Mosquitto with our plugin and nginx on
free loopback ports, from the same config templates as the compose stack) for a test suite
and stops it afterwards. Shared by the end-to-end tests and the client library tests.
"""

import json
import os
import queue
import signal
import subprocess
import threading
import time

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV_STACK = os.path.join(ROOT, "scripts", "dev-stack")
STACK_START_TIMEOUT_SECS = 300  # includes a release build when the binaries are missing


class RunningStack:
    """One dev-stack process and the JSON it announced."""

    def __init__(self, *args, env=None):
        """Starts dev-stack with `args`; `env` adds environment variables (dev-stack passes
        the ISM_* ones on to the service)."""
        self.process = subprocess.Popen(
            [DEV_STACK, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=dict(os.environ, **(env or {})))
        self.stderr_lines = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.stdout_lines = queue.Queue()
        threading.Thread(target=self._drain_stdout, daemon=True).start()
        try:
            line = self.stdout_lines.get(timeout=STACK_START_TIMEOUT_SECS)
        except queue.Empty:
            self.stop()
            pytest.fail("dev-stack did not come up in time:\n" + self.stderr())
        if not line:
            self.process.wait()
            pytest.fail(f"dev-stack failed (status {self.process.returncode}):\n"
                        + self.stderr())
        self.info = json.loads(line)

    def _drain_stderr(self):
        for line in self.process.stderr:
            self.stderr_lines.append(line)

    def _drain_stdout(self):
        for line in self.process.stdout:
            self.stdout_lines.put(line)
        self.stdout_lines.put("")  # end of output

    def restart(self, name, timeout=60):
        """Restarts "mosquitto" (SIGTERM) or "session-manager" (SIGKILL) on the same ports
        and data, and returns once it answers again."""
        sig = {"mosquitto": signal.SIGUSR1, "session-manager": signal.SIGUSR2}[name]
        self.process.send_signal(sig)
        try:
            line = self.stdout_lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"dev-stack did not restart {name} in time:\n" + self.stderr())
        if not line:
            pytest.fail(f"dev-stack ended while restarting {name}:\n" + self.stderr())
        announced = json.loads(line)
        assert announced.get("restarted") == name, announced
        self.info["pids"] = announced["pids"]

    def stderr(self):
        time.sleep(0.2)
        return "".join(self.stderr_lines)

    def __getitem__(self, key):
        return self.info[key]

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    # --- HTTP helpers ---------------------------------------------------------------------

    def wait_broker_link(self, timeout=15):
        """Until the service's link to the broker (closes, kicks, presence) is connected."""
        deadline = time.monotonic() + timeout
        while not self.admin("GET", "/healthz").json().get("revocation", {}).get("connected"):
            assert time.monotonic() < deadline, "the service's broker link never connected"
            time.sleep(0.05)

    def admin(self, method, path, **kwargs):
        headers = {"authorization": f"Bearer {self['admin_api_key']}"}
        return requests.request(method, self["admin_url"] + path, headers=headers,
                                timeout=10, **kwargs)

    def public(self, method, path, **kwargs):
        """A request through nginx (the public URL), verifying the dev CA for HTTPS."""
        kwargs.setdefault("verify", self["ca_file"])
        kwargs.setdefault("timeout", 10)
        return requests.request(method, self["public_url"] + path, **kwargs)

    def create_session(self, session_type="e2e"):
        response = self.admin("POST", "/api/v1/sessions", json={"type": session_type})
        assert response.status_code in (200, 201), response.text
        return response.json()

    def join(self, session, client):
        response = self.public("POST", f"/api/v1/sessions/{session['id']}/join",
                               json={"pin": session["pin"], "client": client})
        assert response.status_code == 200, response.text
        return response.json()


def finish_stack(stack):
    status = stack.stop()
    assert status == 0, f"dev-stack exited with {status}:\n{stack.stderr()}"
