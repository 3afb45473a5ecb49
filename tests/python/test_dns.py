"""The authoritative DNS handler seen by dnspython and aioquic: the same zone
answered identically over DNS over QUIC (RFC 9250), DNS over TLS, DNS over
HTTPS (RFC 8484, GET and POST) and plain UDP and TCP; DoQ framing errors close
the connection with DOQ_PROTOCOL_ERROR; malformed DoH requests get HTTP errors."""

import asyncio
import re
import ssl
import struct
import subprocess
import urllib.error
import urllib.request

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated

from conftest import Node, Recorder, _binary

DOQ_PROTOCOL_ERROR = 0x2
TIMEOUT = 5

CONFIG = """\
[dns]
listen = "127.0.0.1:0"
response_rate_limit = 0
[[dns.zones]]
name = "example.net"
"""


class DnsNode:
    """A node serving example.net, with the plain UDP/TCP address from its banner."""

    def __init__(self):
        self.node = Node(CONFIG)
        self.port = self.node.port
        found = re.search(r"plain UDP and TCP on (\S+);", "".join(self.node.banner))
        assert found, f"no plain DNS address in the banner: {self.node.banner}"
        host, port = found.group(1).rsplit(":", 1)
        self.plain_host, self.plain_port = host, int(port)

    def cli(self, *args: str) -> str:
        target = ["--connect", f"127.0.0.1:{self.port}", "--insecure"]
        result = subprocess.run(
            [_binary(), "dns", *args, *target, "--token", self.node.admin_token],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"alknet dns {args}: {result.stdout}{result.stderr}"
        return result.stdout


@pytest.fixture(scope="module")
def dns_node():
    node = DnsNode()
    try:
        node.cli("set", "www.example.net", "A", "192.0.2.1", "192.0.2.2", "--ttl", "300")
        node.cli("set", "alias.example.net", "CNAME", "www.example.net.")
        node.cli("set", "example.net", "TXT", '"v=spf1 -all"')
        yield node
    finally:
        node.node.stop()


# The five transports (DoH twice: POST and GET), each a function of (node, query).
TRANSPORTS = {
    "quic": lambda n, q: dns.query.quic(q, "127.0.0.1", port=n.port, verify=False, timeout=TIMEOUT),
    "tls": lambda n, q: dns.query.tls(q, "127.0.0.1", port=n.port, verify=False, timeout=TIMEOUT),
    "https-post": lambda n, q: dns.query.https(
        q, f"https://127.0.0.1:{n.port}/dns-query", verify=False, timeout=TIMEOUT
    ),
    "https-get": lambda n, q: dns.query.https(
        q, f"https://127.0.0.1:{n.port}/dns-query", post=False, verify=False, timeout=TIMEOUT
    ),
    "udp": lambda n, q: dns.query.udp(q, n.plain_host, port=n.plain_port, timeout=TIMEOUT),
    "tcp": lambda n, q: dns.query.tcp(q, n.plain_host, port=n.plain_port, timeout=TIMEOUT),
}

QUESTIONS = [
    ("alias.example.net", "A"),
    ("nope.example.net", "A"),
    ("www.example.net", "AAAA"),
    ("example.net", "TXT"),
    ("example.org", "A"),
]


def ask(node: DnsNode, transport: str, name: str, rdtype: str) -> dns.message.Message:
    return TRANSPORTS[transport](node, dns.message.make_query(name, rdtype))


def sections(response: dns.message.Message) -> tuple:
    return (
        dns.rcode.to_text(response.rcode()),
        [rrset.to_text() for rrset in response.answer],
        [rrset.to_text() for rrset in response.authority],
    )


def assert_soa_only_in_authority(response: dns.message.Message):
    assert response.answer == []
    assert [(r.name.to_text(), r.rdtype) for r in response.authority] == [
        ("example.net.", dns.rdatatype.SOA)
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_zone_answers(dns_node, transport):
    alias = ask(dns_node, transport, "alias.example.net", "A")
    assert alias.rcode() == dns.rcode.NOERROR
    assert alias.flags & dns.flags.AA
    cname, a = alias.answer
    assert (cname.name.to_text(), cname.rdtype) == ("alias.example.net.", dns.rdatatype.CNAME)
    assert [rdata.target.to_text() for rdata in cname] == ["www.example.net."]
    assert (a.name.to_text(), a.rdtype, a.ttl) == ("www.example.net.", dns.rdatatype.A, 300)
    assert sorted(rdata.address for rdata in a) == ["192.0.2.1", "192.0.2.2"]

    nxdomain = ask(dns_node, transport, "nope.example.net", "A")
    assert nxdomain.rcode() == dns.rcode.NXDOMAIN
    assert nxdomain.flags & dns.flags.AA
    assert_soa_only_in_authority(nxdomain)

    nodata = ask(dns_node, transport, "www.example.net", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR
    assert nodata.flags & dns.flags.AA
    assert_soa_only_in_authority(nodata)

    txt = ask(dns_node, transport, "example.net", "TXT")
    assert txt.rcode() == dns.rcode.NOERROR
    assert [rdata.to_text() for rrset in txt.answer for rdata in rrset] == ['"v=spf1 -all"']

    refused = ask(dns_node, transport, "example.org", "A")
    assert refused.rcode() == dns.rcode.REFUSED
    assert refused.answer == []


def pkarr_questions(node: DnsNode) -> list:
    """The node's own pkarr name (from its banner), answered from the packet
    it signs: its dialing record, its address, NODATA and NXDOMAIN."""
    found = re.search(r"pkarr: name (\S+?)\.,", "".join(node.node.banner))
    assert found, f"no pkarr name in the banner: {node.node.banner}"
    z32 = found.group(1)
    return [(f"_alknet.{z32}", "TXT"), (z32, "A"), (z32, "AAAA"), (f"nothing.{z32}", "A")]


def test_all_transports_give_identical_answers(dns_node):
    pkarr = pkarr_questions(dns_node)
    dialing = ask(dns_node, "udp", *pkarr[0])
    assert dialing.rcode() == dns.rcode.NOERROR and len(dialing.answer) == 1, dialing
    assert ask(dns_node, "udp", *pkarr[3]).rcode() == dns.rcode.NXDOMAIN
    for name, rdtype in QUESTIONS + pkarr:
        seen = {t: sections(ask(dns_node, t, name, rdtype)) for t in TRANSPORTS}
        expected = seen["udp"]
        assert all(got == expected for got in seen.values()), (name, rdtype, seen)


# DoQ framing, checked with aioquic directly: dnspython always sends id 0.


def doq_config() -> QuicConfiguration:
    config = QuicConfiguration(is_client=True, alpn_protocols=["doq"])
    config.verify_mode = ssl.CERT_NONE
    config.server_name = "localhost"
    return config


def framed_query(name: str, rdtype: str, message_id: int) -> bytes:
    query = dns.message.make_query(name, rdtype)
    query.id = message_id
    wire = query.to_wire()
    return struct.pack("!H", len(wire)) + wire


async def doq_exchange(port: int, payload: bytes) -> tuple[bytes, ConnectionTerminated | None]:
    """Sends `payload` on one stream with FIN; returns what came back on the
    stream, and how the server closed the connection if it did."""
    async with connect(
        "127.0.0.1", port, configuration=doq_config(), create_protocol=Recorder
    ) as client:
        reader, writer = await client.create_stream()
        writer.write(payload)
        writer.write_eof()
        received = await asyncio.wait_for(reader.read(), TIMEOUT)
        if not received:
            return received, await asyncio.wait_for(client.terminated, TIMEOUT)
        return received, None


def test_raw_doq_query_gets_length_prefixed_answer_with_id_0(dns_node):
    query = framed_query("www.example.net", "A", 0)
    received, terminated = asyncio.run(doq_exchange(dns_node.port, query))
    assert terminated is None
    (length,) = struct.unpack("!H", received[:2])
    assert length == len(received) - 2
    response = dns.message.from_wire(received[2:])
    assert response.id == 0
    assert response.rcode() == dns.rcode.NOERROR
    assert sorted(rdata.address for rdata in response.answer[0]) == ["192.0.2.1", "192.0.2.2"]


def test_doq_nonzero_message_id_closes_with_protocol_error(dns_node):
    query = framed_query("www.example.net", "A", 0x1234)
    received, terminated = asyncio.run(doq_exchange(dns_node.port, query))
    assert received == b""
    assert terminated is not None
    # An application close (CONNECTION_CLOSE 0x1d carries no frame type).
    assert terminated.frame_type is None, terminated
    assert terminated.error_code == DOQ_PROTOCOL_ERROR, terminated
    # The node keeps serving DoQ.
    assert ask(dns_node, "quic", "www.example.net", "A").rcode() == dns.rcode.NOERROR


# DoH request errors, over HTTP/1.1 with Python's urllib.


def doh_status(request: urllib.request.Request) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, context=context, timeout=TIMEOUT) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_doh_post_with_wrong_content_type_is_415(dns_node):
    wire = dns.message.make_query("www.example.net", "A").to_wire()
    url = f"https://127.0.0.1:{dns_node.port}/dns-query"
    headers = {"Content-Type": "application/dns-message"}
    right = urllib.request.Request(url, data=wire, headers=headers)
    assert doh_status(right) == 200
    wrong = urllib.request.Request(url, data=wire, headers={"Content-Type": "text/plain"})
    assert doh_status(wrong) == 415


def test_doh_get_without_dns_parameter_is_400(dns_node):
    url = f"https://127.0.0.1:{dns_node.port}/dns-query"
    assert doh_status(urllib.request.Request(url)) == 400
    assert doh_status(urllib.request.Request(url + "?other=1")) == 400
