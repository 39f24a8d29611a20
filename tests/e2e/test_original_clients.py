"""The original service's clients against our stack, each with at most one setting changed.

Each class below is a minimal re-implementation of what one original client puts on the wire
(same HTTP methods, paths, headers and bodies, same MQTT transport and client-id choice), not
its code:

- the Python admin client (`session_manager_client.py`): `GET /api/createSession?type=default`
  and `GET /api/closeSession?id=S` with `requests`, no key, no `Origin`;
- the Python device client (`iot_client.py`): `requests.post(auth_url, json=...)`, then paho
  over WebSocket over TLS to the host and port it is given (paho's default path `/mqtt`), the
  client name as client id and username, the token as password;
- the React Native client (`IotClient.ts`, Paho JS): `fetch` with `Content-Type:
  application/json` (and its `Accept: application.json`), then WebSocket over TLS like the
  Python client;
- the Unity client (`IotClient.cs`, M2Mqtt): `UnityWebRequest` with a JSON body, then MQTT
  over TCP or TLS with a random GUID as client id, QoS 2 both ways;
- Tornado's test client (the original's own server tests): the JSON body sent as
  `application/x-www-form-urlencoded`.

The compat stack is the production layout (`DEPLOYMENT_MODE=prod`, an admin key) with the two
documented compat settings: `ISM_ADMIN_COMPAT_WITHOUT_KEY=true` (the admin client sends no
key) and `BROKER_ALLOW_ANY_CLIENT_ID=true` (Unity's random client id). The one value a device
client changes is its broker port: nginx's HTTPS port, where `/mqtt` is MQTT over WebSocket
(the original served that on 8883, which here stays MQTT over TLS). Without the settings, the
default stack refuses the key-less admin client and Unity's random id, which the last tests
show.
"""

import json
import ssl
import time
import uuid
from urllib.parse import urlparse

import pytest
import requests

from conftest import RunningStack, finish_stack, unique_name
from iot_session import MqttConnection

QUIET_SECS = 1.0

COMPAT_SETTINGS = {"ISM_ADMIN_COMPAT_WITHOUT_KEY": "true", "BROKER_ALLOW_ANY_CLIENT_ID": "true"}


@pytest.fixture(scope="module")
def compat_stack():
    """The production layout with the two compat settings on."""
    running = RunningStack("--auth-mode", "dev_jwt_auth", "--deployment-mode", "prod",
                           env=COMPAT_SETTINGS)
    yield running
    finish_stack(running)


@pytest.fixture
def opened():
    """Closes the MQTT connections a test opens."""
    connections = []
    yield connections
    for connection in connections:
        connection.close()


def https_port(stack):
    """nginx's TLS port: 443 in the compose stack, a free port in the native one."""
    return urlparse(stack["public_url"]).port


# --- the original clients, re-implemented ---------------------------------------------------

class OriginalAdminClient:
    """The Python admin client: GETs with the query written into the URL, no key."""

    def __init__(self, server_url):
        self.server_url = server_url

    def create_session(self, session_type="default"):
        response = requests.get(f"{self.server_url}/api/createSession?type={session_type}",
                                timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def conductor_request(self, session_id, method, params=""):
        """`GET /api/conductorRequest?id=S&method=M&params=P`, as the original documents it
        (its admin client's own helper sends this query to closeSession by mistake)."""
        response = requests.get(f"{self.server_url}/api/conductorRequest?id={session_id}"
                                f"&method={method}&params={params}", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def close_session(self, session_id):
        response = requests.get(f"{self.server_url}/api/closeSession?id={session_id}",
                                timeout=10)
        assert response.status_code == 200, response.text
        return response.json()


def join_session(auth_url, session_id, pin, client, **request_options):
    """POSTs `{"id","pin","client"}` the way a client does (`request_options`: its `json=`
    or `data=` and headers) and returns the token."""
    body = {"id": session_id, "pin": pin, "client": client}
    if "data" in request_options:
        request_options["data"] = request_options["data"](body)
    else:
        request_options["json"] = body
    response = requests.post(auth_url, timeout=10, **request_options)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert list(answer) == ["token"], answer
    return answer["token"]


class OriginalPythonDevice:
    """The Python device client: `requests.post(json=...)`, then MQTT 3.1.1 over WebSocket
    over TLS to `broker_ip:broker_port` (paho's default path `/mqtt`), client id = username
    = the client name. The original trusts the system store; here the stack's CA."""

    join_options = {}  # `requests.post(json=...)` labels the body application/json itself

    def __init__(self, stack, auth_url, broker_ip, broker_port, client_name):
        self.stack = stack
        self.auth_url = auth_url
        self.broker = f"wss://{broker_ip}:{broker_port}"
        self.client_name = client_name
        self.session_id = None
        self.mqtt = None

    def join_session(self, session_id, pin):
        self.session_id = session_id
        token = join_session(self.auth_url, session_id, pin, self.client_name,
                             verify=self.stack["ca_file"], **self.join_options)
        self.mqtt = MqttConnection(self.broker, self.client_name, token, self.client_name,
                                   ca_file=self.stack["ca_file"])
        self.mqtt.start()
        return self.mqtt

    def topic_subscribe(self, topic):
        return self.mqtt.subscribe(f"/{self.session_id}/{topic}", qos=0)

    def publish(self, topic, payload):
        self.mqtt.publish(f"/{self.session_id}/{topic}", payload, qos=0)


class OriginalReactNativeDevice(OriginalPythonDevice):
    """The React Native client (Paho JS): `fetch` with JSON headers, then the same WebSocket
    over TLS (`useSSL`, path `/mqtt`) with the client name as client id; it subscribes to
    the whole session tree on connect."""

    join_options = {"headers": {"Accept": "application.json",
                                "Content-Type": "application/json"}}


class OriginalUnityDevice:
    """The Unity client (M2Mqtt): a JSON POST, then MQTT 3.1.1 over TCP (`mqtt://`) or TLS
    (`mqtts://`) with a fresh GUID as client id and the client name as username; QoS 2."""

    def __init__(self, stack, join_url, broker, client_name):
        self.stack = stack
        self.join_url = join_url
        self.broker = broker
        self.client_name = client_name
        self.client_id = str(uuid.uuid4())
        self.session_id = None
        self.mqtt = None

    def join_session(self, session_id, pin):
        self.session_id = session_id
        token = join_session(self.join_url, session_id, pin, self.client_name,
                             data=json_text, headers={"Content-Type": "application/json"},
                             verify=self.stack["ca_file"])
        self.mqtt = MqttConnection(self.broker, self.client_name, token, self.client_id,
                                   ca_file=self.stack["ca_file"])
        self.mqtt.start()
        return self.mqtt

    def subscribe_all_topics(self):
        return self.mqtt.subscribe(f"/{self.session_id}/#", qos=2)

    def publish(self, topic, payload):
        self.mqtt.publish(f"/{self.session_id}/{topic}", payload, qos=2)


def json_text(body):
    """`body` as compact JSON text (what `JsonUtility.ToJson` and `json.dumps` send)."""
    return json.dumps(body, separators=(",", ":"))


def next_text(mqtt, timeout=5):
    """The next message that is not a device's retained presence, as (topic, text)."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        message = mqtt.next_message(remaining)
        if message is None:
            return None
        if "/$presence/" not in message.topic:
            return (message.topic, message.payload.decode())
    return None


def connects(mqtt, timeout=5):
    """Whether `mqtt` gets accepted; a transport that fails outright counts as refused."""
    try:
        mqtt.start()
    except (OSError, ssl.SSLError):
        return False
    return mqtt.wait_connected(timeout)


# --- admin ----------------------------------------------------------------------------------

def test_the_python_admin_client_creates_and_closes_sessions_without_a_key(compat_stack):
    admin = OriginalAdminClient(compat_stack["admin_url"])
    session = admin.create_session()
    assert sorted(session) == ["clients", "id", "pin", "type"]
    assert session["type"] == "default" and session["clients"] == []
    assert admin.close_session(session["id"]) == "Success"
    assert admin.close_session(session["id"]) == "Error"


def test_conductor_requests_answer_as_the_original_did_without_a_key(compat_stack):
    admin = OriginalAdminClient(compat_stack["admin_url"])
    default = admin.create_session()["id"]
    assert [admin.conductor_request(default, m) for m in ("state", "start", "stop")] == \
        ["State", "Start", "Stop"]
    active = admin.create_session("active")["id"]
    answers = [admin.conductor_request(active, m)
               for m in ("state", "start", "state", "pause", "start", "stop", "state")]
    assert answers == ["Stopped", "Started", "Started", "Paused", "Started", "Stopped",
                       "Stopped"], answers
    assert admin.conductor_request(active, "dance", "fast") == \
        "Error: No handler function registered for method: dance"
    assert admin.conductor_request("999999999", "state") == "Could not locate session"
    assert admin.close_session(active) == "Success"
    assert admin.conductor_request(active, "state") == "Could not locate session"


def test_the_v1_admin_routes_still_need_the_key(compat_stack):
    url = compat_stack["admin_url"]
    assert requests.get(f"{url}/api/v1/sessions", timeout=10).status_code == 401
    assert requests.post(f"{url}/api/v1/sessions", json={}, timeout=10).status_code == 401
    assert compat_stack.admin("GET", "/api/v1/sessions").status_code == 200


def test_other_sites_cannot_use_the_keyless_compat_routes(compat_stack):
    url = compat_stack["admin_url"]
    victim = OriginalAdminClient(url).create_session()
    port = urlparse(url).port
    for path, headers in [
        (f"/api/closeSession?id={victim['id']}", {"Sec-Fetch-Site": "cross-site"}),
        (f"/api/closeSession?id={victim['id']}", {"Referer": "https://attacker.example/"}),
        ("/api/createSession?type=x", {"Origin": "https://attacker.example"}),
        ("/api/createSession?type=x", {"Host": f"attacker.example:{port}"}),
        (f"/api/conductorRequest?id={victim['id']}&method=stop", {"Origin": "null"}),
    ]:
        response = requests.get(url + path, headers=headers, timeout=10)
        assert response.status_code == 403, (path, headers, response.text)
        assert response.json()["error"]["code"] == "forbidden"
    still_live = compat_stack.admin("GET", f"/api/v1/sessions/{victim['id']}")
    assert still_live.status_code == 200


# --- devices --------------------------------------------------------------------------------

def test_every_original_client_in_one_session_from_create_to_close(compat_stack, opened):
    """The admin client creates a session; the Python and React Native clients (WebSocket
    over TLS through nginx's HTTPS port) and two Unity clients (random ids, TCP and TLS)
    join it and hear each other; the admin client's close disconnects them all."""
    admin = OriginalAdminClient(compat_stack["admin_url"])
    session = admin.create_session()
    sid, pin = session["id"], session["pin"]
    auth_url = compat_stack["public_url"] + "/api/joinSession"
    host = compat_stack["mqtt_host"]

    python = OriginalPythonDevice(compat_stack, auth_url, host, https_port(compat_stack),
                                  unique_name("py"))
    native = OriginalReactNativeDevice(compat_stack, auth_url, host, https_port(compat_stack),
                                       unique_name("rn"))
    unity_tcp = OriginalUnityDevice(
        compat_stack, auth_url, f"mqtt://{host}:{compat_stack['mqtt_port']}", "UnityTcp")
    unity_tls = OriginalUnityDevice(
        compat_stack, auth_url, f"mqtts://{host}:{compat_stack['mqtt_tls_port']}", "UnityTls")
    clients = (python, native, unity_tcp, unity_tls)
    for client in clients:
        opened.append(client.join_session(sid, pin))
    for client in clients:
        assert client.mqtt.wait_connected(), f"{client.client_name}: {client.mqtt.connect_result}"
    assert unity_tcp.client_id != unity_tls.client_id

    assert python.topic_subscribe("test_topic")
    assert native.mqtt.subscribe(f"/{sid}/#", qos=0)
    assert unity_tcp.subscribe_all_topics() and unity_tls.subscribe_all_topics()

    python.publish("test_topic", "test_payload")
    for client in clients:
        assert next_text(client.mqtt) == (f"/{sid}/test_topic", "test_payload"), \
            client.client_name
    unity_tls.publish("cube", "red")
    for client in (native, unity_tcp, unity_tls):
        assert next_text(client.mqtt) == (f"/{sid}/cube", "red"), client.client_name
    native.publish("button", "pressed")
    assert next_text(unity_tcp.mqtt) == (f"/{sid}/button", "pressed")

    compat_stack.wait_broker_link()
    sent = time.monotonic()
    assert admin.close_session(sid) == "Success"
    for client in clients:
        while client.mqtt.connected.is_set():
            assert time.monotonic() - sent < 1.0, f"{client.client_name} still connected"
            time.sleep(0.01)


def test_original_devices_stay_inside_their_session(compat_stack, opened):
    admin = OriginalAdminClient(compat_stack["admin_url"])
    mine, other = admin.create_session(), admin.create_session()
    auth_url = compat_stack["public_url"] + "/api/joinSession"
    host = compat_stack["mqtt_host"]
    unity = OriginalUnityDevice(
        compat_stack, auth_url, f"mqtts://{host}:{compat_stack['mqtt_tls_port']}", "Unity")
    opened.append(unity.join_session(mine["id"], mine["pin"]))
    neighbour = OriginalPythonDevice(compat_stack, auth_url, host, https_port(compat_stack),
                                     unique_name("py"))
    opened.append(neighbour.join_session(other["id"], other["pin"]))
    assert unity.mqtt.wait_connected() and neighbour.mqtt.wait_connected()

    assert not unity.mqtt.subscribe(f"/{other['id']}/#", qos=2)
    assert not unity.mqtt.subscribe("#", qos=2)
    assert neighbour.topic_subscribe("#")
    unity.mqtt.publish(f"/{other['id']}/intrusion", "x", qos=0)
    assert [m for m in neighbour.mqtt.received_within(QUIET_SECS)
            if "/$presence/" not in m.topic] == []

    # A random id is first-come between sessions: the neighbour's session cannot take it.
    thief_token = join_session(auth_url, other["id"], other["pin"], "thief",
                               verify=compat_stack["ca_file"])
    thief = MqttConnection(f"mqtts://{host}:{compat_stack['mqtt_tls_port']}", "thief",
                           thief_token, unity.client_id, ca_file=compat_stack["ca_file"])
    opened.append(thief)
    assert not connects(thief)
    assert unity.mqtt.connected.is_set()


def test_the_tornado_test_client_form_encoded_join(compat_stack):
    """Tornado's `fetch(method="POST", body=json.dumps(...))` labels the JSON body
    `application/x-www-form-urlencoded`; clients that set no label at all (or `text/plain`,
    as `fetch` does for a string body) are answered the same, through nginx and directly."""
    session = compat_stack.create_session()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for n, (base, headers) in enumerate([
        (compat_stack["public_url"], form),
        (compat_stack["service_public_url"], form),
        (compat_stack["public_url"], {}),
        (compat_stack["public_url"], {"Content-Type": "text/plain;charset=UTF-8"}),
    ]):
        token = join_session(base + "/api/joinSession", int(session["id"]), session["pin"],
                             f"testClient{n}", data=json_text, headers=headers,
                             verify=compat_stack["ca_file"])
        assert token.count(".") == 2

    malformed = requests.post(compat_stack["public_url"] + "/api/joinSession",
                              data="id=1&pin=2&client=x", headers=form,
                              verify=compat_stack["ca_file"], timeout=10)
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "invalid_request"
    assert "not valid JSON" in malformed.json()["error"]["message"]


def test_8883_stays_mqtt_over_tls_not_websocket(compat_stack, opened):
    """The original served MQTT over WebSocket over TLS on 8883; here that port speaks MQTT
    over TLS, so an original device client must be pointed at the HTTPS port instead."""
    session = compat_stack.create_session()
    auth_url = compat_stack["public_url"] + "/api/joinSession"
    host = compat_stack["mqtt_host"]
    stale = OriginalPythonDevice(compat_stack, auth_url, host, compat_stack["mqtt_tls_port"],
                                 unique_name("stale"))
    token = join_session(auth_url, session["id"], session["pin"], stale.client_name,
                         verify=compat_stack["ca_file"])
    stale.mqtt = MqttConnection(stale.broker, stale.client_name, token, stale.client_name,
                                ca_file=compat_stack["ca_file"])
    opened.append(stale.mqtt)
    assert not connects(stale.mqtt)


# --- what the two settings change ---------------------------------------------------------

def test_without_the_setting_the_keyless_admin_client_is_refused(prod_stack):
    url = prod_stack["admin_url"]
    for path in ("/api/createSession?type=default", "/api/closeSession?id=123456789",
                 "/api/conductorRequest?id=123456789&method=state"):
        response = requests.get(url + path, timeout=10)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "unauthorized"


def test_without_the_setting_unitys_random_client_id_is_refused(prod_stack, opened):
    session = prod_stack.create_session()
    auth_url = prod_stack["public_url"] + "/api/joinSession"
    host = prod_stack["mqtt_host"]
    unity = OriginalUnityDevice(prod_stack, auth_url,
                                f"mqtts://{host}:{prod_stack['mqtt_tls_port']}", "Unity")
    token = join_session(auth_url, session["id"], session["pin"], unity.client_name,
                         verify=prod_stack["ca_file"])
    refused = MqttConnection(unity.broker, unity.client_name, token, unity.client_id,
                             ca_file=prod_stack["ca_file"])
    opened.append(refused)
    assert not connects(refused)
    # The same token with the client name as id (what the other original clients send) works.
    named = MqttConnection(unity.broker, unity.client_name, token, unity.client_name,
                           ca_file=prod_stack["ca_file"])
    opened.append(named)
    assert connects(named)
