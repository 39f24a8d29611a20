"""Webhooks end to end: the example receiver of docs/API.md (the block marked
`<!-- tested: webhook-receiver -->`, run unchanged) verifies, with the `standardwebhooks`
package, what a dev-stack started with `ISM_WEBHOOK_URLS` pointing at it delivers; a
delivery with a forged signature is refused by it.
"""

import base64
import os
import queue
import subprocess
import sys
import threading
import time

import pytest
import requests

from conftest import ROOT, RunningStack, finish_stack
from test_readme import MARKER

API_MD = os.path.join(ROOT, "docs", "API.md")
RECEIVER_START_TIMEOUT_SECS = 30
DELIVERY_TIMEOUT_SECS = 30


def receiver_code():
    """The Python block docs/API.md marks `<!-- tested: webhook-receiver -->`."""
    with open(API_MD, encoding="utf-8") as file:
        blocks = {name: (language, code) for name, language, code in MARKER.findall(file.read())}
    assert "webhook-receiver" in blocks, (
        "docs/API.md has no block marked `<!-- tested: webhook-receiver -->`")
    language, code = blocks["webhook-receiver"]
    assert language == "python", f"the webhook-receiver block is ```{language}"
    return code


class ExampleReceiver:
    """docs/API.md's receiver in a process of its own, on a port it picks (PORT=0)."""

    def __init__(self, secret):
        env = dict(os.environ, ISM_WEBHOOK_SECRET=secret, PORT="0")
        self.process = subprocess.Popen(
            [sys.executable, "-c", receiver_code()], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()
        first = self.next_line(RECEIVER_START_TIMEOUT_SECS)
        assert first.startswith("listening on port "), first
        self.port = int(first.rsplit(" ", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}/"

    def _drain(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, timeout):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"the example receiver printed nothing within {timeout} s")
        if line is None:
            self.process.wait()
            pytest.fail("the example receiver ended: " + self.process.stderr.read())
        return line

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def webhook_stack():
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    receiver = ExampleReceiver(secret)
    settings = {"ISM_WEBHOOK_URLS": receiver.url, "ISM_WEBHOOK_SECRET": secret}
    running = RunningStack("--auth-mode", "dev_jwt_auth", "--deployment-mode", "dev",
                           env=settings)
    yield running, receiver
    finish_stack(running)
    receiver.stop()


def test_the_example_receiver_verifies_every_session_event(webhook_stack):
    stack, receiver = webhook_stack
    session = stack.create_session("webhooks")
    stack.join(session, "lamp-1")
    closed = stack.admin("DELETE", f"/api/v1/sessions/{session['id']}")
    assert closed.status_code == 204, closed.text

    deadline = time.monotonic() + DELIVERY_TIMEOUT_SECS
    seen = []
    while len(seen) < 3:
        line = receiver.next_line(max(0.1, deadline - time.monotonic()))
        event_id, event_type, data = line.split(" ", 2)
        assert event_id.startswith("evt_"), line
        if session["id"] in data and (event_id, event_type) not in seen:
            seen.append((event_id, event_type))
    assert [event_type for _, event_type in seen] == [
        "session_created", "device_joined", "session_closed"]


def test_the_example_receiver_refuses_a_forged_delivery(webhook_stack):
    _, receiver = webhook_stack
    body = b'{"id":"evt_forged","type":"session_closed","data":{"session_id":"1"}}'
    headers = {
        "content-type": "application/json",
        "webhook-id": "evt_forged",
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": "v1," + base64.b64encode(b"\0" * 32).decode(),
    }
    answer = requests.post(receiver.url, data=body, headers=headers, timeout=10)
    assert answer.status_code == 401
