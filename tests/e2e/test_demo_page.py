"""The browser demo served by nginx at `/`, driven in headless Chromium: it joins a
session through `/api/`, connects over MQTT-over-WebSocket at `/mqtt` with its own small
MQTT client, and exchanges messages with a native MQTT device of the same session.

Needs Debian's chromium (`apt-get install chromium`) and the Python `playwright` package
(it drives that Chromium; no browser download); scripts/test installs both.
"""

import os
import shutil

import pytest
from playwright.sync_api import expect

from conftest import unique_name

CHROMIUM_ARGS = [
    # The test machine has no network beyond loopback and runs as root.
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_path():
    path = os.environ.get("ISM_TEST_CHROMIUM") or shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is missing: apt-get install chromium (scripts/test installs it)")
    return path


@pytest.fixture()
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_the_demo_page_joins_and_chats_with_a_device(stack, devices, page):
    session = stack.create_session("demo")
    root = session["topic_root"]
    native = stack.join(session, unique_name("native"))
    device = devices(stack, "tcp", native["username"], native["token"])
    assert device.wait_connected()
    assert device.subscribe(f"{root}#")

    page.goto(stack["public_url"] + "/")
    page.fill("#join input[name=id]", session["id"])
    page.fill("#join input[name=pin]", session["pin"])
    page.fill("#join input[name=client]", unique_name("browser"))
    page.click("#join button")
    log = page.locator("#log")
    expect(log).to_contain_text("connected; subscribed", timeout=10_000)

    # Native device → browser.
    device.publish(f"{root}chat", "hello from a device")
    expect(log).to_contain_text(f"{root}chat: hello from a device", timeout=10_000)

    # Browser → native device.
    page.fill("#send input[name=message]", "hello from the browser")
    page.click("#send button")
    received = [m for m in device.received(3.0) if m[1] == "hello from the browser"]
    assert received == [(f"{root}chat", "hello from the browser")]


def test_the_demo_page_shows_a_refused_join(stack, page):
    session = stack.create_session("demo")
    wrong_pin = "1" * len(session["pin"]) if session["pin"] != "1" * len(session["pin"]) else "2" * len(session["pin"])
    page.goto(stack["public_url"] + "/")
    page.fill("#join input[name=id]", session["id"])
    page.fill("#join input[name=pin]", wrong_pin)
    page.fill("#join input[name=client]", unique_name("browser"))
    page.click("#join button")
    expect(page.locator("#log")).to_contain_text("join refused", timeout=10_000)
    expect(page.locator("#send")).to_be_hidden()
