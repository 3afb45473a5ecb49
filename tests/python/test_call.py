"""The call protocol seen by a client that is not ours: a few lines of Python
speaking docs/protocol.md §3.1 framing over the standard library's ssl."""

import json
import socket
import ssl
import struct

import pytest

from conftest import Node


@pytest.fixture
def call_node():
    node = Node("[diagnostics]\ncall_ops = true\n")
    yield node
    node.stop()


class RawCall:
    def __init__(self, port: int):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["alknet/call"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        assert self.sock.selected_alpn_protocol() == "alknet/call"

    def call(self, request_id: str, operation: str, payload_input) -> None:
        envelope = {
            "type": "call.requested",
            "id": request_id,
            "payload": {"operationId": operation, "input": payload_input},
        }
        body = json.dumps(envelope).encode()
        self.sock.sendall(struct.pack(">I", len(body)) + body)

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "connection closed mid-frame"
            data += chunk
        return data

    def next(self) -> dict:
        (length,) = struct.unpack(">I", self._exact(4))
        return json.loads(self._exact(length))

    def close(self):
        self.sock.close()


def test_services_list_and_not_found(call_node):
    client = RawCall(call_node.port)
    client.call("l1", "/services/list", {})
    reply = client.next()
    assert reply["type"] == "call.responded" and reply["id"] == "l1"
    names = [op["name"] for op in reply["payload"]["output"]["operations"]]
    assert names == sorted(names)
    assert {"services/list", "services/schema", "diag/echo", "diag/sleep"} <= set(names)
    client.call("n1", "/nope/missing", {})
    assert client.next() == {
        "type": "call.error",
        "id": "n1",
        "payload": {"code": "NOT_FOUND", "message": "operation not found: nope/missing", "retryable": False},
    }
    client.close()


def test_concurrent_requests_on_one_stream_are_answered_out_of_order(call_node):
    client = RawCall(call_node.port)
    client.call("slow", "/diag/sleep", {"ms": 300})
    client.call("fast", "/diag/echo", {"hello": "world"})
    first, second = client.next(), client.next()
    assert (first["id"], second["id"]) == ("fast", "slow")
    assert first["payload"] == {"output": {"hello": "world"}}
    assert second["payload"] == {"output": {"slept_ms": 300}}
    client.close()
