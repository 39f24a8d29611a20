"""The Python client against the real stack (scripts/dev-stack: service, Mosquitto with our
plugin, nginx): sessions are created through the admin client, devices join through the
public proxy and exchange messages over plain MQTT, TLS and WebSocket."""

import queue
import time
import uuid

import pytest

from iot_session import AdminClient, ApiError, SessionDevice, join


@pytest.fixture()
def admin(stack):
    return AdminClient(stack["admin_url"], api_key=stack["admin_api_key"])


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def brokers(stack):
    return {
        "tcp": f"mqtt://{stack['mqtt_host']}:{stack['mqtt_port']}",
        "tls": f"mqtts://{stack['mqtt_host']}:{stack['mqtt_tls_port']}",
        "websocket": stack["ws_url"],
    }


def test_admin_client_creates_lists_inspects_and_closes(admin):
    session = admin.create_session(type="client-test", ttl_secs=600, max_clients=3)
    assert session.pin and session.topic_root == f"/{session.id}/"
    assert session.expires_at == session.created_at + 600
    assert session.id in {s.id for s in admin.sessions(page_size=1)}
    assert all(s.pin is None for s in admin.sessions())
    admin.close_session(session.id)
    with pytest.raises(ApiError) as refused:
        admin.get_session(session.id)
    assert refused.value.status == 404


@pytest.mark.parametrize("transport", ["tcp", "tls", "websocket"])
def test_devices_of_a_session_talk_over_every_transport(stack, admin, transport):
    session = admin.create_session()
    broker = brokers(stack)[transport]
    sender = join(stack["public_url"], session.id, session.pin, unique("sender"))
    receiver = join(stack["public_url"], session.id, session.pin, unique("receiver"))
    assert admin.get_session(session.id).clients, "joins are recorded"
    with SessionDevice(receiver, broker, ca_file=stack["ca_file"]) as rx, \
            SessionDevice(sender, broker, ca_file=stack["ca_file"]) as tx:
        assert rx.subscribe("lamp/#")
        tx.publish("lamp/state", b"on")
        message = rx.receive(timeout=5)
        assert (message.topic, message.payload) == ("lamp/state", b"on")


def test_a_device_sees_its_sessions_presence_apart_from_its_messages(stack, admin):
    session = admin.create_session()
    broker = brokers(stack)["tcp"]
    watcher = join(stack["public_url"], session.id, session.pin, unique("watcher"))
    lamp = join(stack["public_url"], session.id, session.pin, unique("lamp"))
    with SessionDevice(watcher, broker) as watching:
        assert watching.subscribe("#")
        with SessionDevice(lamp, broker) as lamp_device:
            lamp_device.publish("state", b"on")
            message = watching.receive(timeout=5)
            assert (message.topic, message.payload) == ("state", b"on")
            deadline = time.monotonic() + 5
            while watching.presence.get(lamp.username, {}).get("online") is not True:
                assert time.monotonic() < deadline, watching.presence
                time.sleep(0.02)
        deadline = time.monotonic() + 5
        while watching.presence[lamp.username]["online"]:
            assert time.monotonic() < deadline, watching.presence
            time.sleep(0.02)
        assert watching.presence[lamp.username]["reason"] == "disconnected"
        assert watching.presence[watcher.username]["online"] is True


def test_sessions_are_isolated_and_escapes_are_refused(stack, admin):
    ours, theirs = admin.create_session(), admin.create_session()
    broker = brokers(stack)["tcp"]
    spy = join(stack["public_url"], ours.id, ours.pin, unique("spy"))
    other = join(stack["public_url"], theirs.id, theirs.pin, unique("other"))
    with SessionDevice(spy, broker) as spy_device, SessionDevice(other, broker) as other_device:
        assert spy_device.subscribe("#")
        # The wrapper roots topics in the session; a raw escape attempt must be refused.
        assert not spy_device.subscribe_absolute(f"/{theirs.id}/#")
        assert not spy_device.subscribe_absolute("#")
        other_device.publish("secret", b"not for you")
        with pytest.raises(queue.Empty):
            spy_device.receive(timeout=2)


def test_a_wrong_pin_is_an_api_error(stack, admin):
    session = admin.create_session()
    wrong = "0" * len(session.pin) if session.pin != "0" * len(session.pin) else "1" * len(session.pin)
    with pytest.raises(ApiError) as refused:
        join(stack["public_url"], session.id, wrong, unique("intruder"))
    assert refused.value.status == 401
    assert refused.value.code


def test_a_forged_token_is_refused_by_the_broker(stack, admin):
    session = admin.create_session()
    credentials = join(stack["public_url"], session.id, session.pin, unique("device"))
    credentials.token = credentials.token[:-4] + ("AAAA" if not credentials.token.endswith("AAAA") else "BBBB")
    with pytest.raises(ConnectionRefusedError):
        SessionDevice(credentials, brokers(stack)["tcp"]).connect()


def test_a_device_that_loses_its_connection_leaves_its_will_in_its_session(stack, admin):
    session = admin.create_session()
    broker = brokers(stack)["tcp"]
    lamp = join(stack["public_url"], session.id, session.pin, unique("lamp"))
    watcher = join(stack["public_url"], session.id, session.pin, unique("watcher"))
    with SessionDevice(watcher, broker) as watching:
        assert watching.subscribe("status/#")
        dying = SessionDevice(lamp, broker, will=("status/lamp", b"lost"))
        dying.connect()
        assert dying.connected.is_set()
        dying.drop()
        message = watching.receive(timeout=10)
        assert (message.topic, message.payload) == ("status/lamp", b"lost")
        assert watching.next_message(timeout=0.5) is None, "the will is sent once"
