//! The `alknet` client as people and scripts use it (issue #20): host names,
//! environment variables and the profile file, timeouts, input from standard
//! input or a file, `--json`, a clean close, error messages, completions and
//! the manual page. Every test runs the real binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use alknet_e2e::process::{NodeProcess, isolated, json_stdout, output_of};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const CALL_OPS: &str = "[diagnostics]\ncall_ops = true\n";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The node's port, dialled by name.
fn by_name(node: &NodeProcess) -> String {
    format!("localhost:{}", node.addr.port())
}

fn assert_said_once(text: &str, needle: &str) {
    assert_eq!(
        text.matches(needle).count(),
        1,
        "`{needle}` once in: {text}"
    );
}

fn assert_rfc3339(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{text}: {e}"));
}

#[test]
fn connect_takes_a_host_name_over_quic_and_tcp() {
    let node = NodeProcess::start(CALL_OPS);
    let home = tempfile::tempdir().unwrap();
    let connect = by_name(&node);
    for transport in [None, Some("--tcp")] {
        let mut args = vec!["call", "--connect", &connect, "--pin", &node.node_id];
        args.extend(transport);
        args.extend(["diag/echo", r#"{"hello":"name"}"#]);
        let printed = json_stdout(&output_of(isolated(home.path(), &args)));
        assert_eq!(printed, json!({"hello": "name"}), "{transport:?}");
    }
    let out = output_of(isolated(
        home.path(),
        &[
            "call",
            "--connect",
            "no-such-node.invalid:4433",
            "--insecure",
            "services/list",
        ],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: cannot resolve `no-such-node.invalid:4433`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn environment_variables_and_the_profile_stand_in_for_flags() {
    let node = NodeProcess::start(CALL_OPS);
    let home = tempfile::tempdir().unwrap();
    let echo = ["call", "diag/echo", r#"{"via":"env"}"#];

    // Without anything, the missing pieces are named.
    let out = output_of(isolated(home.path(), &echo));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("ALKNET_CONNECT"), "{}", stderr(&out));
    let mut pinless = isolated(home.path(), &echo);
    pinless.env("ALKNET_CONNECT", by_name(&node));
    let out = output_of(pinless);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("ALKNET_PIN"), "{}", stderr(&out));

    let mut from_env = isolated(home.path(), &echo);
    from_env
        .env("ALKNET_CONNECT", by_name(&node))
        .env("ALKNET_PIN", &node.node_id);
    assert_eq!(json_stdout(&output_of(from_env)), json!({"via": "env"}));

    // The profile: connect, pin and a token file (admin/tree needs the token).
    let profile_dir = home.path().join("alknet");
    std::fs::create_dir_all(&profile_dir).unwrap();
    std::fs::write(
        profile_dir.join("token"),
        format!("{}\n", node.admin_token()),
    )
    .unwrap();
    std::fs::write(
        profile_dir.join("client.toml"),
        format!(
            "connect = \"{}\"\npin = \"{}\"\ntoken_file = \"token\"\n",
            by_name(&node),
            node.node_id
        ),
    )
    .unwrap();
    let tree = json_stdout(&output_of(isolated(
        home.path(),
        &["admin", "tree", "--json"],
    )));
    assert_eq!(tree["root"]["name"], "node");

    // Flags come before the environment, the environment before the profile.
    let wrong_pin = format!("ed25519:{}", "00".repeat(32));
    let mut env_over_profile = isolated(home.path(), &echo);
    env_over_profile.env("ALKNET_PIN", &wrong_pin);
    let out = output_of(env_over_profile);
    assert_eq!(out.status.code(), Some(2), "the environment's pin was used");
    let mut flag_over_env = isolated(home.path(), &["call", "--pin", &node.node_id, "diag/echo"]);
    flag_over_env.env("ALKNET_PIN", &wrong_pin);
    assert_eq!(json_stdout(&output_of(flag_over_env)), json!({}));
    let mut insecure_over_env = isolated(home.path(), &["call", "--insecure", "diag/echo"]);
    insecure_over_env.env("ALKNET_PIN", &wrong_pin);
    assert_eq!(json_stdout(&output_of(insecure_over_env)), json!({}));
    // The same for the token: the flag before ALKNET_TOKEN before the profile.
    let tree = ["admin", "tree", "--json"];
    let mut env_token = isolated(home.path(), &tree);
    env_token.env("ALKNET_TOKEN", "alk_not-a-real-token");
    assert_eq!(
        output_of(env_token).status.code(),
        Some(1),
        "ALKNET_TOKEN was used"
    );
    let token_file = profile_dir.join("token");
    let mut flag_token = isolated(
        home.path(),
        &[&tree[..], &["--token-file", token_file.to_str().unwrap()]].concat(),
    );
    flag_token.env("ALKNET_TOKEN", "alk_not-a-real-token");
    assert_eq!(json_stdout(&output_of(flag_token))["root"]["name"], "node");

    // An unknown key in the profile is refused with the file's name.
    std::fs::write(profile_dir.join("client.toml"), "conect = \"x\"\n").unwrap();
    let out = output_of(isolated(home.path(), &echo));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("client.toml") && stderr(&out).contains("conect"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_dead_quic_port_times_out_within_the_bound_and_says_which_phase() {
    // Bound and never read: datagrams to it go unanswered, as to a node that
    // is down behind a firewall.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let home = tempfile::tempdir().unwrap();
    for (flag, value) in [("--connect-timeout", "1s"), ("--timeout", "1s")] {
        let started = Instant::now();
        let out = output_of(isolated(
            home.path(),
            &[
                "call",
                "--connect",
                &addr,
                "--insecure",
                flag,
                value,
                "services/list",
            ],
        ));
        let elapsed = started.elapsed();
        assert_eq!(out.status.code(), Some(2));
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        let message = stderr(&out);
        assert!(
            message.starts_with("error: timed out connecting")
                && message.contains("QUIC handshake within 1s")
                && message.contains(flag),
            "{message}"
        );
    }

    // The call phase: connected, but the reply takes longer than --timeout.
    let node = NodeProcess::start(CALL_OPS);
    let started = Instant::now();
    let out = output_of(isolated(
        home.path(),
        &[
            "call",
            "--connect",
            &by_name(&node),
            "--pin",
            &node.node_id,
            "--timeout",
            "1s",
            "diag/sleep",
            r#"{"ms":20000}"#,
        ],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        stderr(&out).contains("timed out: no reply to diag/sleep"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_input_comes_from_standard_input_or_a_file() {
    let node = NodeProcess::start(CALL_OPS);
    let home = tempfile::tempdir().unwrap();
    let connect = by_name(&node);
    let base = [
        "call",
        "--connect",
        &connect,
        "--pin",
        &node.node_id,
        "diag/echo",
    ];

    let mut from_stdin = isolated(home.path(), &[&base[..], &["-"]].concat());
    let mut child = from_stdin
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"from":"stdin"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(json_stdout(&out), json!({"from": "stdin"}));

    let file = home.path().join("input.json");
    std::fs::write(&file, r#"{"from":"file"}"#).unwrap();
    let at_file = format!("@{}", file.display());
    let out = output_of(isolated(
        home.path(),
        &[&base[..], &[at_file.as_str()]].concat(),
    ));
    assert_eq!(json_stdout(&out), json!({"from": "file"}));

    let missing = format!("@{}", home.path().join("absent.json").display());
    let out = output_of(isolated(
        home.path(),
        &[&base[..], &[missing.as_str()]].concat(),
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("absent.json"), "{}", stderr(&out));
    assert_said_once(&stderr(&out), "absent.json");
}

#[test]
fn json_output_parses_and_times_are_rfc3339() {
    let node = NodeProcess::start(CALL_OPS);
    let home = tempfile::tempdir().unwrap();
    let data = node.data_dir.path().to_str().unwrap().to_owned();
    let dir = ["--data-dir", data.as_str()];

    let created = json_stdout(&output_of(isolated(
        home.path(),
        &[
            &[
                "token",
                "create",
                "--scopes",
                "a,b",
                "--expires",
                "1h",
                "--json",
            ],
            &dir[..],
        ]
        .concat(),
    )));
    let token = created["token"].as_str().unwrap();
    assert!(token.starts_with(created["prefix"].as_str().unwrap()));
    assert_rfc3339(&created["created_at"]);
    assert_rfc3339(&created["expires_at"]);

    let listed = json_stdout(&output_of(isolated(
        home.path(),
        &[&["token", "list", "--json"], &dir[..]].concat(),
    )));
    let tokens = listed.as_array().unwrap();
    assert_eq!(tokens.len(), 2, "the admin token and the new one");
    for listed in tokens {
        assert_rfc3339(&listed["created_at"]);
        assert!(listed.get("token").is_none(), "a list never shows a token");
    }
    let prefix = created["prefix"].as_str().unwrap();
    let revoked = json_stdout(&output_of(isolated(
        home.path(),
        &[&["token", "revoke", prefix, "--json"], &dir[..]].concat(),
    )));
    assert_eq!(revoked["prefix"], prefix);

    let fingerprint = format!("ed25519:{}", "ab".repeat(32));
    let added = json_stdout(&output_of(isolated(
        home.path(),
        &[
            &[
                "peer",
                "add",
                &fingerprint,
                "--id",
                "bob",
                "--scopes",
                "x",
                "--json",
            ],
            &dir[..],
        ]
        .concat(),
    )));
    assert_eq!(added["id"], "bob");
    let peers = json_stdout(&output_of(isolated(
        home.path(),
        &[&["peer", "list", "--json"], &dir[..]].concat(),
    )));
    assert_eq!(peers[0]["fingerprint"], fingerprint.as_str());
    let removed = json_stdout(&output_of(isolated(
        home.path(),
        &[&["peer", "remove", &fingerprint, "--json"], &dir[..]].concat(),
    )));
    assert_eq!(removed["id"], "bob");

    let tree = json_stdout(&output_of(isolated(
        home.path(),
        &[
            "admin",
            "tree",
            "--json",
            "--connect",
            &by_name(&node),
            "--pin",
            &node.node_id,
            "--token",
            &node.admin_token(),
        ],
    )));
    assert_rfc3339(&tree["root"]["started_at"]);
}

/// The call sessions `admin/tree` lists (the one asking included).
fn call_sessions(tree: &Value) -> Vec<Value> {
    fn walk(node: &Value, out: &mut Vec<Value>) {
        if node["alpn"] == "alknet/call" {
            out.push(node.clone());
        }
        for child in node["children"].as_array().into_iter().flatten() {
            walk(child, out);
        }
    }
    let mut out = Vec::new();
    walk(&tree["root"], &mut out);
    out
}

#[test]
fn a_finished_call_leaves_no_session_behind() {
    let node = NodeProcess::start(CALL_OPS);
    let home = tempfile::tempdir().unwrap();
    let connect = by_name(&node);
    let token = node.admin_token();
    for transport in [None, Some("--tcp")] {
        let mut call = vec!["call", "--connect", &connect, "--pin", &node.node_id];
        call.extend(transport);
        call.push("services/list");
        assert!(output_of(isolated(home.path(), &call)).status.success());
        // Without a clean close the node would list the call's session for
        // its 30 s idle timeout; two seconds is ample for the close to land.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let mut tree = vec!["admin", "tree", "--json", "--connect", &connect];
            tree.extend(["--pin", &node.node_id, "--token", &token]);
            tree.extend(transport);
            let sessions = call_sessions(&json_stdout(&output_of(isolated(home.path(), &tree))));
            if sessions.len() == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{transport:?}: still listed after 2 s: {sessions:#?}"
            );
        }
    }
}

#[test]
fn errors_say_their_cause_once_and_in_words() {
    let node = NodeProcess::start(CALL_OPS);
    let home = tempfile::tempdir().unwrap();
    let connect = by_name(&node);

    // A taken port, with what to do about it.
    let data = tempfile::tempdir().unwrap();
    let out = output_of(isolated(
        home.path(),
        &[
            "serve",
            "--init",
            "--listen",
            &node.addr.to_string(),
            "--data-dir",
            data.path().join("d").to_str().unwrap(),
        ],
    ));
    assert_eq!(out.status.code(), Some(2));
    let message = stderr(&out);
    assert_said_once(&message, "Address already in use");
    assert!(message.contains("--listen"), "{message}");

    // A wrong pin.
    let wrong = format!("ed25519:{}", "00".repeat(32));
    let out = output_of(isolated(
        home.path(),
        &[
            "call",
            "--connect",
            &connect,
            "--pin",
            &wrong,
            "services/list",
        ],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert_said_once(&stderr(&out), &wrong);
    assert_said_once(&stderr(&out), &node.node_id);
    assert!(
        stderr(&out).contains(&format!(
            "the node is {}, not the pinned {wrong}",
            node.node_id
        )),
        "{}",
        stderr(&out)
    );

    // A missing key file, and an ECDSA key where Ed25519 is needed.
    let call_with_key = |key: &std::path::Path| {
        output_of(isolated(
            home.path(),
            &[
                "call",
                "--connect",
                &connect,
                "--pin",
                &node.node_id,
                "--key",
                key.to_str().unwrap(),
                "services/list",
            ],
        ))
    };
    let missing = home.path().join("absent.key");
    let out = call_with_key(&missing);
    assert_eq!(out.status.code(), Some(2));
    assert_said_once(&stderr(&out), "absent.key");
    assert_said_once(&stderr(&out), "No such file or directory");
    let ecdsa = home.path().join("ecdsa.key");
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(&ecdsa, pair.serialize_pem()).unwrap();
    let out = call_with_key(&ecdsa);
    assert_eq!(out.status.code(), Some(2));
    let message = stderr(&out);
    assert!(
        message.contains("ECDSA") && message.contains("Ed25519"),
        "{message}"
    );
    assert!(!message.contains("1.2.840"), "no OID: {message}");

    // INVALID_INPUT names the field and the constraint.
    let out = output_of(isolated(
        home.path(),
        &[
            "call",
            "--connect",
            &connect,
            "--pin",
            &node.node_id,
            "diag/sleep",
            r#"{"ms":70000}"#,
        ],
    ));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "INVALID_INPUT: input does not match schema at /ms: 70000 is greater than the maximum of 60000"
    );
}

#[test]
fn import_check_exits_as_its_help_says() {
    let home = tempfile::tempdir().unwrap();
    let absent = home.path().join("no-data");
    let out = output_of(isolated(
        home.path(),
        &["import", "check", "--data-dir", absent.to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no data directory"),
        "{}",
        stderr(&out)
    );

    let data = tempfile::tempdir().unwrap();
    let out = output_of(isolated(
        home.path(),
        &[
            "import",
            "check",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 imports checked"));
    let printed = json_stdout(&output_of(isolated(
        home.path(),
        &[
            "import",
            "check",
            "--json",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
    )));
    assert_eq!(printed, json!({"imports": [], "checked": 0}));

    std::fs::write(data.path().join("alknet.toml"), "[import]\nopenapi = 3\n").unwrap();
    let out = output_of(isolated(
        home.path(),
        &[
            "import",
            "check",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn completions_are_generated_and_bash_loads_them() {
    let home = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = output_of(isolated(home.path(), &["completions", shell]));
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("alknet") && script.contains("connect"),
            "{shell}"
        );
    }
    let script = home.path().join("alknet.bash");
    std::fs::write(
        &script,
        output_of(isolated(home.path(), &["completions", "bash"])).stdout,
    )
    .unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p alknet", script.display()))
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("alknet"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_manual_page_renders_from_the_cli_definition() {
    let home = tempfile::tempdir().unwrap();
    let out = output_of(isolated(home.path(), &["man"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let roff = String::from_utf8(out.stdout).unwrap();
    assert!(roff.contains(".TH alknet 1"), "{roff}");
    assert!(
        roff.contains("completions") && roff.contains("call"),
        "{roff}"
    );
}
