"""The server-side monitor end to end over the native stack (service + Mosquitto with our
plugin + nginx): with ISM_MONITOR=log a device's publish shows in the service's log with
its topic, size, QoS and retain (its payload only with ISM_MONITOR_PAYLOADS=true) and in
the per-session counters of /metrics; the live message stream of a session carries that
session's messages and no other's, with the monitor on and off; with it off the broker
link holds a session's subscription only while someone reads it; and a reader that never
reads loses messages (and is told so) without holding up kicks, closes or presence."""

import json
import os
import threading
import time
import uuid

import pytest
import requests

from devstack import RunningStack, finish_stack
from test_live_sessions import EventStream, wait_for, wait_presence

WITHIN_SECS = 1.0
SECRET = "payload-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def monitor_stack():
    """ISM_MONITOR=log, payloads not logged."""
    running = RunningStack("--auth-mode", "dev_jwt_auth", "--deployment-mode", "dev",
                           env={"ISM_MONITOR": "log"})
    running.wait_broker_link()
    yield running
    finish_stack(running)


@pytest.fixture(scope="module")
def payload_stack():
    """ISM_MONITOR=log with ISM_MONITOR_PAYLOADS=true."""
    running = RunningStack("--auth-mode", "dev_jwt_auth", "--deployment-mode", "dev",
                           env={"ISM_MONITOR": "log", "ISM_MONITOR_PAYLOADS": "true"})
    running.wait_broker_link()
    yield running
    finish_stack(running)


@pytest.fixture(scope="module")
def quiet_stack():
    """ISM_MONITOR unset: off."""
    running = RunningStack("--auth-mode", "dev_jwt_auth", "--deployment-mode", "dev")
    running.wait_broker_link()
    yield running
    finish_stack(running)



def message_stream(stack, session_id):
    return EventStream(stack, path=f"/api/v1/sessions/{session_id}/messages")


def monitor_lines(stack, topic, timeout=5):
    """The service's log lines about messages on `topic`, waiting for the first."""
    path = os.path.join(stack["logs_dir"], "session-manager.log")
    deadline = time.monotonic() + timeout
    while True:
        with open(path, encoding="utf-8") as log:
            lines = [json.loads(line) for line in log if line.startswith("{")]
        found = [line for line in lines
                 if line.get("message") == "mqtt message" and line.get("topic") == topic]
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"no log line for {topic} within {timeout}s")
        time.sleep(0.05)


def session_lines(stack, session_id):
    """The service's log lines about messages of `session_id` so far."""
    with open(os.path.join(stack["logs_dir"], "session-manager.log"), encoding="utf-8") as log:
        lines = [json.loads(line) for line in log if line.startswith("{")]
    return [line for line in lines
            if line.get("message") == "mqtt message" and line.get("session_id") == session_id]


def metric_samples(stack, name):
    """`{labels text: value}` of every sample of the metric `name` on /metrics."""
    text = requests.get(stack["admin_url"] + "/metrics", timeout=10).text
    samples = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line[len(name):].rpartition(" ")
            samples[labels] = float(value)
    return samples


def session_counter(stack, name, session_id):
    return metric_samples(stack, name).get(f'{{session="{session_id}"}}')


def until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {timeout}s")
        time.sleep(0.05)


def published_until_streamed(device, topic, payload, stream, timeout=5):
    """Publishes `payload` on `topic` until the stream carries it (the link subscribes
    after the stream opened, so the first may come too early); returns the event."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        device.publish(topic, payload)
        seen = [data for event, data in stream.events.snapshot()
                if event == "message" and data["topic"] == topic]
        if seen:
            return seen[0]
        time.sleep(0.1)
    pytest.fail(f"{topic} never reached the stream: {stream.events.snapshot()}")


def test_a_publish_is_logged_without_its_payload_and_counted(monitor_stack, opened):
    session = monitor_stack.create_session()
    sid, root = session["id"], session["topic_root"]
    lamp = opened(monitor_stack, session, "lamp")
    lamp.publish(f"{root}lamp/state", SECRET)
    lamp._client.publish(f"{root}lamp/level", "42", qos=1).wait_for_publish(5)

    [line] = monitor_lines(monitor_stack, f"{root}lamp/state")
    assert line["session_id"] == sid
    assert line["size"] == len(SECRET)
    assert line["qos"] == 0 and line["retain"] is False
    assert "payload" not in line
    [level] = monitor_lines(monitor_stack, f"{root}lamp/level")
    assert level["qos"] == 1 and level["size"] == 2
    with open(os.path.join(monitor_stack["logs_dir"], "session-manager.log"),
              encoding="utf-8") as log:
        assert SECRET not in log.read(), "a payload was logged"

    # Every message of the session's tree counts, the broker's presence of the lamp too
    # (which the plugin publishes in its next batch, maybe after the lamp's own messages).
    monitor_lines(monitor_stack, f"{root}$presence/lamp")
    logged = session_lines(monitor_stack, sid)
    until(lambda: session_counter(monitor_stack, "ism_monitor_session_messages_total", sid)
          == len(session_lines(monitor_stack, sid)), 5, "the session's message counter")
    assert session_counter(monitor_stack, "ism_monitor_session_bytes_total", sid) == sum(
        line["size"] for line in session_lines(monitor_stack, sid))
    assert metric_samples(monitor_stack, "ism_monitor_messages_total")[""] >= len(logged)

    # A closed session's counters are forgotten.
    assert monitor_stack.admin("DELETE", f"/api/v1/sessions/{sid}").status_code == 204
    until(lambda: session_counter(monitor_stack, "ism_monitor_session_messages_total", sid)
          is None, 5, "forgetting the closed session's counters")


def test_payloads_are_logged_when_enabled(payload_stack, opened):
    session = payload_stack.create_session()
    root = session["topic_root"]
    lamp = opened(payload_stack, session, "lamp")
    lamp.publish(f"{root}lamp/state", SECRET)
    lamp._client.publish(f"{root}lamp/raw", bytes([0xff, 0x00, 0x01]), qos=0).wait_for_publish(5)
    [line] = monitor_lines(payload_stack, f"{root}lamp/state")
    assert line["payload"] == SECRET and line["encoding"] == "utf8"
    [raw] = monitor_lines(payload_stack, f"{root}lamp/raw")
    assert raw["payload"] == "/wAB" and raw["encoding"] == "base64" and raw["size"] == 3


@pytest.mark.parametrize("which", ["monitor_stack", "quiet_stack"])
def test_a_reader_gets_its_sessions_messages_and_no_others(which, request, opened):
    stack = request.getfixturevalue(which)
    a, b = stack.create_session(), stack.create_session()
    in_a, in_b = opened(stack, a, "lamp"), opened(stack, b, "lamp")
    stream = message_stream(stack, a["id"])
    try:
        first = published_until_streamed(in_a, f"{a['topic_root']}lamp/state", "on", stream)
        assert first["session_id"] == a["id"]
        assert first["payload"] == "on" and first["encoding"] == "utf8" and first["size"] == 2
        assert first["qos"] == 0 and first["retain"] is False
        assert first["time"] > 1_700_000_000_000
        in_b.publish(f"{b['topic_root']}lamp/state", "b-secret")
        in_a._client.publish(f"{a['topic_root']}lamp/bin", bytes([0xff, 0x00]), qos=1) \
            .wait_for_publish(5)
        binary = wait_for(stream.events, lambda e: e[0] == "message"
                          and e[1]["topic"] == f"{a['topic_root']}lamp/bin", 5, "binary message")
        assert binary[1]["payload"] == "/wA=" and binary[1]["encoding"] == "base64"
        assert binary[1]["qos"] == 1
        time.sleep(0.5)
        topics = {data["topic"] for event, data in stream.events.snapshot() if event == "message"}
        assert all(topic.startswith(a["topic_root"]) for topic in topics), topics
        assert not any(data.get("session_id") == b["id"]
                       for _, data in stream.events.snapshot()), "session B leaked"
    finally:
        stream.close()


def test_unknown_or_bad_sessions_are_refused(quiet_stack):
    unknown = quiet_stack.admin("GET", "/api/v1/sessions/999999999/messages")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    bad = quiet_stack.admin("GET", "/api/v1/sessions/not-a-session/messages")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_request"
    anonymous = requests.get(quiet_stack["admin_url"] + "/api/v1/sessions/1/messages", timeout=5)
    assert anonymous.status_code == 401
    closed = quiet_stack.create_session()
    assert quiet_stack.admin("DELETE", f"/api/v1/sessions/{closed['id']}").status_code == 204
    assert quiet_stack.admin("GET", f"/api/v1/sessions/{closed['id']}/messages").status_code == 404


def test_without_the_monitor_a_session_is_subscribed_only_while_read(quiet_stack, opened):
    session = quiet_stack.create_session()
    sid, root = session["id"], session["topic_root"]
    lamp = opened(quiet_stack, session, "lamp")

    def subscriptions():
        return metric_samples(quiet_stack, "ism_monitor_subscriptions").get("", 0)

    assert subscriptions() == 0
    lamp.publish(f"{root}before", "nobody reads")
    first, second = message_stream(quiet_stack, sid), message_stream(quiet_stack, sid)
    until(lambda: subscriptions() == 1, 5, "the link's subscription")
    published_until_streamed(lamp, f"{root}read", "1", first)
    wait_for(second.events, lambda e: e[0] == "message" and e[1]["topic"] == f"{root}read",
             5, "the second reader's copy")
    first.close()
    time.sleep(0.5)
    assert subscriptions() == 1, "one reader is left"
    second.close()
    # The stream's end is seen at the next write (a message or the keep-alive).
    until(lambda: (lamp.publish(f"{root}after", "x"), subscriptions())[1] == 0, 20,
          "the unsubscription after the last reader left")
    # Nothing is logged with the monitor off.
    with open(os.path.join(quiet_stack["logs_dir"], "session-manager.log"),
              encoding="utf-8") as log:
        assert '"mqtt message"' not in log.read()

    # A closed session ends its streams.
    stream = message_stream(quiet_stack, sid)
    until(lambda: subscriptions() == 1, 5, "the subscription of a new reader")
    assert quiet_stack.admin("DELETE", f"/api/v1/sessions/{sid}").status_code == 204
    until(lambda: subscriptions() == 0, 5, "the unsubscription after the close")
    stream.close()


def test_a_reader_that_never_reads_holds_up_no_kick_close_or_presence(monitor_stack, opened):
    noisy = monitor_stack.create_session()
    flooder = opened(monitor_stack, noisy, "flooder")
    stalled = requests.get(
        monitor_stack["admin_url"] + f"/api/v1/sessions/{noisy['id']}/messages", stream=True,
        timeout=60, headers={"authorization": f"Bearer {monitor_stack['admin_api_key']}"})
    assert stalled.status_code == 200
    # Far more than the socket buffers and the reader's own buffer hold.
    chunk = "x" * 4096

    def flood():
        for n in range(4000):
            flooder.publish(f"{noisy['topic_root']}flood/{n % 8}", chunk)

    flooding = threading.Thread(target=flood)
    flooding.start()
    try:
        time.sleep(0.5)
        other = monitor_stack.create_session()
        sid = other["id"]
        victim = opened(monitor_stack, other, "victim")
        wait_presence(monitor_stack, sid, "victim", online=True)
        kicked_at = time.monotonic()
        assert monitor_stack.admin("DELETE",
                                   f"/api/v1/sessions/{sid}/clients/victim").status_code == 204
        until(lambda: victim.disconnected_at is not None, WITHIN_SECS, "the kick")
        assert victim.disconnected_at - kicked_at < WITHIN_SECS
        closing = monitor_stack.create_session()
        door = opened(monitor_stack, closing, "door")
        wait_presence(monitor_stack, closing["id"], "door", online=True)
        closed_at = time.monotonic()
        assert monitor_stack.admin("DELETE", f"/api/v1/sessions/{closing['id']}").status_code == 204
        until(lambda: door.disconnected_at is not None, WITHIN_SECS, "the close")
        assert door.disconnected_at - closed_at < WITHIN_SECS
    finally:
        flooding.join()

    # Reading again, the stalled reader learns what it lost.
    lagged = None
    for line in stalled.iter_lines(decode_unicode=True):
        if line == "event: lagged":
            lagged = line
            break
    stalled.close()
    assert lagged, "the slow reader was never told it lost messages"
    assert metric_samples(monitor_stack, "ism_monitor_stream_lagged_total")[""] > 0


def test_a_reader_keeps_reading_after_the_broker_restarts(quiet_stack, opened):
    session = quiet_stack.create_session()
    root = session["topic_root"]
    stream = message_stream(quiet_stack, session["id"])
    try:
        published_until_streamed(opened(quiet_stack, session, "before"), f"{root}before", "1",
                                 stream)
        # The link's new connection starts clean: it must subscribe to the session again.
        quiet_stack.restart("mosquitto")
        quiet_stack.wait_broker_link()
        after = opened(quiet_stack, session, "after")
        published_until_streamed(after, f"{root}after", "2", stream, timeout=10)
    finally:
        stream.close()
