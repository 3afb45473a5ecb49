//! Authoritative DNS (issue #19) driven by stock clients: Knot's `kdig`
//! over QUIC, TLS, HTTPS, UDP and TCP and BIND's `dig` over UDP and TCP get
//! identical answers; zone changes made through `dns/*` are served at once
//! and survive `kill -9`; and the bounds — response-rate limiting over UDP,
//! DoQ's framing rules, DoT's idle timeout and bad messages — are attacked
//! on the real binary.

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use alknet_call::client::{CallClient, ClientOptions, Transport as CallTransport};
use alknet_e2e::client::{quic_connect, quic_endpoint, tls_connect};
use alknet_e2e::eventually_blocking;
use alknet_e2e::process::NodeProcess;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A node answering `example.net` on its port and on a plain UDP/TCP
/// address.
struct DnsNode {
    node: NodeProcess,
    runtime: tokio::runtime::Runtime,
    plain: SocketAddr,
    /// The first start's admin token (a restart prints none).
    admin: String,
}

impl DnsNode {
    fn start(extra: &str) -> Self {
        let node = NodeProcess::start(&format!(
            "[dns]\nlisten = \"127.0.0.1:0\"\n{extra}\n[[dns.zones]]\nname = \"example.net\"\n"
        ));
        let admin = node.admin_token();
        Self::attach(node, admin)
    }

    fn attach(node: NodeProcess, admin: String) -> Self {
        let plain = node
            .stdout
            .lock()
            .unwrap()
            .iter()
            .find_map(|line| {
                let rest = line.split("plain UDP and TCP on ").nth(1)?;
                rest.split(';').next()?.parse().ok()
            })
            .expect("the banner names the plain DNS address");
        Self {
            node,
            runtime: alknet_e2e::runtime(),
            plain,
            admin,
        }
    }

    fn client(&self, token: String) -> CallClient {
        let options = ClientOptions {
            transport: CallTransport::Quic,
            token: Some(token),
            ..ClientOptions::default()
        };
        self.runtime
            .block_on(CallClient::connect(self.node.addr, options))
            .expect("call session")
    }

    fn call(&self, operation: &str, input: Value) -> Result<Value, alknet_call::CallError> {
        let client = self.client(self.admin.clone());
        self.runtime.block_on(client.call(operation, input))
    }

    fn set(&self, name: &str, kind: &str, values: &[&str], ttl: u32) -> Value {
        self.call(
            "dns/set",
            json!({"name": name, "type": kind, "values": values, "ttl": ttl}),
        )
        .unwrap_or_else(|error| panic!("dns/set {name} {kind}: {error:?}"))
    }

    fn token(&self, id: &str, scopes: &str) -> String {
        alknet_e2e::process::create_token(self.node.data_dir.path(), id, scopes)
    }

    fn example_records(&self) {
        self.set("www.example.net", "A", &["192.0.2.1", "192.0.2.2"], 300);
        self.set("alias.example.net", "CNAME", &["www.example.net."], 600);
        self.set(
            "example.net",
            "TXT",
            &["\"v=spf1 -all\"", "\"two words\""],
            3600,
        );
        self.set("example.net", "MX", &["10 mail.example.net."], 3600);
    }
}

/// What a client printed, reduced to what must agree: the status and the
/// answer and authority records (whitespace normalised, owner names in
/// lower case — kdig lowers the name it asks, dig keeps it — sorted).
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: String,
    records: BTreeSet<String>,
}

fn seen(program: &str, args: &[String]) -> Seen {
    let out = Command::new(program)
        .args(args)
        .args(["+noall", "+answer", "+authority", "+comments", "+time=5"])
        .args(if program == "kdig" {
            ["+retry=0", "+header"]
        } else {
            ["+tries=1", "+comments"]
        })
        .output()
        .unwrap_or_else(|error| panic!("{program} runs: {error}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let status = text
        .lines()
        .find(|line| line.contains("->>HEADER<<-"))
        .and_then(|header| header.split("status: ").nth(1))
        .and_then(|rest| rest.split([',', ';']).next())
        .unwrap_or_else(|| panic!("{program} {args:?} printed no status: {text}"))
        .to_owned();
    let records = text
        .lines()
        .filter(|line| !line.starts_with(';') && !line.trim().is_empty())
        .map(|line| {
            let mut fields: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            fields[0] = fields[0].to_ascii_lowercase();
            fields.join(" ")
        })
        .collect();
    Seen { status, records }
}

#[test]
fn every_transport_and_stock_client_gives_the_same_answers() {
    let dns = DnsNode::start("");
    dns.example_records();
    let port = dns.node.addr.port().to_string();
    let plain = dns.plain.port().to_string();
    let routes: Vec<(&str, Vec<String>)> = vec![
        (
            "kdig +quic",
            vec!["-p".into(), port.clone(), "+quic".into()],
        ),
        ("kdig +tls", vec!["-p".into(), port.clone(), "+tls".into()]),
        (
            "kdig +https",
            vec!["-p".into(), port.clone(), "+https".into()],
        ),
        (
            "kdig udp",
            vec!["-p".into(), plain.clone(), "+notcp".into()],
        ),
        ("kdig +tcp", vec!["-p".into(), plain.clone(), "+tcp".into()]),
        ("dig udp", vec!["-p".into(), plain.clone(), "+notcp".into()]),
        ("dig +tcp", vec!["-p".into(), plain.clone(), "+tcp".into()]),
    ];
    // The node's own pkarr name, answered from the packet it signs (its
    // publisher stores it a moment after start).
    let z32 = dns
        .node
        .stdout
        .lock()
        .unwrap()
        .iter()
        .find_map(|line| {
            Some(
                line.strip_prefix("pkarr: name ")?
                    .split('.')
                    .next()?
                    .to_owned(),
            )
        })
        .expect("the banner names the node's pkarr name");
    let (alknet, apex, absent) = (
        format!("_alknet.{z32}"),
        z32.clone(),
        format!("nothing.{z32}"),
    );
    let signed = eventually_blocking(Duration::from_secs(10), || {
        let args: Vec<String> = ["-p", &plain, "@127.0.0.1", &alknet, "TXT"]
            .map(str::to_owned)
            .to_vec();
        seen("dig", &args).records.len() == 1
    });
    assert!(signed, "the node never answered its own pkarr name");
    let questions = [
        ("alias.example.net", "A", "NOERROR", 3),
        ("Example.NET", "TXT", "NOERROR", 2),
        ("nope.example.net", "A", "NXDOMAIN", 1),
        ("www.example.net", "AAAA", "NOERROR", 1),
        ("example.org", "A", "REFUSED", 0),
        (alknet.as_str(), "TXT", "NOERROR", 1),
        (apex.as_str(), "A", "NOERROR", 1),
        (apex.as_str(), "AAAA", "NOERROR", 0),
        (absent.as_str(), "A", "NXDOMAIN", 0),
    ];
    for (name, kind, status, records) in questions {
        let mut answers = Vec::new();
        for (route, args) in &routes {
            let program = route.split(' ').next().unwrap();
            let mut args = args.clone();
            args.extend(["@127.0.0.1".to_owned(), name.to_owned(), kind.to_owned()]);
            answers.push((route, seen(program, &args)));
        }
        let (first_route, first) = &answers[0];
        assert_eq!(first.status, status, "{name} {kind} over {first_route}");
        assert_eq!(first.records.len(), records, "{name} {kind}: {first:?}");
        for (route, answer) in &answers[1..] {
            assert_eq!(
                answer, first,
                "{name} {kind}: {route} differs from {first_route}"
            );
        }
    }
    // The answer spells the owner as the question did (0x20 clients check).
    let asked = Command::new("dig")
        .args([
            "-p",
            &plain,
            "@127.0.0.1",
            "Example.NET",
            "TXT",
            "+noall",
            "+answer",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&asked.stdout).contains("Example.NET."),
        "{asked:?}"
    );
}

/// One UDP query for `name`/`kind` with `id`, without EDNS.
fn query(name: &str, kind: RecordType, id: u16) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = id;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
    message.to_bytes().unwrap()
}

fn ask_udp(server: SocketAddr, name: &str, kind: RecordType) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.send_to(&query(name, kind, 7), server).unwrap();
    let mut buffer = [0u8; 4096];
    let (length, _) = socket.recv_from(&mut buffer).expect("an answer");
    Message::from_vec(&buffer[..length]).unwrap()
}

#[test]
fn changes_are_served_at_once_and_survive_kill_9() {
    let dns = DnsNode::start("");
    let before = dns.set("api.example.net", "AAAA", &["2001:db8::7"], 120)["serial"]
        .as_u64()
        .unwrap();
    let answer = ask_udp(dns.plain, "api.example.net.", RecordType::AAAA);
    assert_eq!(answer.answers.len(), 1);
    let deleted = dns
        .call(
            "dns/delete",
            json!({"name": "api.example.net", "type": "AAAA"}),
        )
        .unwrap();
    assert_eq!(deleted["deleted"], 1);
    assert!(deleted["serial"].as_u64().unwrap() > before);
    let gone = ask_udp(dns.plain, "api.example.net.", RecordType::AAAA);
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
    dns.set("kept.example.net", "A", &["198.51.100.9"], 60);

    // Acknowledged means on disk: a kill -9 right after loses nothing.
    let DnsNode {
        mut node, admin, ..
    } = dns;
    node.kill();
    let dns = DnsNode::attach(node.restart(), admin);
    let kept = ask_udp(dns.plain, "kept.example.net.", RecordType::A);
    assert_eq!(kept.answers.len(), 1);
    let listed = dns
        .call("dns/list", json!({"zone": "example.net"}))
        .unwrap();
    let records = listed["zones"][0]["records"].as_array().unwrap().clone();
    assert!(
        records
            .iter()
            .any(|r| r["name"] == "kept.example.net." && r["value"] == "198.51.100.9")
    );
    assert!(!records.iter().any(|r| r["name"] == "api.example.net."));
    let file = dns.node.data_dir.path().join("dns/zones/example.net.zone");
    let text = std::fs::read_to_string(file).unwrap();
    assert!(
        text.contains("kept.example.net. 60 IN A 198.51.100.9"),
        "{text}"
    );
}

#[test]
fn zone_operations_need_dns_scopes_and_refuse_bad_records() {
    let dns = DnsNode::start("");
    let reader = dns.client(dns.token("reader", "dns:read:example.net"));
    let writer = dns.client(dns.token("writer", "dns:write:*.net"));
    let outsider = dns.client(dns.token("outsider", "git:read:*"));
    let set = json!({"name": "w.example.net", "type": "A", "values": ["192.0.2.5"]});
    let refused = dns
        .runtime
        .block_on(reader.call("dns/set", set.clone()))
        .unwrap_err();
    assert!(
        refused.to_string().contains("dns:write:example.net"),
        "{refused}"
    );
    dns.runtime.block_on(writer.call("dns/set", set)).unwrap();
    let listed = dns
        .runtime
        .block_on(reader.call("dns/list", json!({})))
        .unwrap();
    assert_eq!(listed["zones"].as_array().unwrap().len(), 1);
    let hidden = dns
        .runtime
        .block_on(outsider.call("dns/list", json!({})))
        .unwrap();
    assert_eq!(hidden["zones"], json!([]));

    let refusals = [
        (
            json!({"name": "x.example.org", "type": "A", "values": ["192.0.2.1"]}),
            "not inside any zone",
        ),
        (
            json!({"name": "x.example.net", "type": "A", "values": ["not-an-address"]}),
            "A value",
        ),
        (
            json!({"name": "*.example.net", "type": "A", "values": ["192.0.2.1"]}),
            "wildcard",
        ),
        (
            json!({"name": "w.example.net", "type": "CNAME", "values": ["a.example.net."]}),
            "other records",
        ),
        (
            json!({"name": "x.example.net", "type": "NULL", "values": ["\\# 0"]}),
            "not served",
        ),
    ];
    for (input, expected) in refusals {
        let error = dns.call("dns/set", input.clone()).unwrap_err();
        assert!(error.to_string().contains(expected), "{input}: {error}");
    }
}

#[test]
fn a_udp_flood_from_one_network_is_rate_limited() {
    let dns = DnsNode::start("response_rate_limit = 20");
    dns.set("www.example.net", "A", &["192.0.2.1"], 300);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sent = 300;
    for id in 0..sent {
        socket
            .send_to(&query("www.example.net.", RecordType::A, id), dns.plain)
            .unwrap();
    }
    // Collect until the node has been silent for a second.
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let (mut full, mut truncated) = (0, 0);
    let mut buffer = [0u8; 4096];
    while let Ok((length, _)) = socket.recv_from(&mut buffer) {
        let reply = Message::from_vec(&buffer[..length]).unwrap();
        if reply.metadata.truncation {
            assert!(reply.answers.is_empty());
            // No amplification: a truncated answer is no larger than the
            // query plus its echoed question.
            assert!(length <= 2 * 33, "{length}");
            truncated += 1;
        } else {
            full += 1;
        }
    }
    // The burst takes milliseconds to send, and the node answers it within
    // two one-second windows, three on a loaded machine: 20 a window.
    assert!((20..=60).contains(&full), "{full} full answers");
    assert!(truncated > 0, "over the limit, some answers are truncated");
    assert!(
        full + truncated < sent as usize,
        "over the limit, some are dropped"
    );
    // Once the burst is over the network is answered again.
    let retried = seen(
        "dig",
        &[
            "-p".into(),
            dns.plain.port().to_string(),
            "@127.0.0.1".into(),
            "www.example.net".into(),
            "A".into(),
        ],
    );
    assert_eq!(retried.status, "NOERROR");
}

#[test]
fn answers_too_large_for_a_datagram_are_truncated_and_whole_over_tcp() {
    let dns = DnsNode::start("response_rate_limit = 0");
    let values: Vec<String> = (1..=60).map(|i| format!("192.0.2.{i}")).collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    dns.set("big.example.net", "A", &values, 300);
    let udp = ask_udp(dns.plain, "big.example.net.", RecordType::A);
    assert!(udp.metadata.truncation, "no EDNS: 512 bytes, too small");
    // dig falls back to TCP on TC and gets every record.
    let whole = seen(
        "dig",
        &[
            "-p".into(),
            dns.plain.port().to_string(),
            "+noedns".into(),
            "@127.0.0.1".into(),
            "big.example.net".into(),
            "A".into(),
        ],
    );
    assert_eq!(whole.records.len(), 60);
}

/// Frames `message` as DoQ, DoT and DNS over TCP do.
fn framed(message: &[u8]) -> Vec<u8> {
    let mut frame = (message.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(message);
    frame
}

/// One well-formed DoQ query for `www.example.net` A on a new connection:
/// the framed response.
/// The node closes `connection` with application error `code` within 10 s.
async fn assert_closed_with(connection: &quinn::Connection, code: u32) {
    let closed = tokio::time::timeout(Duration::from_secs(10), connection.closed())
        .await
        .expect("the node closes the connection");
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(code), "{close:?}");
        }
        other => panic!("closed with {other:?}"),
    }
}

/// One length-prefixed message from a DoT or TCP stream.
async fn read_framed(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Message {
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).await.unwrap();
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut message).await.unwrap();
    Message::from_vec(&message).unwrap()
}

async fn doq_exchange(endpoint: &quinn::Endpoint, addr: SocketAddr) -> Vec<u8> {
    let connection = quic_connect(endpoint, addr, &["doq"]).await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(&framed(&query("www.example.net.", RecordType::A, 0)))
        .await
        .unwrap();
    send.finish().unwrap();
    recv.read_to_end(65_537).await.unwrap()
}

#[test]
fn doq_answers_id_zero_and_closes_on_protocol_errors() {
    let dns = DnsNode::start("");
    dns.set("www.example.net", "A", &["192.0.2.1"], 300);
    dns.runtime.block_on(async {
        let endpoint = quic_endpoint();
        let response = doq_exchange(&endpoint, dns.node.addr).await;
        let reply = Message::from_vec(&response[2..]).unwrap();
        assert_eq!(
            usize::from(u16::from_be_bytes([response[0], response[1]])),
            response.len() - 2
        );
        assert_eq!(reply.metadata.id, 0);
        assert_eq!(reply.answers.len(), 1);

        // RFC 9250 §4.2.1: a non-zero id is a protocol error for the whole
        // connection; so is a length that does not match the stream.
        for bad in [framed(&query("www.example.net.", RecordType::A, 0x1234)), {
            let mut frame = framed(&query("www.example.net.", RecordType::A, 0));
            frame.push(0);
            frame
        }] {
            let connection = quic_connect(&endpoint, dns.node.addr, &["doq"])
                .await
                .unwrap();
            let (mut send, _recv) = connection.open_bi().await.unwrap();
            send.write_all(&bad).await.unwrap();
            send.finish().unwrap();
            assert_closed_with(&connection, 0x2).await;
        }
        // The node lives on.
        assert!(doq_exchange(&endpoint, dns.node.addr).await.len() > 2);
    });
}

#[test]
fn dot_pipelines_answers_formerr_on_garbage_and_closes_idle_streams() {
    let dns = DnsNode::start("idle_timeout_secs = 1");
    dns.set("www.example.net", "A", &["192.0.2.1"], 300);
    dns.runtime.block_on(async {
        let mut stream = tls_connect(dns.node.addr, &["dot"]).await.unwrap();
        // Three queries in one write, then a message that does not parse.
        let mut batch = Vec::new();
        for id in [11, 12, 13] {
            batch.extend(framed(&query("www.example.net.", RecordType::A, id)));
        }
        let mut garbage = query("www.example.net.", RecordType::A, 14);
        garbage.truncate(20);
        batch.extend(framed(&garbage));
        stream.write_all(&batch).await.unwrap();
        let mut ids = Vec::new();
        let mut codes = Vec::new();
        for _ in 0..4 {
            let reply = read_framed(&mut stream).await;
            ids.push(reply.metadata.id);
            codes.push(reply.metadata.response_code);
        }
        assert_eq!(ids, [11, 12, 13, 14]);
        assert_eq!(codes[3], ResponseCode::FormErr);
        // Idle past the timeout: the node closes the stream.
        let started = Instant::now();
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "an idle DoT connection is closed");
        assert!(started.elapsed() >= Duration::from_millis(500));

        // Plain TCP: a zero-length message ends the connection.
        let mut tcp = tokio::net::TcpStream::connect(dns.plain).await.unwrap();
        tcp.write_all(&[0, 0]).await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    });
}

/// Stub resolvers (systemd-resolved, dnsperf) offer no ALPN, which on the
/// node's port means HTTP: `[dns] dot_listen` serves them DNS over TLS, and
/// closes a client that asked for another protocol there.
#[test]
fn dot_listen_serves_tls_clients_that_offer_no_alpn() {
    let dns = DnsNode::start("dot_listen = \"127.0.0.1:0\"");
    dns.set("www.example.net", "A", &["192.0.2.1"], 300);
    let dot: SocketAddr = dns
        .node
        .stdout
        .lock()
        .unwrap()
        .iter()
        .find_map(|line| {
            let rest = line.split("DoT for any TLS client on ").nth(1)?;
            rest.split([',', ';']).next()?.parse().ok()
        })
        .expect("the banner names the DoT address");
    dns.runtime.block_on(async {
        for (id, alpns) in [(21u16, &[][..]), (22, &["dot"][..])] {
            let mut stream = tls_connect(dot, alpns).await.unwrap();
            stream
                .write_all(&framed(&query("www.example.net.", RecordType::A, id)))
                .await
                .unwrap();
            let reply = read_framed(&mut stream).await;
            assert_eq!(reply.metadata.id, id, "offering {alpns:?}");
            assert_eq!(reply.answers.len(), 1, "offering {alpns:?}: {reply:?}");
        }
        // A client that wants HTTP/2 is at the wrong port: closed unanswered.
        let mut stream = tls_connect(dot, &["h2"]).await.unwrap();
        let _ = stream
            .write_all(&framed(&query("www.example.net.", RecordType::A, 23)))
            .await;
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?} {rest:?}");
    });
    let tree = dns.call("admin/tree", json!({})).unwrap().to_string();
    assert!(tree.contains("listener/tls"), "{tree}");
}

#[test]
fn the_tree_shows_the_dns_protocols_and_services() {
    let dns = DnsNode::start("");
    // A DoT connection held open shows under proto/dot.
    let _held = dns
        .runtime
        .block_on(tls_connect(dns.node.addr, &["dot"]))
        .unwrap();
    let found = eventually_blocking(Duration::from_secs(10), || {
        let tree = dns.call("admin/tree", json!({})).unwrap().to_string();
        tree.contains("proto/doq")
            && tree.contains("proto/dot")
            && tree.contains("service/dns-udp")
            && tree.contains("service/pkarr-publisher")
            && tree.contains("service/pkarr-cache")
            && tree.contains("dot-conn")
    });
    assert!(found, "{}", dns.call("admin/tree", json!({})).unwrap());
}

#[test]
fn a_doq_connection_over_the_cap_is_closed_with_doq_excessive_load() {
    let dns = DnsNode::start("[protocols.\"doq\"]\nmax_connections = 1");
    dns.set("www.example.net", "A", &["192.0.2.1"], 300);
    dns.runtime.block_on(async {
        let endpoint = quic_endpoint();
        let held = quic_connect(&endpoint, dns.node.addr, &["doq"])
            .await
            .unwrap();
        // The first connection is served…
        let (mut send, mut recv) = held.open_bi().await.unwrap();
        send.write_all(&framed(&query("www.example.net.", RecordType::A, 0)))
            .await
            .unwrap();
        send.finish().unwrap();
        assert!(recv.read_to_end(65_537).await.unwrap().len() > 2);
        // …and while it is held, a second one is refused with RFC 9250's
        // code for load (0x4), not the node's generic refusal (0x2), which
        // would read as DOQ_PROTOCOL_ERROR.
        let refused = quic_connect(&endpoint, dns.node.addr, &["doq"])
            .await
            .unwrap();
        assert_closed_with(&refused, 0x4).await;
        drop(held);
    });
}
