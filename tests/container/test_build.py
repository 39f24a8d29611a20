"""TEMP: build only."""
from conftest import LOOPBACK_BINDS
from doc_blocks import doc_block


def test_build(compose):
    compose.shell(doc_block("docs/DEPLOYMENT.md", "quickstart-env"))
    compose.set_env(**LOOPBACK_BINDS)
    compose.shell(doc_block("docs/DEPLOYMENT.md", "quickstart-up"), timeout=3000)
    compose.wait_healthy()
