"""Commands the container tests take from the docs unchanged: a fenced block right after a
`<!-- container-test: NAME -->` comment in a Markdown file is the snippet NAME. The docs
stay free prose; the marked commands are what the tests run, so they cannot rot.
"""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARKED_BLOCK = re.compile(r"<!-- container-test: ([a-z0-9-]+) -->\s*\n```[a-z]*\n(.*?)\n```",
                          re.DOTALL)


def doc_blocks(relative_path):
    """{name: snippet} of every marked block in the Markdown file."""
    with open(os.path.join(ROOT, relative_path)) as doc:
        text = doc.read()
    return {name: body for name, body in MARKED_BLOCK.findall(text)}


def doc_block(relative_path, name):
    blocks = doc_blocks(relative_path)
    if name not in blocks:
        pytest.fail(f"{relative_path} has no block marked <!-- container-test: {name} -->; "
                    f"marked: {sorted(blocks)}")
    return blocks[name]
