//! The `alknet` binary as users run it: init, serve, configuration errors,
//! and an orderly exit on SIGINT.

use std::time::{Duration, Instant};

use alknet_e2e::client::{quic_connect, quic_echo, quic_endpoint, tls_connect};
use alknet_e2e::process::{NodeProcess, run};

const ECHO_CONFIG: &str = "[diagnostics]\necho = true\n";

#[test]
fn init_creates_a_private_key_certificates_and_a_commented_config() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = run(&["init", "--data-dir", data.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let node_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("node id: "))
        .expect("node id printed");
    assert!(
        node_id.starts_with("ed25519:") && node_id.len() == 8 + 64,
        "{node_id}"
    );
    for file in ["node.key", "node.crt", "web.key", "web.crt", "alknet.toml"] {
        assert!(data.join(file).exists(), "{file} missing");
    }
    use std::os::unix::fs::PermissionsExt;
    for private in ["node.key", "web.key"] {
        let mode = std::fs::metadata(data.join(private))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{private}");
    }
    let config = std::fs::read_to_string(data.join("alknet.toml")).unwrap();
    assert!(config.contains("max_connections = 10000") && config.contains("# "));

    // A second init must not replace the node's identity.
    let again = run(&["init", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already initialised"));
}

#[test]
fn init_json_is_one_object_with_the_node_its_token_and_its_mnemonic() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let out = run(&[
        "init",
        "--data-dir",
        data.to_str().unwrap(),
        "--no-passphrase",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    let created: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(created["node_id"].as_str().unwrap().starts_with("ed25519:"));
    assert!(created["admin_token"].as_str().unwrap().starts_with("alk_"));
    assert!(
        created["ssh_host_key"]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519 ")
    );
    assert_eq!(created["mnemonic"].as_str().unwrap().split(' ').count(), 24);
    assert_eq!(created["sealed"], false);
    assert_eq!(created["data_dir"], data.to_str().unwrap());
    assert!(std::path::Path::new(created["config"].as_str().unwrap()).exists());
    // The same node id as the text output of a restore from that mnemonic.
    let mnemonic = dir.path().join("mnemonic");
    std::fs::write(&mnemonic, created["mnemonic"].as_str().unwrap()).unwrap();
    let restored = run(&[
        "init",
        "--restore",
        "--mnemonic-file",
        mnemonic.to_str().unwrap(),
        "--no-passphrase",
        "--data-dir",
        dir.path().join("restored").to_str().unwrap(),
        "--json",
    ]);
    assert!(restored.status.success(), "{restored:?}");
    let restored: serde_json::Value = serde_json::from_slice(&restored.stdout).unwrap();
    assert_eq!(restored["node_id"], created["node_id"]);
    assert_eq!(
        restored["mnemonic"],
        serde_json::Value::Null,
        "a restored mnemonic is not repeated"
    );
}

#[test]
fn config_errors_name_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("custom.toml");
    std::fs::write(&config, "[limits]\nmax_conections = 5\n").unwrap();
    let out = run(&[
        "serve",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("custom.toml"), "{stderr}");
    assert!(stderr.contains("max_conections"), "{stderr}");
    assert!(
        stderr.contains("max_connections"),
        "expected keys are listed: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_where_to_connect_and_serves_echo_on_one_port() {
    let node = NodeProcess::start(ECHO_CONFIG);
    let stdout = node.stdout.lock().unwrap().join("\n");
    let serving = stdout
        .lines()
        .find_map(|l| l.strip_prefix("serving: "))
        .unwrap_or_else(|| panic!("no serving line: {stdout}"));
    let mut alpns: Vec<&str> = serving.split(", ").collect();
    alpns.sort_unstable();
    assert_eq!(
        alpns,
        [
            "alknet/call",
            "alknet/echo",
            "alknet/git",
            "alknet/sftp",
            "alknet/ssh",
            "doq",
            "dot",
            "h2",
            "http/1.1"
        ],
        "{stdout}"
    );
    let endpoint = quic_endpoint();
    let conn = quic_connect(&endpoint, node.addr, &["alknet/echo"])
        .await
        .unwrap();
    assert_eq!(quic_echo(&conn, b"ping").await.unwrap(), b"ping");
    let tls = tls_connect(node.addr, &["alknet/echo"]).await.unwrap();
    // The certificate is over the node key: its fingerprint is the node id.
    let leaf = &tls.get_ref().1.peer_certificates().unwrap()[0];
    assert_eq!(
        alknet_core::Fingerprint::of_certificate(leaf).to_string(),
        node.node_id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_with_open_connections_exits_zero_within_the_drain_deadline() {
    let mut node = NodeProcess::start(ECHO_CONFIG);
    let endpoint = quic_endpoint();
    let mut connections = Vec::new();
    for _ in 0..10 {
        let conn = quic_connect(&endpoint, node.addr, &["alknet/echo"])
            .await
            .unwrap();
        assert_eq!(quic_echo(&conn, b"open").await.unwrap(), b"open");
        connections.push(conn);
    }
    let _tls = tls_connect(node.addr, &["alknet/echo"]).await.unwrap();

    let started = Instant::now();
    node.interrupt();
    let status = node
        .wait_for_exit(Duration::from_secs(5))
        .expect("exited within the 5 s drain deadline");
    assert!(status.success(), "{status:?}; log: {:#?}", node.log());
    let elapsed = started.elapsed();
    // Clients were told why.
    match connections[0].closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(u64::from(close.error_code), 0);
            assert_eq!(&close.reason[..], b"shutting down");
        }
        other => panic!("unexpected close {other:?}"),
    }
    assert!(
        elapsed < Duration::from_secs(5),
        "{elapsed:?}; log: {:#?}",
        node.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_ignores_the_drain_is_closed_at_the_deadline() {
    let mut node = NodeProcess::start(
        "[diagnostics]\necho = true\nfault = true\n[supervision]\ndrain_timeout = \"1s\"\n",
    );
    let endpoint = quic_endpoint();
    let stuck = quic_connect(&endpoint, node.addr, &["alknet/fault"])
        .await
        .unwrap();
    let (mut send, _recv) = stuck.open_bi().await.unwrap();
    send.write_all(b"h").await.unwrap();
    // Make sure the server read the command before we interrupt.
    let echo = quic_connect(&endpoint, node.addr, &["alknet/echo"])
        .await
        .unwrap();
    assert_eq!(quic_echo(&echo, b"sync").await.unwrap(), b"sync");

    let started = Instant::now();
    node.interrupt();
    let status = node.wait_for_exit(Duration::from_secs(5)).expect("exited");
    let elapsed = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        elapsed >= Duration::from_millis(900),
        "did not wait for the drain: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    let log = node.log().join("\n");
    assert!(log.contains("drain deadline reached"), "{log}");
    match stuck.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(&close.reason[..], b"shutting down");
        }
        other => panic!("unexpected close {other:?}"),
    }
}

#[test]
fn an_override_for_an_unknown_protocol_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("alknet.toml"),
        "[diagnostics]\necho = true\n[protocols.\"alknet/ehco\"]\nmax_connections = 3\n",
    )
    .unwrap();
    let out = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("alknet.toml"), "{stderr}");
    assert!(stderr.contains("protocols.\"alknet/ehco\""), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alknet_call_prints_the_output_and_reports_errors_as_code_and_message() {
    let node = NodeProcess::start("[diagnostics]\ncall_ops = true\n");
    let addr = node.addr.to_string();
    let pin = node.node_id.clone();
    let run_blocking = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&args)
        })
    };
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    for transport in [None, Some("--tcp")] {
        let mut args = strings(&["call", "--connect", &addr, "--pin", &pin]);
        args.extend(transport.map(str::to_owned));
        args.extend(strings(&["diag/echo", r#"{"hello":"world"}"#]));
        let out = run_blocking(args).await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(printed, serde_json::json!({"hello": "world"}));
    }

    let out = run_blocking(strings(&[
        "call",
        "--connect",
        &addr,
        "--insecure",
        "nope/missing",
    ]))
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // Without a token the CLI adds that a restricted operation looks the same.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut lines = stderr.lines();
    assert_eq!(
        lines.next(),
        Some("NOT_FOUND: operation not found: nope/missing")
    );
    assert!(
        lines.next().is_some_and(|hint| hint.contains("--token")),
        "{stderr}"
    );

    // Trust must be explicit, and a wrong pin is refused.
    let out = run_blocking(strings(&["call", "--connect", &addr, "services/list"]))
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "neither --pin nor --insecure was given"
    );
    let wrong = format!("ed25519:{}", "00".repeat(32));
    let out = run_blocking(strings(&[
        "call",
        "--connect",
        &addr,
        "--pin",
        &wrong,
        "services/list",
    ]))
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open a call session"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_early_ends_alknet_call_quietly() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    // `alknet call … | head -1` on an endless subscription: the pipe closing
    // ends the command with success, without a panic, and ends the call.
    let node = NodeProcess::start("[diagnostics]\ncall_ops = true\n");
    let addr = node.addr.to_string();
    let pin = node.node_id.clone();
    let ended = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(alknet_e2e::process::alknet_bin())
            .args(["call", "--connect", &addr, "--pin", &pin, "diag/count"])
            .arg(r#"{"n":1000000,"interval_ms":1}"#)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert_eq!(first.trim(), r#"{"i":0}"#);
        // The reader is dropped here: the pipe is closed.
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "still running 20 s after its reader left"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        (status, stderr)
    })
    .await
    .unwrap();
    let (status, stderr) = ended;
    assert!(status.success(), "{status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
