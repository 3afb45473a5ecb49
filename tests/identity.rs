//! The identity store through the `alknet` binary: the admin token `init`
//! prints, `alknet token …` and `alknet peer …` against the data directory of a
//! running node (changes apply without a restart), and `alknet admin tree`
//! (docs/protocol.md §7.2, §10.3).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use alknet_e2e::process::{NodeProcess, alknet_bin, run};

/// What a caller that may not read the tree is told: that it does not exist.
const NOT_FOUND_ADMIN_TREE: &str = "NOT_FOUND: operation not found: admin/tree";

/// Runs `alknet` and returns (exit code, stdout, stderr).
fn alknet(args: &[&str]) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = run(args);
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Runs `alknet` and insists that it succeeded; returns its stdout.
fn alknet_ok(args: &[&str]) -> String {
    let (code, stdout, stderr) = alknet(args);
    assert_eq!(code, Some(0), "alknet {args:?} failed: {stderr}");
    stdout
}

/// The value of the first `label: value` line.
fn field<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(label)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no `{label}:` line in {text:?}"))
}

fn assert_is_token(token: &str) {
    let body = token.strip_prefix("alk_").expect("tokens start with alk_");
    assert!(
        (40..=44).contains(&body.len())
            && body
                .chars()
                .all(|c| c.is_ascii_alphanumeric() && !"0OIl".contains(c)),
        "not base58 of 32 bytes: {token}"
    );
}

/// The admin token a node printed when `serve` initialised its data directory.
fn printed_admin_token(node: &NodeProcess) -> String {
    node.admin_token()
}

fn data_dir(node: &NodeProcess) -> &str {
    node.data_dir.path().to_str().unwrap()
}

/// `alknet call … admin/tree` with an optional token.
fn call_admin_tree(
    node: &NodeProcess,
    token: Option<&str>,
    tcp: bool,
) -> (Option<i32>, String, String) {
    let addr = node.addr.to_string();
    let mut args = vec!["call", "--connect", &addr, "--pin", &node.node_id];
    if let Some(token) = token {
        args.extend(["--token", token]);
    }
    if tcp {
        args.push("--tcp");
    }
    args.push("admin/tree");
    alknet(&args)
}

/// `alknet serve` on an existing data directory (`NodeProcess` always starts
/// on a fresh one).
struct ExistingNode {
    child: Child,
    addr: SocketAddr,
    node_id: String,
    stdout: Vec<String>,
}

impl ExistingNode {
    fn start(data_dir: &Path) -> Self {
        let mut child = Command::new(alknet_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("ALKNET_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("alknet serve starts");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut stdout = Vec::new();
        while !stdout
            .last()
            .is_some_and(|l: &String| l.starts_with("serving:"))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => stdout.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!("alknet serve did not start; stdout: {stdout:?}");
                }
            }
        }
        let text = stdout.join("\n");
        let addr = text
            .lines()
            .find_map(|l| l.strip_prefix("listening on ")?.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .expect("address");
        let node_id = text
            .lines()
            .find_map(|l| l.strip_prefix("alknet node "))
            .expect("node id")
            .to_owned();
        Self {
            child,
            addr,
            node_id,
            stdout,
        }
    }
}

impl Drop for ExistingNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn init_prints_an_admin_token_once_that_authenticates_as_admin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let stdout = alknet_ok(&["init", "--data-dir", data]);
    let token = field(&stdout, "admin token").to_owned();
    assert_is_token(&token);
    assert!(stdout.contains("shown only this once"), "{stdout}");

    // Listed by prefix, as `admin` with scope `admin`; the token itself is not shown.
    let listed = alknet_ok(&["token", "list", "--data-dir", data]);
    assert!(!listed.contains(&token), "{listed}");
    let row = listed
        .lines()
        .find(|l| l.starts_with(&token[..8]))
        .unwrap_or_else(|| panic!("no row for {}: {listed}", &token[..8]));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1..3], ["admin", "admin"], "{row}");
    assert!(row.ends_with("created by alknet init"), "{row}");

    // Serving that data directory prints no second token; the first one works.
    let node = ExistingNode::start(Path::new(data));
    assert!(
        !node.stdout.iter().any(|l| l.starts_with("admin token")),
        "{:?}",
        node.stdout
    );
    let addr = node.addr.to_string();
    let base = ["call", "--connect", &addr, "--pin", &node.node_id];
    let stdout = alknet_ok(&[&base[..], &["--token", &token, "admin/tree"]].concat());
    let tree: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(tree["root"]["name"], "node");
    let (code, _, stderr) = alknet(&[&base[..], &["admin/tree"]].concat());
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr.lines().next(),
        Some(NOT_FOUND_ADMIN_TREE),
        "{stderr}"
    );
}

#[test]
fn serve_initialises_prints_the_admin_token_and_only_that_token_authenticates() {
    let node = NodeProcess::start("");
    let token = printed_admin_token(&node);
    assert_is_token(&token);
    for tcp in [false, true] {
        let (code, stdout, stderr) = call_admin_tree(&node, Some(&token), tcp);
        assert_eq!(code, Some(0), "{stderr}");
        let tree: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(tree["root"]["name"], "node");

        let (code, _, stderr) = call_admin_tree(&node, None, tcp);
        assert_eq!(code, Some(1));
        assert_eq!(
            stderr.lines().next(),
            Some(NOT_FOUND_ADMIN_TREE),
            "{stderr}"
        );
    }
    // The same prefix with another secret is not the token.
    let mut forged = token[..8].to_owned();
    forged.push_str(&"z".repeat(token.len() - 8));
    let (code, _, stderr) = call_admin_tree(&node, Some(&forged), false);
    assert_eq!(code, Some(1));
    assert_eq!(stderr.trim(), "FORBIDDEN: invalid token");
    let (code, _, stderr) = call_admin_tree(&node, Some(&token[..8]), false);
    assert_eq!(code, Some(1));
    assert_eq!(stderr.trim(), "FORBIDDEN: invalid token");
}

#[test]
fn tokens_created_and_revoked_beside_a_running_node_apply_at_once() {
    let node = NodeProcess::start("");
    let data = data_dir(&node);
    let created = alknet_ok(&[
        "token",
        "create",
        "--scopes",
        "admin,fs:read",
        "--id",
        "ops",
        "--description",
        "deploy bot",
        "--data-dir",
        data,
    ]);
    let token = field(&created, "token").to_owned();
    let prefix = field(&created, "prefix").to_owned();
    assert_is_token(&token);
    assert_eq!(prefix, token[..8]);

    // No restart, no waiting: the very next call sees it.
    let (code, _, stderr) = call_admin_tree(&node, Some(&token), false);
    assert_eq!(code, Some(0), "a fresh token must work at once: {stderr}");

    let listed = alknet_ok(&["token", "list", "--data-dir", data]);
    assert!(listed.contains(&prefix), "{listed}");
    assert!(!listed.contains(&token), "the token leaked into the list");
    assert!(listed.contains("admin,fs:read") && listed.contains("deploy bot"));
    let json = alknet_ok(&["token", "list", "--json", "--data-dir", data]);
    assert!(!json.contains(&token) && !json.contains("hash"), "{json}");
    let entries: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 2, "admin and ops");

    let revoked = alknet_ok(&["token", "revoke", &prefix, "--data-dir", data]);
    assert!(revoked.contains(&prefix), "{revoked}");
    let (code, _, stderr) = call_admin_tree(&node, Some(&token), false);
    assert_eq!(code, Some(1));
    assert_eq!(stderr.trim(), "FORBIDDEN: invalid token");
    // The admin token is untouched.
    let (code, _, stderr) = call_admin_tree(&node, Some(&printed_admin_token(&node)), true);
    assert_eq!(code, Some(0), "{stderr}");

    // A token without the scope authenticates but is not allowed.
    let created = alknet_ok(&["token", "create", "--scopes", "fs:read", "--data-dir", data]);
    let reader = field(&created, "token");
    assert_eq!(field(&created, "id"), format!("token:{}", &reader[..8]));
    let (code, _, stderr) = call_admin_tree(&node, Some(reader), false);
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr.lines().next(),
        Some(NOT_FOUND_ADMIN_TREE),
        "{stderr}"
    );

    // Operator mistakes are one clear line and exit 2.
    let (code, _, stderr) = alknet(&["token", "revoke", &prefix, "--data-dir", data]);
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr.trim(),
        format!("error: no token with prefix `{prefix}`")
    );
    let (code, _, stderr) = alknet(&["token", "revoke", reader, "--data-dir", data]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("a token prefix has 8 characters") && !stderr.contains(reader),
        "a pasted token is refused without echoing it: {stderr}"
    );
    let missing = node.data_dir.path().join("nope");
    let (code, _, stderr) = alknet(&["token", "list", "--data-dir", missing.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("not an alknet data directory"), "{stderr}");
    assert!(
        !missing.exists(),
        "a mistyped data directory must not be created"
    );
}

#[test]
fn an_expired_token_is_refused() {
    let node = NodeProcess::start("");
    let data = data_dir(&node);
    let created = alknet_ok(&[
        "token",
        "create",
        "--scopes",
        "admin",
        "--expires",
        "1s",
        "--data-dir",
        data,
    ]);
    let token = field(&created, "token").to_owned();
    let refused = alknet_e2e::eventually_blocking(Duration::from_secs(20), || {
        let (code, _, stderr) = call_admin_tree(&node, Some(&token), false);
        code == Some(1) && stderr.trim() == "FORBIDDEN: invalid token"
    });
    assert!(
        refused,
        "the token was still accepted 20 s after a 1 s expiry"
    );
    let listed = alknet_ok(&["token", "list", "--data-dir", data]);
    let row = listed
        .lines()
        .find(|l| l.starts_with(&token[..8]))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(row.contains("(expired)"), "{row}");
}

#[test]
fn admin_tree_prints_the_topology_and_the_callers_session() {
    let node = NodeProcess::start("");
    let token = printed_admin_token(&node);
    let addr = node.addr.to_string();
    let base = ["admin", "tree", "--connect", &addr, "--pin", &node.node_id];

    let tree = alknet_ok(&[&base[..], &["--token", &token]].concat());
    let line = |name: &str| {
        tree.lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} [")))
            .unwrap_or_else(|| panic!("no `{name}` line in:\n{tree}"))
            .to_owned()
    };
    assert!(line("node").starts_with("node [") && line("node").contains(" supervisor running "));
    for (name, kind, depth) in [
        ("proto/alknet/call", "supervisor", 1),
        ("router", "router", 1),
        ("listener/quic", "listener", 1),
        ("listener/tcp", "listener", 1),
        ("session", "connection", 2),
    ] {
        let line = line(name);
        let indent = line.len() - line.trim_start().len();
        assert_eq!(indent, depth * 2, "{line}");
        assert!(
            line.contains(&format!("] {kind} running restarts=0 up=")),
            "{line}"
        );
    }
    // Our own session, shown as the identity its token stands for (the
    // token still authorizes only its own request, §7.2).
    let session = line("session");
    assert!(
        session.contains(" alpn=alknet/call remote=127.0.0.1:")
            && session.ends_with(" identity=admin requests=1"),
        "{session}"
    );

    // The raw output, over TCP+TLS.
    let json = alknet_ok(&[&base[..], &["--token", &token, "--tcp", "--json"]].concat());
    let output: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(output["root"]["name"], "node");
    assert!(json.contains("\n  \"root\""), "pretty-printed: {json}");

    // A client certificate registered as the `admin` peer: the session itself
    // runs as admin, and no token is needed.
    let client = tempfile::tempdir().unwrap();
    let client_dir = client.path().join("client");
    let client_dir = client_dir.to_str().unwrap();
    let client_id = field(&alknet_ok(&["init", "--data-dir", client_dir]), "node id").to_owned();
    alknet_ok(&[
        "peer",
        "add",
        &client_id,
        "--id",
        "admin",
        "--scopes",
        "admin",
        "--data-dir",
        data_dir(&node),
    ]);
    let key = format!("{client_dir}/node.key");
    let tree = alknet_ok(&[&base[..], &["--key", &key]].concat());
    let own = tree
        .lines()
        .find(|l| l.trim_start().starts_with("session [") && l.contains(" identity=admin "))
        .unwrap_or_else(|| panic!("no session running as admin in:\n{tree}"));
    assert!(own.ends_with(" requests=1"), "{own}");

    // Errors are `CODE: message` and exit 1.
    let (code, _, stderr) = alknet(&base);
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr.lines().next(),
        Some(NOT_FOUND_ADMIN_TREE),
        "{stderr}"
    );
}

#[test]
fn a_client_certificate_gets_its_peer_identity_until_the_peer_is_removed() {
    let node = NodeProcess::start("");
    let data = data_dir(&node);
    let client = tempfile::tempdir().unwrap();
    let client_dir = client.path().join("client");
    let client_dir = client_dir.to_str().unwrap();
    let client_id = field(&alknet_ok(&["init", "--data-dir", client_dir]), "node id").to_owned();
    let key = format!("{client_dir}/node.key");
    let addr = node.addr.to_string();
    let call = |tcp: bool| {
        let mut args = vec![
            "call",
            "--connect",
            &addr,
            "--pin",
            &node.node_id,
            "--key",
            &key,
        ];
        if tcp {
            args.push("--tcp");
        }
        args.push("admin/tree");
        alknet(&args)
    };

    // Unknown certificate: anonymous.
    let (code, _, stderr) = call(false);
    assert_eq!(
        (code, stderr.lines().next()),
        (Some(1), Some(NOT_FOUND_ADMIN_TREE))
    );

    // Known, without the scope: authenticated but not allowed.
    alknet_ok(&[
        "peer",
        "add",
        &client_id,
        "--id",
        "alice",
        "--scopes",
        "fs:read",
        "--data-dir",
        data,
    ]);
    let (code, _, stderr) = call(false);
    assert_eq!(
        (code, stderr.lines().next()),
        (Some(1), Some(NOT_FOUND_ADMIN_TREE))
    );

    // Replaced with the scope: allowed, over both transports, as alice.
    let replaced = alknet_ok(&[
        "peer",
        "add",
        &client_id,
        "--id",
        "alice",
        "--scopes",
        "admin",
        "--data-dir",
        data,
    ]);
    assert!(replaced.starts_with("replaced peer"), "{replaced}");
    for tcp in [false, true] {
        let (code, stdout, stderr) = call(tcp);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stdout.contains("\"identity\": \"alice\""), "{stdout}");
    }
    let listed = alknet_ok(&["peer", "list", "--data-dir", data]);
    assert!(
        listed
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [client_id.as_str(), "alice", "admin"]),
        "{listed}"
    );

    alknet_ok(&["peer", "remove", &client_id, "--data-dir", data]);
    let (code, _, stderr) = call(false);
    assert_eq!(
        (code, stderr.lines().next()),
        (Some(1), Some(NOT_FOUND_ADMIN_TREE))
    );
    let (code, _, stderr) = alknet(&["peer", "remove", &client_id, "--data-dir", data]);
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr.trim(),
        format!("error: no peer with fingerprint {client_id}")
    );
    let (code, _, stderr) = alknet(&[
        "peer",
        "add",
        "md5:00",
        "--id",
        "x",
        "--scopes",
        "a",
        "--data-dir",
        data,
    ]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("fingerprint must start with"), "{stderr}");
}
