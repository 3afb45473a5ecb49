"""ALPN dispatch seen by clients that are not ours: Python's ssl over TCP and
aioquic over QUIC (docs/protocol.md §2 rule 2, §16 item 1)."""

import asyncio
import socket
import ssl

import pytest
from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated

from conftest import Recorder

NO_APPLICATION_PROTOCOL = 120


def tls_client(port: int, alpns: list[str]) -> ssl.SSLSocket:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(alpns)
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return context.wrap_socket(raw, server_hostname="localhost")


def tls_echo(port: int, payload: bytes) -> bytes:
    with tls_client(port, ["alknet/echo"]) as sock:
        assert sock.selected_alpn_protocol() == "alknet/echo"
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            assert chunk, "connection closed before the echo arrived"
            received += chunk
        return received


def test_tcp_unknown_alpn_gets_alert_no_application_protocol(echo_node):
    with pytest.raises(ssl.SSLError) as failure:
        tls_client(echo_node.port, ["nope/1"])
    # OpenSSL names the alert it received (number 120).
    message = str(failure.value).lower().replace("_", " ")
    assert "alert no application protocol" in message, failure.value
    # The node keeps serving.
    assert tls_echo(echo_node.port, b"still serving") == b"still serving"


def quic_config(alpns: list[str]) -> QuicConfiguration:
    config = QuicConfiguration(is_client=True, alpn_protocols=alpns)
    config.verify_mode = ssl.CERT_NONE
    config.server_name = "localhost"
    return config


async def quic_refused(port: int) -> ConnectionTerminated:
    holder = {}

    def factory(*args, **kwargs):
        holder["protocol"] = Recorder(*args, **kwargs)
        return holder["protocol"]

    with pytest.raises(ConnectionError):
        async with connect(
            "127.0.0.1", port, configuration=quic_config(["nope/1"]), create_protocol=factory
        ):
            pass
    return await asyncio.wait_for(holder["protocol"].terminated, 5)


async def quic_echo(port: int, payload: bytes) -> bytes:
    async with connect("127.0.0.1", port, configuration=quic_config(["alknet/echo"])) as client:
        reader, writer = await client.create_stream()
        writer.write(payload)
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), 5)


def test_quic_unknown_alpn_closes_with_crypto_error_0x0178(echo_node):
    terminated = asyncio.run(quic_refused(echo_node.port))
    assert terminated.error_code == 0x0100 + NO_APPLICATION_PROTOCOL
    # The node keeps serving, over QUIC and TCP on the same port number.
    assert asyncio.run(quic_echo(echo_node.port, b"quic still serving")) == b"quic still serving"
    assert tls_echo(echo_node.port, b"tcp too") == b"tcp too"


def test_tcp_without_alpn_is_served_http_1_1(echo_node):
    """§2 rule 4 and §16 item 2: no ALPN extension at all means HTTP/1.1."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", echo_node.port), timeout=5)
    with context.wrap_socket(raw, server_hostname="localhost") as sock:
        assert sock.selected_alpn_protocol() is None
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert body == b"ok"
