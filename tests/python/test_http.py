"""The HTTP gateway's OpenAPI document against a live node, checked by
schemathesis with all its default checks (docs/protocol.md §13, §16 item 42)."""

import pathlib
import subprocess
import sys
import tempfile

import pytest

from conftest import Node


@pytest.fixture
def http_node():
    node = Node("")
    yield node
    node.stop()


def schemathesis(url: str, *extra: str) -> subprocess.CompletedProcess:
    binary = pathlib.Path(sys.executable).parent / "schemathesis"
    # schemathesis keeps a cache in its working directory: not in the clone.
    with tempfile.TemporaryDirectory() as scratch:
        return subprocess.run(
            [str(binary), "run", url, "--tls-verify", "false", *extra],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=scratch,
        )


def test_schemathesis_finds_nothing_with_and_without_a_token(http_node):
    assert http_node.admin_token, "serve printed the admin token it created"
    url = f"https://127.0.0.1:{http_node.port}/openapi.json"
    for extra in ([], ["-H", f"Authorization: Bearer {http_node.admin_token}"]):
        result = schemathesis(url, *extra)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        assert "No issues found" in result.stdout, result.stdout[-4000:]
