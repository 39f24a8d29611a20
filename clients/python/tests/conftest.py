"""The client tests run against the real stack started by `scripts/dev-stack`."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from devstack import RunningStack, finish_stack  # noqa: E402  (the shared dev-stack harness)


@pytest.fixture(scope="session")
def stack():
    running = RunningStack("--auth-mode", "dev_jwt_auth", "--deployment-mode", "dev")
    yield running
    finish_stack(running)
