//! The node as a long-running service, against the real binary: systemd
//! readiness and watchdog pings through `NOTIFY_SOCKET`, `SIGHUP` reloads,
//! and the shipped unit file.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use alknet_e2e::client::{quic_connect, quic_echo, quic_endpoint, tls_connect};
use alknet_e2e::process::{NodeProcess, alknet_bin};
use alknet_e2e::{eventually_blocking, runtime};
use nix::sys::signal::Signal;
use rustls::pki_types::CertificateDer;

/// Datagrams received on `socket` until `done` holds for what arrived, or
/// the deadline passes.
fn receive_until(
    socket: &UnixDatagram,
    deadline: Duration,
    mut done: impl FnMut(&[String]) -> bool,
) -> Vec<String> {
    let end = Instant::now() + deadline;
    let mut messages = Vec::new();
    let mut buffer = [0u8; 4096];
    while !done(&messages) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.recv(&mut buffer) {
            Ok(n) => messages.push(String::from_utf8_lossy(&buffer[..n]).into_owned()),
            Err(_) => break,
        }
    }
    messages
}

fn count(messages: &[String], line: &str) -> usize {
    messages
        .iter()
        .filter(|m| m.lines().any(|l| l == line))
        .count()
}

#[test]
fn systemd_hears_ready_then_watchdog_pings_then_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    let mut node = NodeProcess::start_with_env(
        "",
        &[
            ("NOTIFY_SOCKET", path.as_os_str()),
            // Pings every 150 ms.
            ("WATCHDOG_USEC", "300000".as_ref()),
        ],
    );
    let messages = receive_until(&socket, Duration::from_secs(10), |m| {
        count(m, "READY=1") >= 1 && count(m, "WATCHDOG=1") >= 3
    });
    assert_eq!(count(&messages, "READY=1"), 1, "{messages:?}");
    assert!(count(&messages, "WATCHDOG=1") >= 3, "{messages:?}");
    let ready = messages
        .iter()
        .find(|m| m.lines().any(|l| l == "READY=1"))
        .unwrap();
    assert!(
        ready.contains(&format!("STATUS=serving on {}", node.addr)),
        "{ready}"
    );

    node.signal(Signal::SIGHUP);
    let messages = receive_until(&socket, Duration::from_secs(10), |m| {
        count(m, "RELOADING=1") >= 1 && count(m, "READY=1") >= 1
    });
    let reloading = messages
        .iter()
        .position(|m| m.lines().any(|l| l == "RELOADING=1"))
        .expect("RELOADING=1");
    assert!(
        messages[reloading].contains("MONOTONIC_USEC="),
        "{messages:?}"
    );
    assert!(
        messages[reloading..]
            .iter()
            .any(|m| m.lines().any(|l| l == "READY=1")),
        "{messages:?}"
    );

    node.interrupt();
    let messages = receive_until(&socket, Duration::from_secs(10), |m| {
        count(m, "STOPPING=1") >= 1
    });
    assert_eq!(count(&messages, "STOPPING=1"), 1, "{messages:?}");
    let status = node.wait_for_exit(Duration::from_secs(20)).expect("exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_watchdog_meant_for_another_process_is_not_pinged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    let node = NodeProcess::start_with_env(
        "",
        &[
            ("NOTIFY_SOCKET", path.as_os_str()),
            ("WATCHDOG_USEC", "100000".as_ref()),
            ("WATCHDOG_PID", "1".as_ref()),
        ],
    );
    let messages = receive_until(&socket, Duration::from_secs(10), |m| {
        count(m, "READY=1") >= 1
    });
    assert_eq!(count(&messages, "READY=1"), 1, "{messages:?}");
    // A second's worth of would-be pings (every 50 ms): none may come.
    let later = receive_until(&socket, Duration::from_secs(1), |m| !m.is_empty());
    assert_eq!(count(&later, "WATCHDOG=1"), 0, "{later:?}");
    drop(node);
}

fn write_certificate(dir: &Path, name: &str) -> CertificateDer<'static> {
    let (cert_pem, key_pem) = alknet_core::node_key::generate_web_certificate(name).unwrap();
    let cert = dir.join("operator.pem");
    let key = dir.join("operator.key");
    // Replaced as a renewal tool does: a new file moved over the old one.
    std::fs::write(dir.join("operator.pem.new"), &cert_pem).unwrap();
    std::fs::write(dir.join("operator.key.new"), &key_pem).unwrap();
    std::fs::set_permissions(
        dir.join("operator.key.new"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::rename(dir.join("operator.key.new"), &key).unwrap();
    std::fs::rename(dir.join("operator.pem.new"), &cert).unwrap();
    alknet_core::tls::load_pem_pair(&cert, &key).unwrap().chain[0].clone()
}

async fn browser_leaf(addr: std::net::SocketAddr) -> CertificateDer<'static> {
    let tls = tls_connect(addr, &["http/1.1"]).await.expect("handshake");
    tls.get_ref().1.peer_certificates().expect("certificate")[0].clone()
}

#[test]
fn sighup_serves_a_replaced_certificate_without_dropping_an_open_connection() {
    // The data directory comes from NodeProcess; the certificate is written
    // into it before the node reads its configuration.
    let config = "[tls]\ncert = \"operator.pem\"\nkey = \"operator.key\"\n\
                  [diagnostics]\necho = true\n";
    let staging = tempfile::tempdir().unwrap();
    let first = write_certificate(staging.path(), "first");
    let mut node = NodeProcess::start_with_setup(config, |data_dir| {
        // `copy` keeps the key's mode 0600.
        for file in ["operator.pem", "operator.key"] {
            std::fs::copy(staging.path().join(file), data_dir.join(file)).unwrap();
        }
    });
    let data_dir = node.data_dir.path().to_owned();
    let rt = runtime();
    let endpoint = rt.block_on(async { quic_endpoint() });
    let connection = rt
        .block_on(quic_connect(&endpoint, node.addr, &["alknet/echo"]))
        .expect("QUIC connection");
    assert_eq!(
        rt.block_on(quic_echo(&connection, b"before")).unwrap(),
        b"before"
    );
    assert_eq!(rt.block_on(browser_leaf(node.addr)), first);

    let second = write_certificate(&data_dir, "second");
    assert_ne!(first, second);
    node.signal(Signal::SIGHUP);
    assert!(
        eventually_blocking(Duration::from_secs(10), || node
            .log()
            .iter()
            .any(|l| l.contains("certificates reloaded"))),
        "no reload logged: {:?}",
        node.log()
    );
    assert_eq!(rt.block_on(browser_leaf(node.addr)), second);
    // The connection opened before the reload still works.
    assert_eq!(
        rt.block_on(quic_echo(&connection, b"after")).unwrap(),
        b"after"
    );
    assert!(connection.close_reason().is_none());
    assert!(node.is_running());
}

#[test]
fn sighup_with_a_broken_configuration_changes_nothing_and_keeps_serving() {
    let mut node = NodeProcess::start("[diagnostics]\necho = true\n");
    let config = node.data_dir.path().join("alknet.toml");
    std::fs::write(&config, "[limits]\nmax_frame = \"huge\"\n").unwrap();
    node.signal(Signal::SIGHUP);
    assert!(
        eventually_blocking(Duration::from_secs(10), || node
            .log()
            .iter()
            .any(|l| l.contains("reload refused, nothing changed"))),
        "{:?}",
        node.log()
    );
    // A valid change to a key that needs a restart (the listeners apply
    // it at their creation) is named.
    std::fs::write(
        &config,
        "[diagnostics]\necho = true\n[limits]\nhandshake_timeout = \"7s\"\n",
    )
    .unwrap();
    node.signal(Signal::SIGHUP);
    assert!(
        eventually_blocking(Duration::from_secs(10), || node
            .log()
            .iter()
            .any(|l| l.contains("not applied until the node restarts")
                && l.contains("limits.handshake_timeout"))),
        "{:?}",
        node.log()
    );
    assert!(node.is_running(), "SIGHUP must not stop the node");
    let rt = runtime();
    let endpoint = rt.block_on(async { quic_endpoint() });
    let connection = rt
        .block_on(quic_connect(&endpoint, node.addr, &["alknet/echo"]))
        .expect("still serving");
    assert_eq!(rt.block_on(quic_echo(&connection, b"x")).unwrap(), b"x");
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/alknet.service"),
    )
    .unwrap();
    for directive in [
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=alknet",
        "LoadCredential=vault-passphrase:",
    ] {
        assert!(unit.contains(directive), "missing {directive}");
    }
    // verify checks that ExecStart's binary exists: point it at the one
    // under test, and change nothing else.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alknet.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/alknet "));
    std::fs::write(
        &path,
        unit.replace(
            "ExecStart=/usr/local/bin/alknet ",
            &format!("ExecStart={} ", alknet_bin().display()),
        ),
    )
    .unwrap();
    // --man=no: the man page is installed with the package, not here.
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze runs (Debian package systemd)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // Unknown or misspelt directives are warnings, not failures: none may
    // be printed.
    assert!(stderr.trim().is_empty(), "{stderr}");
}

#[test]
fn sighup_applies_a_changed_log_filter() {
    // The file's `log` rules only without ALKNET_LOG (the harness sets it).
    let mut node = NodeProcess::start_with_env("log = \"warn\"\n", &[("ALKNET_LOG", "".as_ref())]);
    let config = node.data_dir.path().join("alknet.toml");
    std::fs::write(&config, "log = \"info\"\n").unwrap();
    node.signal(Signal::SIGHUP);
    assert!(
        eventually_blocking(Duration::from_secs(10), || node
            .log()
            .iter()
            .any(|l| l.contains("log filter reloaded"))),
        "{:?}",
        node.log()
    );
    // The reload's first line was written under the old filter (`warn`), so
    // it is missing; the lines after the switch are there.
    let log = node.log();
    assert!(
        !log.iter().any(|l| l.contains("SIGHUP received: reloading")),
        "{log:?}"
    );
    assert!(node.is_running());
}

#[test]
fn sighup_applies_new_connection_caps_to_new_connections_only() {
    let node = NodeProcess::start("[diagnostics]\necho = true\n");
    let config = node.data_dir.path().join("alknet.toml");
    let rt = runtime();
    let endpoint = rt.block_on(async { quic_endpoint() });
    let connect = || {
        rt.block_on(quic_connect(&endpoint, node.addr, &["alknet/echo"]))
            .expect("handshake")
    };
    let (first, second) = (connect(), connect());
    for connection in [&first, &second] {
        assert_eq!(
            rt.block_on(quic_echo(connection, b"open")).unwrap(),
            b"open"
        );
    }
    let reloads = |node: &NodeProcess| {
        node.log()
            .iter()
            .filter(|l| l.contains("connection caps reloaded"))
            .count()
    };

    std::fs::write(
        &config,
        "[diagnostics]\necho = true\n[limits]\nmax_connections = 2\n",
    )
    .unwrap();
    node.signal(Signal::SIGHUP);
    assert!(
        eventually_blocking(Duration::from_secs(10), || reloads(&node) == 1),
        "{:?}",
        node.log()
    );
    // Both connections are at the new cap: a third is refused after its
    // handshake, with the limit's close code; the two keep working.
    let third = connect();
    let closed = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), third.closed())
            .await
            .expect("the third connection is closed")
    });
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(
                close.error_code,
                quinn::VarInt::from_u32(alknet_core::close::REFUSED)
            );
        }
        other => panic!("closed as {other:?}"),
    }
    for connection in [&first, &second] {
        assert_eq!(
            rt.block_on(quic_echo(connection, b"kept")).unwrap(),
            b"kept"
        );
    }
    // No log line says the caps changed when they did not.
    node.signal(Signal::SIGHUP);
    assert!(eventually_blocking(Duration::from_secs(10), || node
        .log()
        .iter()
        .filter(|l| l.contains("reload finished"))
        .count()
        == 2));
    assert_eq!(reloads(&node), 1, "{:?}", node.log());

    std::fs::write(
        &config,
        "[diagnostics]\necho = true\n[limits]\nmax_connections = 3\n",
    )
    .unwrap();
    node.signal(Signal::SIGHUP);
    assert!(
        eventually_blocking(Duration::from_secs(10), || reloads(&node) == 2),
        "{:?}",
        node.log()
    );
    let fourth = connect();
    assert_eq!(rt.block_on(quic_echo(&fourth, b"room")).unwrap(), b"room");
    // The cap was applied, not merely named as waiting for a restart.
    assert!(
        !node
            .log()
            .iter()
            .any(|l| l.contains("not applied") && l.contains("max_connections")),
        "{:?}",
        node.log()
    );
}

/// `POST /batch` of `items` discovery calls on a new HTTP/1.1 connection;
/// the whole response.
async fn batch_of(addr: std::net::SocketAddr, items: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = serde_json::Value::Array(vec![
        serde_json::json!({"operation": "services/list", "input": {}});
        items
    ])
    .to_string();
    let mut stream = tls_connect(addr, &["http/1.1"]).await.unwrap();
    let request = format!(
        "POST /batch HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[test]
fn sighup_applies_raised_limits_to_new_connections_and_sessions() {
    use alknet_call::Event;
    use alknet_e2e::raw_call::{Transport, open_at};
    let node = NodeProcess::start("[limits]\nmax_frame = 4096\nmax_batch = 1\n");
    let config = node.data_dir.path().join("alknet.toml");
    let rt = runtime();
    // A request frame of about 6 KB: over the first limit, under the second.
    let big = serde_json::json!({ "pad": "x".repeat(6000) });

    let refused = rt.block_on(async {
        let mut raw = open_at(node.addr, Transport::Quic).await;
        raw.call("big", "services/list", big.clone()).await;
        raw.next().await
    });
    assert!(
        refused.is_none(),
        "a frame over max_frame is refused: {refused:?}"
    );
    assert!(
        rt.block_on(batch_of(node.addr, 2))
            .contains("batch too large")
    );
    // A session that started before the reload keeps the limit it started
    // with (its buffers were sized by it).
    let mut before = rt.block_on(async {
        let mut raw = open_at(node.addr, Transport::Quic).await;
        let event = raw
            .round_trip("small", "services/list", serde_json::json!({}))
            .await;
        assert!(matches!(event, Event::Responded(_)), "{event:?}");
        raw
    });

    std::fs::write(&config, "[limits]\nmax_frame = 65536\nmax_batch = 4\n").unwrap();
    node.signal(Signal::SIGHUP);
    assert!(
        eventually_blocking(Duration::from_secs(10), || node
            .log()
            .iter()
            .any(|l| l.contains("reload finished"))),
        "{:?}",
        node.log()
    );
    let log = node.log();
    let applied = log
        .iter()
        .find(|l| l.contains("limits reloaded"))
        .unwrap_or_else(|| panic!("{log:?}"));
    assert!(
        applied.contains("limits.max_frame") && applied.contains("limits.max_batch"),
        "{applied}"
    );
    assert!(!applied.contains("limits.call_timeout"), "{applied}");
    assert!(
        !log.iter()
            .any(|l| l.contains("not applied") && l.contains("max_frame")),
        "{log:?}"
    );

    for transport in [Transport::Quic, Transport::Tcp] {
        let event = rt.block_on(async {
            let mut raw = open_at(node.addr, transport).await;
            raw.round_trip("big", "services/list", big.clone()).await
        });
        assert!(
            matches!(event, Event::Responded(_)),
            "{transport:?}: {event:?}"
        );
    }
    let batch = rt.block_on(batch_of(node.addr, 2));
    assert!(batch.starts_with("HTTP/1.1 200"), "{batch}");
    let kept = rt.block_on(async {
        before.call("big", "services/list", big.clone()).await;
        before.next().await
    });
    assert!(kept.is_none(), "the open session kept its limit: {kept:?}");

    // Nothing changed: nothing is said to be reloaded.
    node.signal(Signal::SIGHUP);
    assert!(eventually_blocking(Duration::from_secs(10), || node
        .log()
        .iter()
        .filter(|l| l.contains("reload finished"))
        .count()
        == 2));
    assert_eq!(
        node.log()
            .iter()
            .filter(|l| l.contains("limits reloaded"))
            .count(),
        1,
        "{:?}",
        node.log()
    );
}

/// The operation names `services/list` shows an anonymous caller, on a new
/// session.
fn listed(addr: std::net::SocketAddr) -> String {
    use alknet_e2e::raw_call::{Transport, open_at};
    runtime().block_on(async {
        let mut raw = open_at(addr, Transport::Quic).await;
        match raw
            .round_trip("list", "services/list", serde_json::json!({}))
            .await
        {
            alknet_call::Event::Responded(output) => output.to_string(),
            other => panic!("services/list: {other:?}"),
        }
    })
}

fn openapi_import(namespace: &str, source: &str) -> String {
    format!(
        "[[import.openapi]]\nnamespace = \"{namespace}\"\nsource = \"{source}\"\n\
         base_url = \"http://127.0.0.1:9\"\nexternal = true\n"
    )
}

#[test]
fn sighup_replaces_changed_imports_and_keeps_them_when_the_new_ones_fail() {
    let petstore = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/petstore.yaml");
    let node = NodeProcess::start_with_setup(&openapi_import("pets", "petstore.yaml"), |dir| {
        std::fs::copy(&petstore, dir.join("petstore.yaml")).unwrap();
    });
    let config = node.data_dir.path().join("alknet.toml");
    let before = listed(node.addr);
    assert!(before.contains("\"pets/"), "{before}");
    let lines = |what: &str| {
        node.log()
            .iter()
            .filter(|l| l.contains(what))
            .cloned()
            .collect::<Vec<_>>()
    };

    // Renamed: the old operations go, the new ones serve.
    std::fs::write(&config, openapi_import("animals", "petstore.yaml")).unwrap();
    node.signal(Signal::SIGHUP);
    assert!(
        eventually_blocking(Duration::from_secs(10), || !lines("reload finished")
            .is_empty()),
        "{:?}",
        node.log()
    );
    let reloaded = lines("imports reloaded");
    assert_eq!(reloaded.len(), 1, "{:?}", node.log());
    assert!(
        reloaded[0].contains("pets/"),
        "the removed are named: {}",
        reloaded[0]
    );
    let after = listed(node.addr);
    assert!(
        after.contains("\"animals/") && !after.contains("\"pets/"),
        "{after}"
    );
    assert!(
        lines("not applied until the node restarts").is_empty(),
        "{:?}",
        node.log()
    );

    // A document that cannot be read: the served imports stay, and why is
    // logged with the import's entry.
    std::fs::write(
        &config,
        openapi_import("animals", "petstore.yaml") + &openapi_import("birds", "missing.yaml"),
    )
    .unwrap();
    node.signal(Signal::SIGHUP);
    assert!(
        eventually_blocking(Duration::from_secs(10), || lines("reload finished").len()
            == 2),
        "{:?}",
        node.log()
    );
    let refused = lines("imports not reloaded");
    assert_eq!(refused.len(), 1, "{:?}", node.log());
    assert!(
        refused[0].contains("import.openapi[1] (birds)") && refused[0].contains("missing.yaml"),
        "{}",
        refused[0]
    );
    let kept = listed(node.addr);
    assert!(
        kept.contains("\"animals/") && !kept.contains("\"birds/"),
        "{kept}"
    );
}
