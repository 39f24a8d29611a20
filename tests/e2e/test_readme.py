"""README.md's quick start, followed literally against a `scripts/dev-stack` of its own.

The blocks README marks with `<!-- tested: NAME -->` just before their fence are run
unchanged: the shell that turns dev-stack's JSON line (saved in `stack.json`, as README
says) into `ADMIN`, `PUBLIC`, `MQTT_HOST`, `MQTT_PORT` and `KEY`, then the quick start that
creates a session, joins it and talks MQTT, then the Python example. The only thing the
test provides is what README tells the reader to provide: the running dev-stack and its
`stack.json`. If a command of README breaks, these tests fail.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, RunningStack, finish_stack

README = os.path.join(ROOT, "README.md")
MARKER = re.compile(r"<!-- tested: ([a-z0-9-]+) -->\n```([a-z]*)\n(.*?)\n```", re.DOTALL)
STEP_TIMEOUT_SECS = 60


def readme_blocks():
    """{name: (language, code)} of README's marked blocks."""
    with open(README, encoding="utf-8") as file:
        text = file.read()
    blocks = {}
    for name, language, code in MARKER.findall(text):
        assert name not in blocks, f"README marks two blocks `tested: {name}`"
        blocks[name] = (language, code)
    return blocks


def block(name, language):
    blocks = readme_blocks()
    assert name in blocks, (f"README.md has no ```{language} block marked "
                            f"`<!-- tested: {name} -->` (found: {sorted(blocks)})")
    found_language, code = blocks[name]
    assert found_language == language, f"block {name} is ```{found_language}, not {language}"
    return code


@pytest.fixture(scope="module")
def readme_stack():
    """The dev-stack README starts: its command line is taken from README's table."""
    with open(README, encoding="utf-8") as file:
        text = file.read()
    match = re.search(r"`scripts/dev-stack \\\| tee stack\.json`", text)
    assert match, "README no longer says to start `scripts/dev-stack | tee stack.json`"
    running = RunningStack()
    yield running
    finish_stack(running)


@pytest.fixture
def reader_dir(tmp_path, readme_stack):
    """The reader's directory: `stack.json` holds the line dev-stack printed, as `tee` would
    have saved it."""
    with open(tmp_path / "stack.json", "w", encoding="utf-8") as file:
        file.write(json.dumps(readme_stack.info) + "\n")
    return tmp_path


def run_shell(script, cwd, env=None):
    """Runs README's commands in bash as a reader would type them, stopping at the first
    command that fails."""
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=STEP_TIMEOUT_SECS)
    assert result.returncode == 0, (
        f"README's commands failed with status {result.returncode}\n--- script ---\n{script}"
        f"\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}")
    return result.stdout


def reader_environment(cwd):
    """The variables README's dev-stack block sets, read back from a shell that ran it."""
    script = block("dev-stack-variables", "sh") + "\nenv -0"
    output = run_shell(script, cwd)
    env = dict(item.split("=", 1) for item in output.split("\0") if "=" in item)
    for name in ("ADMIN", "PUBLIC", "MQTT_HOST", "MQTT_PORT", "KEY"):
        assert env.get(name), f"README's dev-stack block leaves {name} unset"
    return env


def test_dev_stack_variables_point_at_the_running_stack(readme_stack, reader_dir):
    env = reader_environment(reader_dir)
    assert env["ADMIN"] == readme_stack["admin_url"]
    assert env["PUBLIC"] == readme_stack["public_url"]
    assert env["MQTT_HOST"] == readme_stack["mqtt_host"]
    assert env["MQTT_PORT"] == str(readme_stack["mqtt_port"])
    assert env["KEY"] == readme_stack["admin_api_key"]


def test_quickstart_creates_joins_and_talks_mqtt(readme_stack, reader_dir):
    script = block("dev-stack-variables", "sh") + "\n" + block("quickstart", "sh")
    output = run_shell(script, reader_dir, env=dict(os.environ))
    printed = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    sessions = [body for body in printed if "pin" in body]
    assert sessions, f"step 1 printed no session:\n{output}"
    session_id = sessions[0]["id"]
    assert {"client_id": f"{session_id}/lamp-1"}.items() <= printed[-1].items(), \
        f"step 2 printed no join:\n{output}"
    assert f"/{session_id}/light on" in output.splitlines(), \
        f"lamp-1 did not receive switch-1's message:\n{output}"
    # The session README created is real, and both devices joined it.
    clients = readme_stack.admin("GET", f"/api/v1/sessions/{session_id}").json()["clients"]
    assert {client["name"] for client in clients} >= {"lamp-1", "switch-1"}, clients


def test_python_example_receives_its_own_message(readme_stack, reader_dir):
    env = reader_environment(reader_dir)
    # What `pip install ./clients/python` provides, without installing into the test venv.
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.join(ROOT, "clients", "python"), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", block("python-example", "python")],
                            cwd=reader_dir, env=env, capture_output=True, text=True,
                            timeout=STEP_TIMEOUT_SECS)
    assert result.returncode == 0, f"README's Python example failed:\n{result.stderr}"
    assert result.stdout.strip() == "Message(topic='lamp/state', payload=b'on')", result.stdout


def test_readme_marks_every_block_this_file_runs():
    """A renamed or dropped marker is a failure here, not a silently shorter test."""
    assert {"dev-stack-variables", "quickstart", "python-example"} <= set(readme_blocks())
