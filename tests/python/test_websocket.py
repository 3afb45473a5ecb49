"""The WebSocket session at /alknet/call (docs/protocol.md §12) with a client that
is not ours: the `websockets` library, against a real `alknet serve`."""

import asyncio
import base64
import json
import ssl
import time
import uuid

import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from conftest import Node


@pytest.fixture
def node():
    node = Node("[diagnostics]\ncall_ops = true\n")
    yield node
    node.stop()


def tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def url(node: Node) -> str:
    return f"wss://127.0.0.1:{node.port}/alknet/call"


def bearer_entry(token: str) -> str:
    return "alknet.bearer." + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


async def call(ws, operation: str, payload_input=None, id_=None) -> str:
    id_ = id_ or str(uuid.uuid4())
    envelope = {"type": "call.requested", "id": id_,
                "payload": {"operationId": operation, "input": payload_input or {}}}
    await ws.send(json.dumps(envelope).encode())
    return id_


async def receive(ws) -> dict:
    message = await asyncio.wait_for(ws.recv(), timeout=10)
    assert isinstance(message, bytes), "every message is binary"
    assert message[:1] == b"{", "every message starts with {"
    return json.loads(message)


async def round_trip(ws, operation: str, payload_input=None) -> dict:
    id_ = await call(ws, operation, payload_input)
    reply = await receive(ws)
    assert reply["id"] == id_, reply
    return reply


async def closed_with(ws) -> tuple[int, str]:
    with pytest.raises(ConnectionClosedError) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), timeout=10)
    return closed.value.rcvd.code, closed.value.rcvd.reason


def run(coroutine):
    return asyncio.run(coroutine)


def test_subprotocol_auth_selects_alknet_call(node):
    async def go():
        async with connect(url(node), ssl=tls(),
                           subprotocols=["alknet.call", bearer_entry(node.admin_token)]) as ws:
            assert ws.subprotocol == "alknet.call"
            reply = await round_trip(ws, "/services/list")
            names = [op["name"] for op in reply["payload"]["output"]["operations"]]
            assert "admin/tree" in names and "diag/echo" in names
            reply = await round_trip(ws, "/search")
            assert reply["payload"]["code"] == "NOT_FOUND"
    run(go())


def test_header_auth(node):
    async def go():
        async with connect(url(node), ssl=tls(),
                           additional_headers={"Authorization": f"Bearer {node.admin_token}"}) as ws:
            assert ws.subprotocol is None
            reply = await round_trip(ws, "admin/tree")
            assert reply["type"] == "call.responded", reply
            assert "ws-session" in json.dumps(reply["payload"]["output"])
    run(go())


def test_an_upgrade_without_a_token_is_401(node):
    async def go():
        for kwargs in ({}, {"additional_headers": {"Authorization": "Bearer nope"}},
                       {"subprotocols": ["alknet.call", bearer_entry("nope")]}):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url(node), ssl=tls(), **kwargs):
                    pass
            response = refused.value.response
            assert response.status_code == 401, kwargs
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert response.body == b"401 Unauthorized"
    run(go())


def test_a_text_message_closes_with_1002(node):
    async def go():
        async with connect(url(node), ssl=tls(),
                           subprotocols=["alknet.call", bearer_entry(node.admin_token)]) as ws:
            await ws.send('{"type":"call.requested","id":"t","payload":{"operationId":"diag/echo"}}')
            assert await closed_with(ws) == (1002, "text messages not supported")
    run(go())


def test_an_invalid_envelope_closes_with_1002(node):
    async def go():
        async with connect(url(node), ssl=tls(),
                           subprotocols=["alknet.call", bearer_entry(node.admin_token)]) as ws:
            await ws.send(b"{nope")
            assert await closed_with(ws) == (1002, "invalid EventEnvelope")
    run(go())


def test_a_17_mib_message_closes_with_1009(node):
    async def go():
        async with connect(url(node), ssl=tls(), max_size=None,
                           subprotocols=["alknet.call", bearer_entry(node.admin_token)]) as ws:
            try:
                await ws.send(b" " * (17 * 1024 * 1024))
            except ConnectionClosedError:
                pass  # closed while still sending: the code is still known
            assert await closed_with(ws) == (1009, "message too big")
    run(go())


def test_a_subscription_is_responded_events_then_completed(node):
    async def go():
        async with connect(url(node), ssl=tls(),
                           subprotocols=["alknet.call", bearer_entry(node.admin_token)]) as ws:
            id_ = await call(ws, "diag/count", {"n": 3})
            for i in range(3):
                event = await receive(ws)
                assert event == {"type": "call.responded", "id": id_, "payload": {"output": {"i": i}}}
            assert await receive(ws) == {"type": "call.completed", "id": id_, "payload": {}}
    run(go())


def test_an_abort_stops_a_subscription(node):
    async def go():
        async with connect(url(node), ssl=tls(),
                           subprotocols=["alknet.call", bearer_entry(node.admin_token)]) as ws:
            id_ = await call(ws, "diag/count", {"n": 100000, "interval_ms": 20})
            for _ in range(2):
                assert (await receive(ws))["id"] == id_
            await ws.send(json.dumps({"type": "call.aborted", "id": id_, "payload": {}}).encode())
            # The session handles envelopes in order: once the echo sent after
            # the abort is answered, the subscription has been dropped.
            echo_id = await call(ws, "diag/echo", {"after": "abort"})
            while (reply := await receive(ws))["id"] != echo_id:
                assert reply["id"] == id_ and reply["type"] == "call.responded"
            # Five intervals without another item, and never a completion.
            deadline = time.monotonic() + 0.1
            while (left := deadline - time.monotonic()) > 0:
                try:
                    late = await asyncio.wait_for(ws.recv(), timeout=left)
                except asyncio.TimeoutError:
                    break
                pytest.fail(f"something arrived after the abort: {late!r}")
    run(go())


def test_the_node_calls_an_operation_registered_on_the_socket(node):
    async def go():
        async with connect(url(node), ssl=tls(),
                           subprotocols=["alknet.call", bearer_entry(node.admin_token)]) as ws:
            reply = await round_trip(ws, "session/register",
                                     {"operations": [{"name": "ui/ping", "op_type": "query"}]})
            assert reply["payload"]["output"] == {"registered": ["ui/ping"]}
            id_ = await call(ws, "diag/callback", {"operation": "ui/ping", "input": {"n": 5}})
            request = await receive(ws)
            assert request["type"] == "call.requested"
            assert request["payload"]["operationId"] == "/ui/ping"
            await ws.send(json.dumps({"type": "call.responded", "id": request["id"],
                                      "payload": {"output": {"pong": request["payload"]["input"]["n"]}}}).encode())
            reply = await receive(ws)
            assert reply["id"] == id_ and reply["payload"]["output"] == {"pong": 5}
    run(go())
