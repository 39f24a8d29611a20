"""Conductors end to end over the native stack (the service, Mosquitto with our plugin and
nginx): the active conductor's retained heartbeat reaches its session's devices after
`start` and stops after `stop`; no device can forge the conductor's state; messages a
device sends to `/S/$conductor/in/...` reach the conductor; another session sees none of
it; and a started conductor runs again after the service is killed and restarted."""

import json
import time

import pytest

from devstack import RunningStack, finish_stack

TICK_SECS = 1


@pytest.fixture(scope="module")
def conductor_stack():
    """A stack of its own (a test restarts its service) with a one-second conductor tick."""
    running = RunningStack("--auth-mode", "dev_jwt_auth", "--deployment-mode", "dev",
                           env={"ISM_CONDUCTOR_TICK_SECS": str(TICK_SECS)})
    running.wait_broker_link()
    yield running
    finish_stack(running)



def conductor_request(stack, session, method):
    """The compat route's answer (a JSON string)."""
    response = stack.admin("GET", "/api/conductorRequest",
                           params={"id": session["id"], "method": method})
    assert response.status_code == 200, response.text
    return response.json()


def conductor_state(stack, session):
    response = stack.admin("GET", f"/api/v1/sessions/{session['id']}/conductor")
    assert response.status_code == 200, response.text
    return response.json()["state"]


def states(device, within):
    """The conductor states `device` receives within `within` seconds (an empty payload,
    a cleared state, as None)."""
    return [json.loads(text) if text else None
            for topic, text in device.received(within) if topic.endswith("/$conductor/state")]


def test_heartbeats_flow_after_start_and_stop_after_stop(conductor_stack, opened):
    session = conductor_stack.create_session("active")
    root = session["topic_root"]
    watcher = opened(conductor_stack, session, "watcher")
    assert watcher.subscribe(f"{root}$conductor/state")
    assert states(watcher, 1.5 * TICK_SECS) == [], "a stopped conductor beats"

    assert conductor_request(conductor_stack, session, "start") == "Started"
    beats = states(watcher, 3.5 * TICK_SECS)
    assert len(beats) >= 3, beats
    assert all(beat["status"] == "started" and beat["conductor"] == "active" for beat in beats)
    assert [beat["beats"] for beat in beats] == sorted(beat["beats"] for beat in beats)

    assert conductor_request(conductor_stack, session, "stop") == "Stopped"
    after = states(watcher, 3 * TICK_SECS)
    assert [state["status"] for state in after] == ["stopped"], after

    # The last state is retained: a device that subscribes later learns it at once.
    late = opened(conductor_stack, session, "late")
    assert late.subscribe(f"{root}$conductor/state")
    assert [state["status"] for state in states(late, 1)] == ["stopped"]


def test_no_device_can_write_the_conductors_state(conductor_stack, opened):
    session = conductor_stack.create_session("active")
    root = session["topic_root"]
    watcher = opened(conductor_stack, session, "watcher")
    attacker = opened(conductor_stack, session, "attacker")
    assert watcher.subscribe(f"{root}$conductor/#")

    forged = json.dumps({"conductor": "active", "status": "started", "beats": 999})
    attacker.publish(f"{root}$conductor/state", forged)
    attacker.publish(f"{root}$conductor/other", forged)
    attacker.publish(f"{root}$conductor", forged)
    seen = [message for message in watcher.received(2)
            if not message[0].startswith(f"{root}$conductor/in")]
    assert seen == [], f"a device wrote the conductor's topics: {seen}"
    # Nothing forged was retained either.
    late = opened(conductor_stack, session, "late")
    assert late.subscribe(f"{root}$conductor/#")
    assert late.received(1) == []


def test_device_messages_reach_the_conductor_and_other_sessions_see_nothing(
        conductor_stack, opened):
    session, other = (conductor_stack.create_session("active"),
                      conductor_stack.create_session("active"))
    root, other_root = session["topic_root"], other["topic_root"]
    sender = opened(conductor_stack, session, "sender")
    stranger = opened(conductor_stack, other, "stranger")
    assert stranger.subscribe(f"{other_root}#")
    assert not stranger.subscribe(f"{root}$conductor/state"), \
        "a device subscribed to another session's conductor"
    assert not stranger.subscribe("/+/$conductor/#")

    assert conductor_request(conductor_stack, session, "start") == "Started"
    assert sender.subscribe(f"{root}$conductor/state")
    for n in range(3):
        sender.publish(f"{root}$conductor/in/button", f"press {n}")
    deadline = time.monotonic() + 5
    while conductor_state(conductor_stack, session)["received"] < 3:
        assert time.monotonic() < deadline, conductor_state(conductor_stack, session)
        time.sleep(0.05)
    state = conductor_state(conductor_stack, session)
    assert state["received"] == 3 and state["last_topic"] == "button", state
    # The heartbeat carries it to the session's devices.
    beats = states(sender, 2.5 * TICK_SECS)
    assert beats and beats[-1]["received"] == 3, beats

    # The other session's conductor saw nothing, and its device saw nothing of the first
    # session's conductor (its own conductor was never started).
    assert conductor_state(conductor_stack, other)["received"] == 0
    assert [m for m in stranger.received(1) if "$presence/" not in m[0]] == []
    assert conductor_request(conductor_stack, session, "stop") == "Stopped"


def test_a_started_conductor_runs_again_after_the_service_is_killed(conductor_stack, opened):
    session = conductor_stack.create_session("active")
    idle = conductor_stack.create_session("active")
    root = session["topic_root"]
    watcher = opened(conductor_stack, session, "watcher")
    assert watcher.subscribe(f"{root}$conductor/state")
    assert conductor_request(conductor_stack, session, "start") == "Started"
    assert states(watcher, 1.5 * TICK_SECS), "no heartbeat before the restart"

    conductor_stack.restart("session-manager")
    restarted_at = time.time()
    conductor_stack.wait_broker_link()
    beats = states(watcher, 3.5 * TICK_SECS)
    fresh = [beat for beat in beats if beat["at"] >= int(restarted_at)]
    assert len(fresh) >= 2, f"no heartbeat after the restart: {beats}"
    assert all(beat["status"] == "started" for beat in fresh)
    assert conductor_request(conductor_stack, session, "state") == "Started"
    assert conductor_request(conductor_stack, idle, "state") == "Stopped"

    # Closing the session ends its conductor: no beat reaches anyone any more.
    assert conductor_stack.admin("DELETE", f"/api/v1/sessions/{session['id']}").status_code == 204
    assert conductor_request(conductor_stack, session, "state") == "Could not locate session"
