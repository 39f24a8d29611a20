"""Live sessions end to end over the native stack (service + Mosquitto with our plugin +
nginx) with a real webhook receiver on loopback: who is online, the reason each device
left, kicking one device, the SSE stream, signed webhooks and resynchronisation after
restarts."""

import base64
import http.server
import json
import secrets
import threading
import time

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from conftest import Device
from devstack import RunningStack, finish_stack

WEBHOOK_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
WITHIN_SECS = 1.0


class WebhookReceiver:
    """An HTTP server on loopback that verifies each delivery with the `standardwebhooks`
    package (an implementation independent of ours) and keeps the events."""

    def __init__(self):
        self.events = Collected()
        self.refused = []
        receiver = self
        verifier = Webhook(WEBHOOK_SECRET)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                try:
                    event = verifier.verify(body, dict(self.headers))
                except Exception as error:  # the library raises its own WebhookVerificationError
                    receiver.refused.append(repr(error))
                    self.send_response(400)
                else:
                    assert self.headers["webhook-id"] == event["id"]
                    receiver.events.put(event)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


class EventStream:
    """An admin SSE stream (by default the event stream), read on a thread:
    `(event name, JSON)` pairs in `events`."""

    def __init__(self, stack, session_id=None, path="/api/v1/events"):
        self.events = Collected()
        self.closed = False
        params = {"session": session_id} if session_id else {}
        self.response = requests.get(
            stack["admin_url"] + path, params=params, stream=True, timeout=30,
            headers={"authorization": f"Bearer {stack['admin_api_key']}",
                     "accept": "text/event-stream"})
        assert self.response.status_code == 200, self.response.text
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        fields = {}
        try:
            for line in self.response.iter_lines(decode_unicode=True):
                if line is None:
                    continue
                if line == "":
                    if "data" in fields:
                        self.events.put((fields.get("event"), json.loads(fields["data"])))
                    fields = {}
                elif not line.startswith(":") and ":" in line:
                    key, value = line.split(":", 1)
                    fields[key] = value[1:] if value.startswith(" ") else value
        except Exception:
            if not self.closed:  # closing the response under the reader ends it with an error
                raise

    def close(self):
        self.closed = True
        self.response.close()


class Collected:
    """Items that arrive on other threads, kept in arrival order for `wait_for`."""

    def __init__(self):
        self.items = []
        self.lock = threading.Lock()

    def put(self, item):
        with self.lock:
            self.items.append(item)

    def snapshot(self):
        with self.lock:
            return list(self.items)


def wait_for(source, predicate, timeout, what):
    """The first item collected in `source` that satisfies `predicate`, waiting up to
    `timeout` seconds for it; nothing is consumed, so the order of waits does not matter."""
    deadline = time.monotonic() + timeout
    while True:
        seen = source.snapshot()
        found = next((item for item in seen if predicate(item)), None)
        if found is not None:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout}s; saw {seen}")
        time.sleep(0.01)


def device_event(kind, session_id, client, reason=None):
    def matches(event):
        if isinstance(event, tuple):  # (SSE event name, JSON)
            event = event[1]
        data = event.get("data", {})
        return (event.get("type") == kind and data.get("session_id") == session_id
                and data.get("client") == client
                and (reason is None or data.get("reason") == reason))
    return matches


def client_view(stack, session_id, client):
    view = stack.admin("GET", f"/api/v1/sessions/{session_id}").json()
    return view, next((c for c in view["clients"] if c["name"] == client), None)


def wait_presence(stack, session_id, client, online, reason=None, timeout=WITHIN_SECS):
    deadline = time.monotonic() + timeout
    while True:
        view, seen = client_view(stack, session_id, client)
        if seen and seen["online"] == online and (reason is None
                                                  or seen["disconnect_reason"] == reason):
            return view, seen
        if time.monotonic() > deadline:
            pytest.fail(f"{client} not online={online} reason={reason} within {timeout}s: {seen}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def receiver():
    running = WebhookReceiver()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def live_stack(receiver):
    """A stack of its own (the tests restart its broker and service) delivering webhooks
    to `receiver`."""
    settings = {"ISM_WEBHOOK_URLS": receiver.url, "ISM_WEBHOOK_SECRET": WEBHOOK_SECRET}
    running = RunningStack("--auth-mode", "dev_jwt_auth", "--deployment-mode", "dev",
                           env=settings)
    running.wait_broker_link()
    yield running
    finish_stack(running)


@pytest.fixture
def opened():
    devices = []

    def open_device(stack, client, grant, **kwargs):
        device = Device(stack, "tcp", client, grant["token"],
                        client_id=kwargs.pop("client_id", grant["client_id"]), **kwargs)
        devices.append(device)
        return device

    yield open_device
    for device in devices:
        device.close()


def test_connect_and_drop_reach_the_view_the_stream_and_the_webhooks(live_stack, receiver, opened):
    session = live_stack.create_session()
    sid = session["id"]
    stream = EventStream(live_stack, session_id=sid)
    try:
        grant = live_stack.join(session, "lamp")
        device = opened(live_stack, "lamp", grant)
        assert device.wait_connected()
        view, lamp = wait_presence(live_stack, sid, "lamp", online=True)
        assert view["online_count"] == 1
        assert lamp["connected_at"] is not None and lamp["disconnect_reason"] is None
        wait_for(stream.events, device_event("device_connected", sid, "lamp"), WITHIN_SECS,
                 "device_connected on the SSE stream")
        wait_for(receiver.events, device_event("device_connected", sid, "lamp"), WITHIN_SECS,
                 "device_connected webhook")

        device.drop()
        view, lamp = wait_presence(live_stack, sid, "lamp", online=False, reason="disconnected")
        assert view["online_count"] == 0 and lamp["last_seen"] is not None
        wait_for(stream.events, device_event("device_disconnected", sid, "lamp", "disconnected"),
                 WITHIN_SECS, "device_disconnected on the SSE stream")
        wait_for(receiver.events,
                 device_event("device_disconnected", sid, "lamp", "disconnected"),
                 WITHIN_SECS, "device_disconnected webhook")
    finally:
        stream.close()
    assert not receiver.refused, receiver.refused


def test_each_way_of_leaving_has_its_reason(live_stack, receiver, opened):
    # Taken over: the same device connects again with its own client id.
    session = live_stack.create_session()
    sid = session["id"]
    grant = live_stack.join(session, "cam")
    first = opened(live_stack, "cam", grant)
    assert first.wait_connected()
    wait_presence(live_stack, sid, "cam", online=True)
    second = opened(live_stack, "cam", live_stack.join(session, "cam"))
    assert second.wait_connected()
    wait_for(receiver.events, device_event("device_disconnected", sid, "cam", "taken_over"),
             WITHIN_SECS, "taken_over")
    _, cam = wait_presence(live_stack, sid, "cam", online=True)
    assert cam["disconnect_reason"] is None
    first.close()

    # Session closed.
    closing = live_stack.create_session()
    device = opened(live_stack, "door", live_stack.join(closing, "door"))
    assert device.wait_connected()
    wait_presence(live_stack, closing["id"], "door", online=True)
    assert live_stack.admin("DELETE", f"/api/v1/sessions/{closing['id']}").status_code == 204
    wait_for(receiver.events,
             device_event("device_disconnected", closing["id"], "door", "session_closed"),
             WITHIN_SECS, "session_closed")
    wait_for(receiver.events, lambda e: e["type"] == "session_closed"
             and e["data"]["session_id"] == closing["id"], WITHIN_SECS, "session_closed event")

    # Expired: the session (and so the token) ends two seconds after its creation.
    response = live_stack.admin("POST", "/api/v1/sessions", json={"ttl_secs": 2})
    assert response.status_code == 201, response.text
    short = response.json()
    device = opened(live_stack, "clock", live_stack.join(short, "clock"))
    assert device.wait_connected()
    wait_for(receiver.events, device_event("device_disconnected", short["id"], "clock", "expired"),
             5, "expired")
    wait_for(receiver.events, lambda e: e["type"] == "session_expired"
             and e["data"]["session_id"] == short["id"], 5, "session_expired event")


def test_kick_disconnects_one_device_refuses_its_old_token_and_a_fresh_join_works(
        live_stack, receiver, opened):
    session = live_stack.create_session()
    sid, root = session["id"], session["topic_root"]
    victim_grant = live_stack.join(session, "victim")
    victim = opened(live_stack, "victim", victim_grant)
    bystander = opened(live_stack, "bystander", live_stack.join(session, "bystander"))
    assert victim.wait_connected() and bystander.wait_connected()
    assert bystander.subscribe(f"{root}#")
    wait_presence(live_stack, sid, "victim", online=True)

    kicked_at = time.monotonic()
    response = live_stack.admin("DELETE", f"/api/v1/sessions/{sid}/clients/victim")
    assert response.status_code == 204, response.text
    wait_presence(live_stack, sid, "victim", online=False, reason="kicked")
    while victim.disconnected_at is None:
        assert time.monotonic() - kicked_at < WITHIN_SECS, "the kicked device is still connected"
        time.sleep(0.01)
    wait_for(receiver.events, lambda e: e["type"] == "device_kicked"
             and e["data"]["client"] == "victim", WITHIN_SECS, "device_kicked")

    victim.close()
    again = opened(live_stack, "victim", victim_grant)
    assert not again.wait_connected(timeout=3), "the token issued before the kick still works"
    again.close()

    assert bystander.connected.is_set() and bystander.disconnected_at is None
    bystander.publish(f"{root}still-here", "yes")
    assert (f"{root}still-here", "yes") in bystander.received(WITHIN_SECS)

    fresh = opened(live_stack, "victim", live_stack.join(session, "victim"))
    assert fresh.wait_connected(), "a fresh join after the kick must work"
    wait_presence(live_stack, sid, "victim", online=True)

    missing = live_stack.admin("DELETE", f"/api/v1/sessions/{sid}/clients/nobody")
    assert missing.status_code == 404, missing.text


def test_devices_see_their_sessions_presence_and_cannot_forge_it(live_stack, opened):
    session, other = live_stack.create_session(), live_stack.create_session()
    root = session["topic_root"]
    watcher = opened(live_stack, "watcher", live_stack.join(session, "watcher"))
    assert watcher.wait_connected()
    lamp = opened(live_stack, "lamp", live_stack.join(session, "lamp"))
    assert lamp.wait_connected()
    assert watcher.subscribe(f"{root}$presence/#")
    presence = dict(watcher.received(WITHIN_SECS, presence=True))
    assert json.loads(presence[f"{root}$presence/lamp"])["online"] is True

    # No device may write the presence sub-tree, its own entry or another's.
    lamp.publish(f"{root}$presence/lamp", json.dumps({"online": False, "at": 0}))
    lamp.publish(f"{root}$presence/ghost", json.dumps({"online": True, "at": 0}))
    forged = [m for m in watcher.received(WITHIN_SECS, presence=True)
              if m[0].startswith(f"{root}$presence/")]
    assert forged == [], forged

    # Nor read or write the service's presence channel, nor see another session's presence.
    stranger = opened(live_stack, "stranger", live_stack.join(other, "stranger"))
    assert stranger.wait_connected()
    wait_presence(live_stack, other["id"], "stranger", online=True)
    for device in (lamp, stranger):
        assert not device.subscribe("$CONTROL/session-auth/v1/presence")
        assert not device.subscribe("$CONTROL/#")
    assert not stranger.subscribe(f"{root}$presence/#")
    forged = {"disconnected": {"sid": other["id"], "client": "stranger",
                               "client_id": f"{other['id']}/stranger", "at": 1,
                               "reason": "kicked"}}
    # In the batch form the plugin uses, so that only the topic's guard can stop it.
    lamp.publish("$CONTROL/session-auth/v1/presence", json.dumps([forged]))
    time.sleep(WITHIN_SECS)
    _, seen = client_view(live_stack, other["id"], "stranger")
    assert seen["online"] and seen["disconnect_reason"] is None, \
        f"a device forged a presence report: {seen}"


def test_presence_is_right_again_after_the_broker_and_then_the_service_restart(live_stack, opened):
    session = live_stack.create_session()
    sid = session["id"]
    stays_grant = live_stack.join(session, "stays")
    stays = opened(live_stack, "stays", stays_grant)
    leaves = opened(live_stack, "leaves", live_stack.join(session, "leaves"))
    assert stays.wait_connected() and leaves.wait_connected()
    wait_presence(live_stack, sid, "leaves", online=True)

    # The broker restarts under both devices; only `stays` comes back (with its token).
    live_stack.restart("mosquitto")
    for device in (stays, leaves):
        device.close()  # ends their own reconnect loops
    back = opened(live_stack, "stays", stays_grant)
    assert back.wait_connected(timeout=10)
    # Then the service restarts (kill -9) and must learn who is online from the broker.
    live_stack.restart("session-manager")
    up = time.monotonic()
    view, _ = wait_presence(live_stack, sid, "stays", online=True, timeout=2.0)
    leaving = next((c for c in view["clients"] if c["name"] == "leaves"), None)
    assert leaving is not None and not leaving["online"], leaving
    assert view["online_count"] == 1, view
    print(f"presence right {time.monotonic() - up:.2f}s after the service was back")
