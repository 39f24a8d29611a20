"""MQTT_AUTH_MODE=dev_no_auth over the native stack: the broker runs without the plugin and
admits anonymous clients, yet `$SYS` stays unreadable."""

QUIET_SECS = 1.5


def test_anonymous_devices_talk_and_sys_stays_hidden(no_auth_stack, devices):
    session = no_auth_stack.create_session()
    grant = no_auth_stack.join(session, "plain-1")
    root = session["topic_root"]
    listener = devices(no_auth_stack, "ws", "plain-1", grant["token"])
    talker = devices(no_auth_stack, "tcp", None, None, client_id="anonymous-talker")
    assert listener.wait_connected() and talker.wait_connected()
    assert listener.subscribe(f"{root}#")
    talker.publish(f"{root}hello", "no auth")
    assert listener.next_message() == (f"{root}hello", "no auth")

    # Mosquitto publishes retained $SYS topics (version, ...) at start: a client allowed
    # to read them would get them at once.
    talker.subscribe("$SYS/#")
    assert talker.received(QUIET_SECS) == []


def test_jwks_is_empty_without_signing(no_auth_stack):
    response = no_auth_stack.public("GET", "/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.json()["keys"] == []
