"""The isolation promise under attack and faults, end to end over the native stack
(service + Mosquitto with our plugin + nginx): no device of one session can take over,
disconnect or keep off the air a device of another session, and no restart order lets a
closed session's token in again."""

import time

from conftest import unique_name

QUIET_SECS = 1.0


def test_the_join_hands_out_a_session_scoped_client_id(stack, devices):
    session = stack.create_session()
    grant = stack.join(session, "lamp-1")
    assert grant["client_id"] == f"{session['id']}/lamp-1"
    assert grant["username"] == "lamp-1"
    device = devices(stack, "ws", "lamp-1", grant["token"], client_id=grant["client_id"])
    assert device.wait_connected(), f"scoped id refused: {device.connect_result}"


def test_another_sessions_device_cannot_take_over_a_bare_client_id(stack, devices):
    name = unique_name("lamp")
    session_a, session_b = stack.create_session(), stack.create_session()
    root_a = session_a["topic_root"]
    holder = devices(stack, "ws", name, stack.join(session_a, name)["token"],
                     will=(f"{root_a}wills/{name}", "gone"))
    watcher = devices(stack, "tcp", "watcher", stack.join(session_a, "watcher")["token"])
    assert holder.wait_connected() and watcher.wait_connected()
    assert watcher.subscribe(f"{root_a}#")

    attacker_token = stack.join(session_b, name)["token"]
    for attempt in range(3):
        for transport in ("tcp", "ws"):
            attacker = devices(stack, transport, name, attacker_token)
            assert not attacker.wait_connected(timeout=5), \
                f"attempt {attempt} over {transport}: a device of another session took the id"
            attacker.close()
    assert holder.connected.is_set() and holder.disconnected_at is None, \
        "the holder was disconnected by another session's device"
    holder.publish(f"{root_a}still-here", "yes")
    received = watcher.received(QUIET_SECS)
    assert (f"{root_a}still-here", "yes") in received
    assert not [m for m in received if "/wills/" in m[0]], "the holder's will was sent"


def test_another_session_cannot_claim_a_scoped_client_id(stack, devices):
    session_a, session_b = stack.create_session(), stack.create_session()
    holder_grant = stack.join(session_a, "cam")
    holder = devices(stack, "tcp", "cam", holder_grant["token"],
                     client_id=holder_grant["client_id"])
    assert holder.wait_connected()
    attacker = devices(stack, "ws", "cam", stack.join(session_b, "cam")["token"],
                       client_id=holder_grant["client_id"])
    assert not attacker.wait_connected(timeout=5)
    assert holder.connected.is_set() and holder.disconnected_at is None


def test_a_will_is_delivered_inside_the_session_when_a_device_drops(stack, devices):
    session = stack.create_session()
    root = session["topic_root"]
    watcher = devices(stack, "tcp", "watcher", stack.join(session, "watcher")["token"])
    dropping_grant = stack.join(session, "dropper")
    dropping = devices(stack, "tcp", "dropper", dropping_grant["token"],
                       client_id=dropping_grant["client_id"], will=(f"{root}wills/dropper", "lost"))
    assert watcher.wait_connected() and dropping.wait_connected()
    assert watcher.subscribe(f"{root}#")
    dropping.drop()
    deadline = time.monotonic() + 10
    while True:
        message = watcher.next_message(timeout=max(0.1, deadline - time.monotonic()))
        assert message is not None, "the will of a dropped device never arrived"
        if message == (f"{root}wills/dropper", "lost"):
            break


def _refused(stack, devices, name, token):
    device = devices(stack, "tcp", name, token)
    return not device.wait_connected(timeout=5)


def test_a_closed_session_stays_closed_whatever_restarts(restartable_stack, devices):
    stack = restartable_stack
    stack.wait_broker_link()
    closed = stack.create_session()
    grant = stack.join(closed, "old-device")
    connected = devices(stack, "tcp", "old-device", grant["token"])
    assert connected.wait_connected()
    assert stack.admin("DELETE", f"/api/v1/sessions/{closed['id']}").status_code in (200, 204)
    # The close reaches the broker over the control link, which disconnects the device in
    # the same step that starts refusing the session's tokens.
    deadline = time.monotonic() + 1.0
    while connected.connected.is_set():
        assert time.monotonic() < deadline, "the device was not disconnected within 1 s"
        time.sleep(0.01)
    assert _refused(stack, devices, "old-device", grant["token"]), "refused after the close"

    # The service is killed and comes back, then the broker restarts: the service must
    # republish the close from its journal.
    stack.restart("session-manager")
    stack.restart("mosquitto")
    stack.wait_broker_link()
    assert _refused(stack, devices, "old-device", grant["token"]), \
        "a closed session's token was admitted after service and broker restarts"

    # And once more: whichever side comes back first, the token stays out.
    stack.restart("mosquitto")
    assert _refused(stack, devices, "old-device", grant["token"]), \
        "a closed session's token was admitted by a restarted broker"

    # A session that was not closed keeps working through all of this.
    open_session = stack.create_session()
    fresh = stack.join(open_session, "new-device")
    device = devices(stack, "tcp", "new-device", fresh["token"], client_id=fresh["client_id"])
    assert device.wait_connected()
