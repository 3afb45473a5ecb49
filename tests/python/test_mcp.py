"""`/mcp` of a live `alknet serve` through the official Python MCP SDK
(docs/protocol.md §14.1): the handshake, exactly four tools, results, and the
bearer token deciding what `search` shows."""

import anyio
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import Node


@pytest.fixture
def mcp_node():
    node = Node("")
    yield node
    node.stop()


async def _session_run(url: str, token: str | None, body):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(verify=False, headers=headers, timeout=30) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                return await body(session, init)


def run(url: str, token: str | None, body):
    return anyio.run(_session_run, url, token, body)


def dumped(result) -> dict:
    return result.model_dump(by_alias=True, exclude_none=True)


def test_four_tools_and_results(mcp_node):
    url = f"https://127.0.0.1:{mcp_node.port}/mcp"

    async def body(session, init):
        assert dumped(init)["serverInfo"]["name"] == "alknet-to-mcp"
        tools = (await session.list_tools()).tools
        names = [tool.name for tool in tools]
        called = dumped(await session.call_tool("call", {"operation": "services/schema", "input": {"name": "services/list"}}))
        missing = dumped(await session.call_tool("call", {"operation": "nope/missing"}))
        batch = dumped(await session.call_tool("batch", {"calls": [{"operation": "services/list"}, {"operation": "nope/missing"}]}))
        return names, called, missing, batch

    names, called, missing, batch = run(url, mcp_node.admin_token, body)
    assert names == ["search", "schema", "call", "batch"]
    assert called["isError"] is False
    assert called["structuredContent"]["name"] == "services/list"
    assert missing["isError"] is True
    assert missing["structuredContent"] == {
        "code": "NOT_FOUND",
        "message": "operation not found: nope/missing",
        "retryable": False,
    }
    assert missing["content"][0]["text"] == "NOT_FOUND: operation not found: nope/missing"
    results = batch["structuredContent"]["results"]
    assert [r["isError"] for r in results] == [False, True]


def test_search_follows_the_token(mcp_node):
    url = f"https://127.0.0.1:{mcp_node.port}/mcp"

    async def body(session, init):
        found = dumped(await session.call_tool("search", {}))
        return [op["name"] for op in found["structuredContent"]["operations"]]

    admin = run(url, mcp_node.admin_token, body)
    anonymous = run(url, None, body)
    assert "admin/tree" in admin
    assert "admin/tree" not in anonymous
    assert "services/list" in anonymous


def test_an_unresolvable_token_gets_401(mcp_node):
    response = httpx2.post(
        f"https://127.0.0.1:{mcp_node.port}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers={"Authorization": "Bearer alk_not_a_token", "Accept": "application/json, text/event-stream"},
        verify=False,
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
