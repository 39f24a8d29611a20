"""Fixtures of the container tests (run by `scripts/container-test`, which starts the private
engine): the compose project in the prepared build context, brought up once per
environment module and taken down (volumes included) afterwards.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compose import Compose, context_dir  # noqa: E402

# Host binds on loopback: the tests never expose the stack beyond this machine. Ports stay
# the documented ones.
LOOPBACK_BINDS = dict(HTTP_BIND="127.0.0.1", HTTPS_BIND="127.0.0.1", MQTT_BIND="127.0.0.1",
                      MQTT_TLS_BIND="127.0.0.1", MQTT_CERT_BIND="127.0.0.1",
                      ADMIN_BIND="127.0.0.1")


@pytest.fixture(scope="session")
def compose():
    project = Compose(context_dir())
    project.down()  # whatever an interrupted earlier run left
    yield project
    project.down()
