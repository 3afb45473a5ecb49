//! pkarr (issue #19), offline: a node answers its own name (`<z32>.`) over
//! DNS from the packet it signs; its relay API stores what pkarr clients
//! PUT — verified, newest wins, durable across `kill -9` — and refuses
//! forged, stale and future packets; and a second node, given the first as
//! its relay, publishes there and resolves the first node's `_alknet`
//! record over DoQ; the same through a Mainline DHT testnet on loopback.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use alknet_e2e::eventually_blocking;
use alknet_e2e::process::NodeProcess;
use pkarr::dns::Name;
use pkarr::dns::rdata::TXT;
use pkarr::{Keypair, SignedPacket, Timestamp};

/// The node's DNS name from its banner (`pkarr: name <z32>., …`).
fn pkarr_name(node: &NodeProcess) -> String {
    node.stdout
        .lock()
        .unwrap()
        .iter()
        .find_map(|line| {
            let rest = line.strip_prefix("pkarr: name ")?;
            Some(rest.split('.').next()?.to_owned())
        })
        .expect("the banner names the node's pkarr name")
}

/// `kdig` over QUIC to `node`, `+short`.
fn kdig_quic(node: &NodeProcess, name: &str, kind: &str) -> String {
    let out = Command::new("kdig")
        .args(["-p", &node.addr.port().to_string(), "@127.0.0.1", "+quic"])
        .args([name, kind, "+short", "+time=5", "+retry=0"])
        .output()
        .expect("kdig runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn relay_url(node: &NodeProcess, z32: &str) -> String {
    format!("https://127.0.0.1:{}/pkarr/{z32}", node.addr.port())
}

/// PUTs `payload` to `url` with curl; the HTTP status.
fn put(url: &str, payload: &[u8], scratch: &Path) -> u16 {
    let file = scratch.join("payload");
    std::fs::write(&file, payload).unwrap();
    let out = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(url)
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).parse().unwrap()
}

/// GETs `url` with curl: the status and the body.
fn get(url: &str) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sk", "-w", "\n%{http_code}"])
        .arg(url)
        .output()
        .expect("curl runs");
    let text = out.stdout;
    let split = text.iter().rposition(|b| *b == b'\n').unwrap();
    let status = String::from_utf8_lossy(&text[split + 1..]).parse().unwrap();
    (status, text[..split].to_vec())
}

fn packet(keypair: &Keypair, text: &str, timestamp: Option<Timestamp>) -> SignedPacket {
    let mut txt = TXT::new();
    txt.add_string(text).unwrap();
    let mut builder =
        SignedPacket::builder().txt(Name::new_unchecked("_test"), txt.into_owned(), 300);
    if let Some(timestamp) = timestamp {
        builder = builder.timestamp(timestamp);
    }
    builder.sign(keypair).unwrap()
}

#[test]
fn a_node_answers_its_own_name_from_the_packet_it_signs() {
    let node = NodeProcess::start("[dns]\n");
    let z32 = pkarr_name(&node);
    let hex = node.node_id.strip_prefix("ed25519:").unwrap().to_owned();
    // The name is the node key: the same 32 bytes as the node id.
    let key = pkarr::PublicKey::try_from(z32.as_str()).unwrap();
    assert_eq!(hex::encode(key.to_bytes()), hex);
    let mut txt = String::new();
    let published = eventually_blocking(Duration::from_secs(10), || {
        txt = kdig_quic(&node, &format!("_alknet.{z32}"), "TXT");
        !txt.is_empty()
    });
    assert!(published, "no _alknet record");
    assert!(txt.contains(&format!("id={}", node.node_id)), "{txt}");
    assert!(txt.contains(&format!("port={}", node.addr.port())), "{txt}");
    assert!(txt.contains("doq"), "{txt}");
    assert_eq!(kdig_quic(&node, &z32, "A").trim(), "127.0.0.1");
    // A key nobody published: no relay to ask, so it does not exist.
    let unknown = Keypair::random().public_key().to_z32();
    let out = Command::new("kdig")
        .args([
            "-p",
            &node.addr.port().to_string(),
            "@127.0.0.1",
            "+quic",
            &unknown,
            "A",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("NXDOMAIN"));
}

#[test]
fn the_relay_keeps_the_newest_verified_packet_across_kill_9() {
    let node = NodeProcess::start("[dns]\n");
    let scratch = tempfile::tempdir().unwrap();
    let keypair = Keypair::random();
    let z32 = keypair.public_key().to_z32();
    let url = relay_url(&node, &z32);
    assert_eq!(get(&url).0, 404);

    let first = packet(&keypair, "first", None);
    assert_eq!(put(&url, &first.to_relay_payload(), scratch.path()), 204);
    let newer = packet(&keypair, "newer", None);
    assert_eq!(put(&url, &newer.to_relay_payload(), scratch.path()), 204);
    // Stale: older than what is stored.
    assert_eq!(put(&url, &first.to_relay_payload(), scratch.path()), 409);
    // Forged: signed by another key, put at this key's URL.
    let forged = packet(&Keypair::random(), "forged", None);
    assert_eq!(put(&url, &forged.to_relay_payload(), scratch.path()), 400);
    // Tampered: one byte of the packet flipped.
    let mut tampered = newer.to_relay_payload().to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(put(&url, &tampered, scratch.path()), 400);
    // From the future: an hour ahead.
    let ahead = Timestamp::now() + 3_600_000_000;
    let future = packet(&keypair, "future", Some(ahead));
    assert_eq!(put(&url, &future.to_relay_payload(), scratch.path()), 400);
    // Too large, and not a key.
    assert_eq!(put(&url, &vec![0u8; 2000], scratch.path()), 413);
    assert_eq!(get(&relay_url(&node, "not-a-key")).0, 400);

    let (status, body) = get(&url);
    assert_eq!(status, 200);
    assert_eq!(body, newer.to_relay_payload().to_vec());
    // What a relay stores is served over DNS too.
    let txt = kdig_quic(&node, &format!("_test.{z32}"), "TXT");
    assert!(txt.contains("newer"), "{txt}");

    // Acknowledged means on disk.
    let mut node = node;
    node.kill();
    let node = node.restart();
    let (status, body) = get(&relay_url(&node, &z32));
    assert_eq!(status, 200);
    assert_eq!(body, newer.to_relay_payload().to_vec());
}

#[test]
fn a_node_publishes_to_another_and_resolves_it_over_doq() {
    let a = NodeProcess::start("[dns]\n");
    let a_name = pkarr_name(&a);
    // B trusts A's certificates (the node certificate, which a client that
    // verifies Ed25519 is shown, and the web one) and uses A as its relay.
    let b = NodeProcess::start_with_setup(
        &format!(
            "[dns]\n[pkarr]\nrelays = [\"https://127.0.0.1:{}/pkarr\"]\n[import.client]\nca_bundle = \"a.pem\"\n",
            a.addr.port()
        ),
        |data| {
            let mut bundle = std::fs::read(a.data_dir.path().join("node.crt")).unwrap();
            bundle.extend(std::fs::read(a.data_dir.path().join("web.crt")).unwrap());
            std::fs::write(data.join("a.pem"), bundle).unwrap();
        },
    );
    let b_name = pkarr_name(&b);
    // B resolves A's dialing record through A's relay.
    let mut txt = String::new();
    let resolved = eventually_blocking(Duration::from_secs(15), || {
        txt = kdig_quic(&b, &format!("_alknet.{a_name}"), "TXT");
        txt.contains(&format!("port={}", a.addr.port()))
    });
    assert!(resolved, "B did not resolve A: {txt:?}");
    assert!(txt.contains(&format!("id={}", a.node_id)), "{txt}");
    // B published its own packet to A, which now answers B's name.
    let published = eventually_blocking(Duration::from_secs(15), || {
        get(&relay_url(&a, &b_name)).0 == 200
    });
    assert!(published, "B's packet never reached A's relay");
    let txt = kdig_quic(&a, &format!("_alknet.{b_name}"), "TXT");
    assert!(txt.contains(&format!("port={}", b.addr.port())), "{txt}");
}

#[test]
fn an_upstream_named_by_node_id_alone_is_found_through_pkarr() {
    let a = NodeProcess::start("[dns]\n");
    let a_name = pkarr_name(&a);
    let b = NodeProcess::start_with_setup(
        &format!(
            "[dns]\n[pkarr]\nrelays = [\"https://127.0.0.1:{port}/pkarr\"]\n\
             [import.client]\nca_bundle = \"a.pem\"\n\
             [[upstreams]]\npin = \"{id}\"\nprefix = \"a\"\nexternal = true\n",
            port = a.addr.port(),
            id = a.node_id,
        ),
        |data| {
            let mut bundle = std::fs::read(a.data_dir.path().join("node.crt")).unwrap();
            bundle.extend(std::fs::read(a.data_dir.path().join("web.crt")).unwrap());
            std::fs::write(data.join("a.pem"), bundle).unwrap();
        },
    );
    b_reaches_a_by_id_alone(&a, &b, &a_name);
}

/// The Mainline DHT, offline: a five-node testnet on loopback (mainline's
/// own), nodes A and B on it with no relay. A publishes its packet there; B
/// answers A's `_alknet` record over DoQ from the DHT, and reaches A through
/// an upstream named by A's id alone.
#[test]
fn nodes_find_each_other_through_a_loopback_mainline_dht() {
    let (testnet, dht_config) = loopback_dht();
    let a = NodeProcess::start(&dht_config);
    let a_name = pkarr_name(&a);
    assert!(
        a.stdout
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains("DHT on udp 127.0.0.1:")),
        "the banner names the DHT socket"
    );
    assert!(
        on_dht(&testnet, &a_name, "_alknet", &a.node_id),
        "A's packet never reached the DHT: {:?}",
        a.log()
    );
    let b = NodeProcess::start(&format!(
        "{dht_config}[[upstreams]]\npin = \"{id}\"\nprefix = \"a\"\nexternal = true\n",
        id = a.node_id,
    ));
    let mut txt = String::new();
    let resolved = eventually_blocking(Duration::from_secs(20), || {
        txt = kdig_quic(&b, &format!("_alknet.{a_name}"), "TXT");
        txt.contains(&format!("port={}", a.addr.port()))
    });
    assert!(
        resolved,
        "B did not resolve A from the DHT: {txt:?} {:?}",
        b.log()
    );
    assert!(txt.contains(&format!("id={}", a.node_id)), "{txt}");
    b_reaches_a_by_id_alone(&a, &b, &a_name);
}

/// pkarr's own client (unmodified, `tests/pkarr-client`) against the relay
/// of node A, which is on a loopback DHT: it publishes a packet and reads it
/// back; A put it on the DHT, where node B (no relay) finds it; and A's relay
/// answers it a key that only the DHT knows (B's).
#[test]
fn a_stock_pkarr_client_publishes_to_the_relay_and_reads_back() {
    let (testnet, dht_config) = loopback_dht();
    let a = NodeProcess::start(&dht_config);
    let relay = format!("https://127.0.0.1:{}/pkarr", a.addr.port());
    // The client trusts A's certificates through the system roots' variable.
    let roots = a.data_dir.path().join("roots.pem");
    let mut bundle = std::fs::read(a.data_dir.path().join("node.crt")).unwrap();
    bundle.extend(std::fs::read(a.data_dir.path().join("web.crt")).unwrap());
    std::fs::write(&roots, bundle).unwrap();
    let client = |args: &[&str]| {
        let out = Command::new(alknet_e2e::process::pkarr_client())
            .args(args)
            .env("SSL_CERT_FILE", &roots)
            .output()
            .expect("pkarr-client runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let secret = "42".repeat(32);
    let (ok, key, err) = client(&["publish", &relay, &secret, "_hello", "from a stock client"]);
    assert!(ok, "publish failed: {err}");
    let key = key.trim().to_owned();
    let (ok, records, err) = client(&["resolve", &relay, &key]);
    assert!(ok, "resolve failed: {err}");
    assert_eq!(records.trim(), format!("_hello.{key} from a stock client"));
    // A forwarded it to the DHT, where B, with no relay, finds it.
    assert!(
        on_dht(&testnet, &key, "_hello", "from a stock client"),
        "A never put the client's packet on the DHT: {:?}",
        a.log()
    );
    let b = NodeProcess::start(&dht_config);
    let mut txt = String::new();
    let forwarded = eventually_blocking(Duration::from_secs(30), || {
        txt = kdig_quic(&b, &format!("_hello.{key}"), "TXT");
        txt.contains("from a stock client")
    });
    assert!(
        forwarded,
        "B never found the client's packet on the DHT: {txt:?}"
    );
    // B's own packet is on the DHT only; A's relay answers it from there.
    let b_name = pkarr_name(&b);
    assert!(
        on_dht(&testnet, &b_name, "_alknet", &b.node_id),
        "B never published"
    );
    let mut records = String::new();
    let relayed = eventually_blocking(Duration::from_secs(30), || {
        let (_, out, _) = client(&["resolve", &relay, &b_name]);
        records = out;
        records.contains(&format!("port={}", b.addr.port()))
    });
    assert!(
        relayed,
        "A's relay never answered B's key from the DHT: {records:?}"
    );
    // An unknown key is a 404 the client reports as not found.
    let (ok, _, err) = client(&["resolve", &relay, &Keypair::random().public_key().to_z32()]);
    assert!(!ok && err.contains("not found"), "{err}");
}

/// A five-node Mainline testnet on loopback (mainline's own), and the
/// configuration of a node on it with no relay.
fn loopback_dht() -> (mainline::Testnet, String) {
    let testnet = mainline::Testnet::builder(5)
        .build()
        .expect("a loopback DHT testnet");
    let config = format!(
        "[dns]\n[pkarr]\ndht = true\ndht_listen = \"127.0.0.1:0\"\ndht_bootstrap = {:?}\n",
        testnet.bootstrap
    );
    (testnet, config)
}

/// Whether pkarr's own DHT client finds, within 30 s, the packet of `z32`
/// on `testnet` with a record `name` whose data holds `text`.
fn on_dht(testnet: &mainline::Testnet, z32: &str, name: &str, text: &str) -> bool {
    let key = pkarr::PublicKey::try_from(z32).unwrap();
    let mut config = pkarr::dht::DhtConfig::default();
    config.bootstrap = Some(
        testnet
            .bootstrap
            .iter()
            .map(|node| node.parse().unwrap())
            .collect(),
    );
    config.bind_address = Some(std::net::Ipv4Addr::LOCALHOST);
    let reader = pkarr::dht::DhtClient::build(config).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    eventually_blocking(Duration::from_secs(30), || {
        let response = runtime.block_on(reader.resolve(&key, None));
        response.first().is_some_and(|packet| {
            packet
                .resource_records(name)
                .any(|record| format!("{:?}", record.rdata).contains(text))
        })
    })
}

/// B, whose upstream names A by node id alone, found A: it imported A's
/// operations (`a/dns/resolve` runs on A), and `alknet resolve` on B prints
/// where A is.
fn b_reaches_a_by_id_alone(a: &NodeProcess, b: &NodeProcess, a_name: &str) {
    // B imports A's operations once it found A: `a/dns/resolve` appears.
    let token = b.admin_token();
    let call = |operation: &str, input: &str| {
        alknet_e2e::process::run(&[
            "call",
            operation,
            input,
            "--connect",
            &b.addr.to_string(),
            "--insecure",
            "--token",
            &token,
        ])
    };
    let imported = eventually_blocking(Duration::from_secs(20), || {
        let out = call("services/list", "{}");
        String::from_utf8_lossy(&out.stdout).contains("a/dns/resolve")
    });
    assert!(imported, "B never imported from A: {:?}", b.log());
    // The imported operation runs on A: A resolves its own name.
    let out = call("a/dns/resolve", &format!("{{\"name\": \"{}\"}}", a.node_id));
    let answer: serde_json::Value = alknet_e2e::process::json_stdout(&out);
    assert_eq!(answer["name"], format!("{a_name}."));
    assert_eq!(answer["node"]["node_id"], a.node_id);
    assert_eq!(
        answer["node"]["addresses"][0],
        format!("127.0.0.1:{}", a.addr.port())
    );
    // `alknet resolve` prints what B sees of A.
    let out = alknet_e2e::process::run(&[
        "resolve",
        &a.node_id,
        "--connect",
        &b.addr.to_string(),
        "--insecure",
        "--token",
        &token,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "node {} at 127.0.0.1:{}",
            a.node_id,
            a.addr.port()
        )),
        "{text}"
    );
    assert!(text.contains(&format!("_alknet.{a_name}.")), "{text}");
}
