"""DEPLOYMENT_MODE=prod over the native stack: HTTPS with the dev CA, HTTP redirects to
HTTPS, security headers, and joining plus MQTT over secure WebSocket through nginx."""

import requests


def test_plain_http_redirects_to_https_keeping_the_path(prod_stack):
    response = requests.get(prod_stack["http_url"] + "/api/v1/anything?x=1",
                            allow_redirects=False, timeout=10)
    assert response.status_code == 301
    assert response.headers["Location"] == prod_stack["public_url"] + "/api/v1/anything?x=1"


def test_https_serves_the_page_with_hsts(prod_stack):
    page = prod_stack.public("GET", "/")
    assert page.status_code == 200
    assert "max-age=" in page.headers["Strict-Transport-Security"]
    assert page.headers["X-Frame-Options"] == "DENY"


def test_join_over_https_and_mqtt_over_secure_websocket(prod_stack, devices):
    session = prod_stack.create_session()
    grant = prod_stack.join(session, "secure-1")
    peer = prod_stack.join(session, "secure-2")
    root = session["topic_root"]
    listener = devices(prod_stack, "wss", "secure-1", grant["token"])
    talker = devices(prod_stack, "tls", "secure-2", peer["token"])
    assert listener.wait_connected() and talker.wait_connected()
    assert listener.subscribe(f"{root}#")
    talker.publish(f"{root}hello", "over tls")
    assert listener.next_message() == (f"{root}hello", "over tls")


def test_admin_api_is_not_reachable_over_https_either(prod_stack):
    key = {"authorization": f"Bearer {prod_stack['admin_api_key']}"}
    assert prod_stack.public("POST", "/api/v1/sessions", json={}, headers=key).status_code \
        in (404, 405)
    assert prod_stack.public("GET", "/api/createSession", headers=key).status_code == 404
